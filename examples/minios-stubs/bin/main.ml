(* Seal a sample IPv4 header and check it: this runs fine as a Unix process. *)

let header =
  Bytes.of_string
    "\x45\x00\x00\x73\x00\x00\x40\x00\x40\x11\x00\x00\xc0\xa8\x00\x01\xc0\xa8\x00\xc7"

let () =
  Netif.Packet.seal header;
  Printf.printf "checksum 0x%04x, verified: %b, next slot: %d\n"
    (Bytes.get_uint16_be header 10)
    (Netif.Packet.verify header)
    (Netif.Packet.next_slot 7)
