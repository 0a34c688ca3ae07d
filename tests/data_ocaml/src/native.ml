(* The C stubs. "external" in a comment is not a declaration:
   external fake : int -> int = "not_a_stub" *)

external my_sum :
  (int [@untagged]) -> (int [@untagged]) -> (int [@untagged])
  = "mystub_byte" "mystub"
  [@@noalloc]

external alloc_table : int -> int array = "mystub_alloc"
