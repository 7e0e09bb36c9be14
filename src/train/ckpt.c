/* ckpt.c - checkpoint files (layout in ckpt.h). Floats are stored as the host's little-endian
 * IEEE-754 bytes. */
#include "ckpt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/atomic_file.h"
#include "../core/le.h"
#include "../core/sha256.h"

#define HEADER_BYTES 80
#define MAX_CONFIG (16u << 20)
static const char magic[8] = {'S', 'L', 'M', 'C', 'K', 'P', 'T', 0};


/* Writes through the atomic file and the running digest together. */
static void emit(slm_afile *a, slm_sha256 *h, const void *p, size_t n) {
    if (n == 0) return;
    slm_afile_write(a, p, n);
    slm_sha256_update(h, p, n);
}

slm_status slm_ckpt_write(const char *path, const slm_ckpt *c) {
    const size_t clen = strlen(c->config);
    if (clen > MAX_CONFIG) return slm_error(SLM_ERR_ARG, "checkpoint %s: configuration text too long", path);
    uint8_t hdr[HEADER_BYTES];
    memcpy(hdr, magic, 8);
    slm_put_u32(hdr + 8, SLM_CKPT_VERSION);
    slm_put_u32(hdr + 12, (uint32_t)clen);
    slm_put_u64(hdr + 16, (uint64_t)c->n_weights);
    slm_put_u64(hdr + 24, (uint64_t)c->n_state);
    slm_put_u64(hdr + 32, (uint64_t)c->step);
    slm_put_u64(hdr + 40, c->tokens);
    slm_sha256 h;
    slm_sha256_init(&h);
    slm_sha256_update(&h, c->config, clen);
    slm_sha256_final(&h, hdr + 48);

    slm_afile a;
    slm_status s = slm_afile_open(&a, path);
    if (s) return s;
    slm_sha256_init(&h);
    emit(&a, &h, hdr, sizeof hdr);
    emit(&a, &h, c->config, clen);
    emit(&a, &h, c->weights, c->n_weights * sizeof(float));
    emit(&a, &h, c->m, c->n_state * sizeof(float));
    emit(&a, &h, c->v, c->n_state * sizeof(float));
    uint8_t digest[32];
    slm_sha256_final(&h, digest);
    slm_afile_write(&a, digest, sizeof digest);
    return slm_afile_commit(&a);
}

/* The first line where two configuration texts differ, named by its key. */
static void describe_mismatch(const char *a, const char *b, char *out, size_t cap) {
    for (;;) {
        const size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
        if (la != lb || memcmp(a, b, la) != 0) {
            const size_t ka = strcspn(a, "="), kb = strcspn(b, "=");
            if (ka < la && kb < lb && ka == kb && memcmp(a, b, ka) == 0)
                snprintf(out, cap, "%.*s is '%.*s' in the checkpoint but '%.*s' in this run", (int)ka, a,
                         (int)(la - ka - 1), a + ka + 1, (int)(lb - kb - 1), b + kb + 1);
            else
                snprintf(out, cap, "the checkpoint has '%.*s' where this run has '%.*s'", (int)la, a, (int)lb, b);
            return;
        }
        if (!a[la] || !b[lb]) break;
        a += la + 1;
        b += lb + 1;
    }
    snprintf(out, cap, "configuration differs");
}

/* Read n bytes into dst (NULL: discard) and hash them. */
static bool take(FILE *f, slm_sha256 *h, void *dst, size_t n, uint8_t *scratch, size_t scap) {
    while (n > 0) {
        const size_t k = n < scap ? n : scap;
        uint8_t *p = dst ? (uint8_t *)dst : scratch;
        if (fread(p, 1, k, f) != k) return false;
        slm_sha256_update(h, p, k);
        if (dst) dst = (uint8_t *)dst + k;
        n -= k;
    }
    return true;
}

