/* test_sha256.c - SHA-256 against the FIPS 180-4 / NIST example vectors. */
#include <string.h>

#include "core/sha256.h"
#include "test.h"

int main(void) {
    char hex[65];
    slm_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "empty: %s", hex);
    slm_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "abc: %s", hex);
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    slm_sha256_hex(m448, strlen(m448), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "448 bits: %s", hex);
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                       "mnopqrstnopqrstu";
    slm_sha256_hex(m896, strlen(m896), hex);
    CHECK(!strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"), "896 bits: %s", hex);
    /* one million 'a', fed in uneven pieces */
    static char mil[1000000];
    memset(mil, 'a', sizeof mil);
    slm_sha256 c;
    slm_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < sizeof mil) {
        size_t k = step < sizeof mil - off ? step : sizeof mil - off;
        slm_sha256_update(&c, mil + off, k);
        off += k;
        step = step * 3 % 1001 + 1;
    }
    uint8_t d[32];
    slm_sha256_final(&c, d);
    static const uint8_t want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                     0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                     0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    CHECK(!memcmp(d, want, 32), "one million 'a' in pieces");
    /* every length around the padding boundary agrees between one-shot and byte-wise hashing */
    int bad = 0;
    for (size_t n = 0; n < 200; n++) {
        char one[65], two[65];
        slm_sha256_hex(mil, n, one);
        slm_sha256_init(&c);
        for (size_t i = 0; i < n; i++) slm_sha256_update(&c, mil + i, 1);
        slm_sha256_final(&c, d);
        for (int i = 0; i < 32; i++) snprintf(two + 2 * i, 3, "%02x", d[i]);
        bad += strcmp(one, two) != 0;
    }
    CHECK(bad == 0, "%d lengths differ between one-shot and byte-wise", bad);
    /* the file helper */
    FILE *f = fopen("/tmp/slm_sha256_test.txt", "wb");
    fputs("abc", f);
    fclose(f);
    CHECK(slm_sha256_file("/tmp/slm_sha256_test.txt", hex) == SLM_OK &&
              !strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
          "file: %s", hex);
    remove("/tmp/slm_sha256_test.txt");
    CHECK(slm_sha256_file("/tmp/does-not-exist-slm", hex) == SLM_ERR_IO, "missing file");
    return test_summary("test_sha256");
}
