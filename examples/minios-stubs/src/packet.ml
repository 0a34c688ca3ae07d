(* IPv4 headers on their way to the ring: [seal] writes the checksum, [verify] checks it. *)

let seal hdr =
  let sum = Checksum.ipv4_header hdr (Bytes.length hdr) in
  Bytes.set_uint16_be hdr 10 sum

let verify hdr =
  Checksum.ipv4_header hdr (Bytes.length hdr) = Bytes.get_uint16_be hdr 10

let next_slot slot = Ring.advance slot 8
