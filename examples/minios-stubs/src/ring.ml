(* Slots of a transmit ring, as a Mini-OS netfront driver hands them out. *)

external advance :
  (int [@untagged]) -> (int [@untagged]) -> (int [@untagged])
  = "netif_ring_advance_byte" "netif_ring_advance"
  [@@noalloc]
