/* The self-test's object: built with and without -mno-red-zone by .github/workflows/self-test.yml.
 * Built plainly (gcc -O2 -g), `checksum` keeps its buffer in the red zone below %rsp. */
int checksum(const unsigned char *data, int n) {
    volatile int buf[8];
    for (int i = 0; i < 8; i++)
        buf[i] = i < n ? data[i] : 0;
    return buf[n & 7] + buf[0];
}
