let () = print_int (Cipher.Cipher_block.encrypt 3 4 + Array.length (Cipher.Cipher_block.table 3))
