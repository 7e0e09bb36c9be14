/* sha256.h - SHA-256 (FIPS 180-4) for file fingerprints (slimlm.source.sha256). */
#ifndef SLM_SHA256_H
#define SLM_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    uint32_t h[8];
    uint64_t len;       /* bytes hashed so far */
    uint8_t buf[64];    /* pending partial block */
    size_t n;           /* bytes in buf */
} slm_sha256;

void slm_sha256_init(slm_sha256 *c);
void slm_sha256_update(slm_sha256 *c, const void *data, size_t n);
void slm_sha256_final(slm_sha256 *c, uint8_t out[32]);
/* Digest of a buffer as 64 lowercase hex digits plus NUL. */
void slm_sha256_hex(const void *data, size_t n, char out[65]);
/* Digest of a file's contents as hex (reads it in chunks). */
slm_status slm_sha256_file(const char *path, char out[65]);

#endif
