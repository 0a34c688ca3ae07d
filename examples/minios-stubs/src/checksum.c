/* Portable packet code, written for Unix first. */

#include "checksum.h"

/* RFC 1071 checksum of an IPv4 header (20-60 bytes), computed as if the checksum
   field (bytes 10-11) were zero. Four lanes of partial sums, folded at the end. */
uint16_t ipv4_header_checksum(const uint8_t *hdr, size_t len)
{
    uint32_t lane[4] = {0, 0, 0, 0};
    uint32_t sum;

    for (size_t i = 0; i + 1 < len && i < 60; i += 2)
        if (i != 10)
            lane[(i / 2) & 3] += (uint32_t)(hdr[i] << 8 | hdr[i + 1]);
    sum = lane[0] + lane[1] + lane[2] + lane[3];
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}
