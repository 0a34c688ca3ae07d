#include <stdint.h>

/* Fletcher-like checksum over eight interleaved lanes. The lane array is a
 * local that gcc keeps in memory; in a leaf function that memory is the red zone. */
uint32_t checksum(const uint8_t *data, uint32_t len)
{
    uint32_t lanes[8] = {0};
    for (uint32_t i = 0; i < len; i++)
        lanes[i & 7] = lanes[i & 7] * 31 + data[i];
    uint32_t sum = 0;
    for (int k = 0; k < 8; k++)
        sum = (sum << 3 | sum >> 29) ^ lanes[k];
    return sum;
}