slm_status slm_ckpt_read(const char *path, const char *config, size_t n_weights, size_t n_state, float *weights,
                         float *m, float *v, int64_t *step, uint64_t *tokens) {
    FILE *f = fopen(path, "rb");
    if (!f) return slm_error(SLM_ERR_IO, "checkpoint %s: cannot open", path);
    slm_status s = SLM_OK;
    char *text = NULL;
    uint8_t *scratch = NULL;
    struct stat st;
    uint8_t hdr[HEADER_BYTES];
    if (fstat(fileno(f), &st) != 0) {
        s = slm_error(SLM_ERR_IO, "checkpoint %s: cannot stat", path);
        goto done;
    }
    const uint64_t size = (uint64_t)st.st_size;
    if (size < 8 || fread(hdr, 1, 8, f) != 8 || memcmp(hdr, magic, 8) != 0) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: not a slimlm checkpoint (bad magic)", path);
        goto done;
    }
    if (size < HEADER_BYTES + 32 || fread(hdr + 8, 1, HEADER_BYTES - 8, f) != HEADER_BYTES - 8) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: truncated header (%llu bytes)", path, (unsigned long long)size);
        goto done;
    }
    const uint32_t version = slm_get_u32(hdr + 8), clen = slm_get_u32(hdr + 12);
    const uint64_t nw = slm_get_u64(hdr + 16), ns = slm_get_u64(hdr + 24);
    if (version != SLM_CKPT_VERSION) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: version %u (this build reads version %u)", path, version,
                      SLM_CKPT_VERSION);
        goto done;
    }
    /* expected size, overflow-safe: every count is bounded before multiplying */
    const uint64_t lim = (uint64_t)1 << 40;
    if (clen > MAX_CONFIG || nw > lim || ns > lim) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: implausible sizes in the header", path);
        goto done;
    }
    const uint64_t want = HEADER_BYTES + (uint64_t)clen + 4 * (nw + 2 * ns) + 32;
    if (size != want) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: %llu bytes, the header implies %llu (%s)", path,
                      (unsigned long long)size, (unsigned long long)want, size < want ? "truncated" : "trailing data");
        goto done;
    }
    text = malloc((size_t)clen + 1);
    scratch = malloc(1 << 16);
    if (!text || !scratch) {
        s = slm_error(SLM_ERR_NOMEM, "checkpoint %s: out of memory", path);
        goto done;
    }
    slm_sha256 h;
    slm_sha256_init(&h);
    slm_sha256_update(&h, hdr, sizeof hdr);
    const bool fits = nw == n_weights && ns == n_state;
    if (!take(f, &h, text, clen, scratch, 1 << 16) || !take(f, &h, fits ? weights : NULL, 4 * nw, scratch, 1 << 16) ||
        !take(f, &h, fits ? m : NULL, 4 * ns, scratch, 1 << 16) ||
        !take(f, &h, fits ? v : NULL, 4 * ns, scratch, 1 << 16)) {
        s = slm_error(SLM_ERR_IO, "checkpoint %s: read failed", path);
        goto done;
    }
    text[clen] = 0;
    uint8_t digest[32], stored[32], chash[32];
    slm_sha256_final(&h, digest);
    if (fread(stored, 1, 32, f) != 32) {
        s = slm_error(SLM_ERR_IO, "checkpoint %s: read failed", path);
        goto done;
    }
    if (memcmp(digest, stored, 32) != 0) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: checksum mismatch (the file is corrupt)", path);
        goto done;
    }
    slm_sha256_init(&h);
    slm_sha256_update(&h, text, clen);
    slm_sha256_final(&h, chash);
    if (memcmp(chash, hdr + 48, 32) != 0 || strlen(text) != clen) {
        s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: configuration hash mismatch (the file is corrupt)", path);
        goto done;
    }
    if (strcmp(text, config) != 0) {
        char why[512];
        describe_mismatch(text, config, why, sizeof why);
        s = slm_error(SLM_ERR_ARG, "checkpoint %s was made by another run: %s", path, why);
        goto done;
    }
    if (!fits) {
        s = slm_error(SLM_ERR_ARG, "checkpoint %s: %llu weights and %llu optimizer values, this run has %zu and %zu",
                      path, (unsigned long long)nw, (unsigned long long)ns, n_weights, n_state);
        goto done;
    }
    *step = (int64_t)slm_get_u64(hdr + 32);
    *tokens = slm_get_u64(hdr + 40);
    if (*step < 0) s = slm_error(SLM_ERR_FORMAT, "checkpoint %s: negative step", path);
done:
    free(text);
    free(scratch);
    fclose(f);
    return s;
}
