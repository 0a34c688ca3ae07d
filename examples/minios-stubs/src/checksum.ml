(* The RFC 1071 checksum of an IPv4 header, computed in C (netif_stubs.c, checksum.c). *)

external ipv4_header :
  bytes -> (int [@untagged]) -> (int [@untagged])
  = "netif_ipv4_checksum_byte" "netif_ipv4_checksum"
  [@@noalloc]
