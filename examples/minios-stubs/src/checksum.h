#ifndef NETIF_CHECKSUM_H
#define NETIF_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint16_t ipv4_header_checksum(const uint8_t *hdr, size_t len);

#endif
