/* Another red-zone leaf, in its own archive member. */
long checksum_fold(long value)
{
    volatile long hi = value >> 32, lo = value & 0xffffffff;
    return hi ^ lo;
}
