/* The C side of the OCaml externals in checksum.ml and ring.ml. */

#include <caml/mlvalues.h>

#include "checksum.h"

intnat netif_ipv4_checksum(value hdr, intnat len)
{
    return ipv4_header_checksum(Bytes_val(hdr), (size_t)len);
}

value netif_ipv4_checksum_byte(value hdr, value len)
{
    return Val_long(netif_ipv4_checksum(hdr, Long_val(len)));
}

intnat netif_ring_advance(intnat slot, intnat size)
{
    return slot + 1 == size ? 0 : slot + 1;
}

value netif_ring_advance_byte(value slot, value size)
{
    return Val_long(netif_ring_advance(Long_val(slot), Long_val(size)));
}
