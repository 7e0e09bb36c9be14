/* entropy.c - block-field splitting and static order-0 rANS (see entropy.h for the format). */
#include "entropy.h"

#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/gq.h"
#include "core/le.h"

#define SCALE_BITS 14
#define SCALE (1u << SCALE_BITS)
#define RANS_L (1u << 23) /* lower bound of the normalized state */
#define TABLE_MAX 512     /* largest encoded frequency table */

enum { MODE_STORED = 0, MODE_CONST = 1, MODE_RANS = 2 };

/* ---- layouts ------------------------------------------------------------------------- */

typedef struct {
    uint32_t dtype;
    uint16_t block_bytes;
    uint8_t n_fields;
    slm_ent_field fields[6];
} layout_entry;

/* Split: f16/f32 scales and plain floats (byte planes). Joined: packed quants. */
static const layout_entry layouts[] = {
    {SLM_DT_F32, 4, 4, {{1, 1}, {1, 1}, {1, 1}, {1, 1}}},
    {SLM_DT_F16, 2, 2, {{1, 1}, {1, 1}}},
    {SLM_DT_BF16, 2, 2, {{1, 1}, {1, 1}}},
    {SLM_DT_Q8_0, 34, 2, {{2, 1}, {32, 0}}},
    {SLM_DT_Q4_0, 18, 2, {{2, 1}, {16, 0}}},
    {SLM_DT_Q4_1, 20, 3, {{2, 1}, {2, 1}, {16, 0}}},
    {SLM_DT_Q5_0, 22, 3, {{2, 1}, {4, 0}, {16, 0}}},
    {SLM_DT_Q5_1, 24, 4, {{2, 1}, {2, 1}, {4, 0}, {16, 0}}},
    {SLM_DT_Q2_K, 84, 4, {{16, 0}, {64, 0}, {2, 1}, {2, 1}}},
    {SLM_DT_Q3_K, 110, 4, {{32, 0}, {64, 0}, {12, 0}, {2, 1}}},
    {SLM_DT_Q4_K, 144, 4, {{2, 1}, {2, 1}, {12, 0}, {128, 0}}},
    {SLM_DT_Q5_K, 176, 5, {{2, 1}, {2, 1}, {12, 0}, {32, 0}, {128, 0}}},
    {SLM_DT_Q6_K, 210, 4, {{128, 0}, {64, 0}, {16, 0}, {2, 1}}},
};

slm_ent_layout slm_ent_layout_for(uint32_t dtype, int64_t row_len) {
    slm_ent_layout l;
    memset(&l, 0, sizeof l);
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++) {
        if (layouts[i].dtype != dtype) continue;
        l.block_bytes = layouts[i].block_bytes;
        l.n_fields = layouts[i].n_fields;
        memcpy(l.fields, layouts[i].fields, sizeof layouts[i].fields);
        return l;
    }
    slm_gq_format f;
    if (slm_gq_format_of(dtype, &f) && row_len > 0 && row_len % f.group == 0) {
        l.block_bytes = (uint16_t)(f.hdr + f.group / SLM_GQ_SUB * f.sub);
        l.n_fields = (uint8_t)(f.hdr / 2 + 1);
        for (int i = 0; i < f.hdr / 2; i++) l.fields[i] = (slm_ent_field){2, 1};
        l.fields[f.hdr / 2] = (slm_ent_field){(uint16_t)(l.block_bytes - f.hdr), 0};
    }
    return l;
}

/* Number of streams of a layout (without the tail); 0 if the layout is invalid. */
static size_t layout_streams(const slm_ent_layout *l) {
    if (l->block_bytes == 0) return l->n_fields == 0 ? 1 : 0;
    if (l->block_bytes > SLM_ENT_MAX_BLOCK || l->n_fields == 0 || l->n_fields > SLM_ENT_MAX_FIELDS) return 0;
    size_t sum = 0, streams = 0;
    for (int i = 0; i < l->n_fields; i++) {
        if (l->fields[i].len == 0 || l->fields[i].split > 1) return 0;
        sum += l->fields[i].len;
        streams += l->fields[i].split ? l->fields[i].len : 1;
    }
    if (sum != l->block_bytes || streams > SLM_ENT_MAX_STREAMS) return 0;
    return streams;
}

size_t slm_ent_bound(size_t n) {
    /* layout header + a mode byte per stream (and the tail) + the bytes themselves */
    return n + 3 + 3 * SLM_ENT_MAX_FIELDS + SLM_ENT_MAX_STREAMS + 1;
}

/* A stream of a layout: the same bytes of every block, gathered into one buffer. */
typedef struct {
    size_t offset; /* byte offset of the stream's first byte in a block */
    size_t width;  /* bytes it takes from each block */
} stream_pos;

static size_t stream_list(const slm_ent_layout *l, stream_pos *pos) {
    size_t k = 0, off = 0;
    for (int i = 0; i < l->n_fields; i++) {
        if (l->fields[i].split) {
            for (size_t b = 0; b < l->fields[i].len; b++) pos[k++] = (stream_pos){off + b, 1};
        } else {
            pos[k++] = (stream_pos){off, l->fields[i].len};
        }
        off += l->fields[i].len;
    }
    return k;
}

static void gather(const uint8_t *src, size_t n_blocks, size_t bb, stream_pos p, uint8_t *out) {
    if (p.width == 1) {
        for (size_t b = 0; b < n_blocks; b++) out[b] = src[b * bb + p.offset];
    } else {
        for (size_t b = 0; b < n_blocks; b++) memcpy(out + b * p.width, src + b * bb + p.offset, p.width);
    }
}

static void scatter(const uint8_t *in, size_t n_blocks, size_t bb, stream_pos p, uint8_t *dst) {
    if (p.width == 1) {
        for (size_t b = 0; b < n_blocks; b++) dst[b * bb + p.offset] = in[b];
    } else {
        for (size_t b = 0; b < n_blocks; b++) memcpy(dst + b * bb + p.offset, in + b * p.width, p.width);
    }
}

/* ---- rANS ---------------------------------------------------------------------------- */


/* Frequencies summing to SCALE, every present symbol at least 1. */
static void normalize(const uint64_t cnt[256], size_t n, uint32_t freq[256]) {
    int64_t sum = 0;
    int top = 0;
    for (int s = 0; s < 256; s++) {
        freq[s] = 0;
        if (!cnt[s]) continue;
        uint64_t f = (uint64_t)((double)cnt[s] * SCALE / (double)n + 0.5);
        freq[s] = f ? (uint32_t)f : 1;
        sum += freq[s];
        if (cnt[s] > cnt[top]) top = s;
    }
    /* Fix the sum: the most frequent symbol absorbs small differences; larger excesses are
     * taken one at a time from the largest frequencies above 1. */
    int64_t diff = (int64_t)SCALE - sum;
    if (diff > 0 || (int64_t)freq[top] + diff >= 1) {
        freq[top] = (uint32_t)((int64_t)freq[top] + diff);
        return;
    }
    while (diff < 0) {
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (freq[s] > 1 && (best < 0 || freq[s] > freq[best])) best = s;
        freq[best]--; /* exists: at most 256 symbols of 1 sum to 256 < SCALE */
        diff++;
    }
}

static size_t write_table(const uint32_t freq[256], uint8_t *out) {
    size_t k = 0;
    for (int s = 0; s < 256;) {
        uint32_t f = freq[s];
        if (f == 0) {
            int r = 0;
            while (s + 1 + r < 256 && freq[s + 1 + r] == 0 && r < 255) r++;
            out[k++] = 0;
            out[k++] = (uint8_t)r;
            s += 1 + r;
        } else if (f < 128) {
            out[k++] = (uint8_t)f;
            s++;
        } else {
            out[k++] = (uint8_t)(0x80 | (f >> 8));
            out[k++] = (uint8_t)(f & 0xff);
            s++;
        }
    }
    return k;
}

static slm_status read_table(const uint8_t *p, size_t len, uint32_t freq[256], size_t *used) {
    size_t k = 0;
    uint32_t sum = 0;
    for (int s = 0; s < 256;) {
        if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: frequency table truncated");
        uint32_t b = p[k++];
        if (b == 0) {
            if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: frequency table truncated");
            int r = p[k++];
            if (s + 1 + r > 256) return slm_error(SLM_ERR_FORMAT, "entropy: frequency table run past 256 symbols");
            for (int i = 0; i <= r; i++) freq[s + i] = 0;
            s += 1 + r;
            continue;
        }
        if (b & 0x80) {
            if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: frequency table truncated");
            b = (b & 0x7f) << 8 | p[k++];
        }
        if (b > SCALE) return slm_error(SLM_ERR_FORMAT, "entropy: frequency %u above %u", b, SCALE);
        freq[s++] = b;
        sum += b;
    }
    if (sum != SCALE) return slm_error(SLM_ERR_FORMAT, "entropy: frequencies sum to %u, not %u", sum, SCALE);
    *used = k;
    return SLM_OK;
}

/* rANS payload of n bytes into dst[0..cap); returns its length, or 0 if it does not fit. */
static size_t rans_encode(const uint8_t *src, size_t n, const uint32_t freq[256], uint8_t *dst, size_t cap) {
    uint32_t cum[256];
    uint32_t c = 0;
    for (int s = 0; s < 256; s++) {
        cum[s] = c;
        c += freq[s];
    }
    size_t tl = write_table(freq, dst);
    if (tl + 4 > cap) return 0;
    /* Renormalization bytes are produced back to front into the end of dst. */
    uint8_t *lo = dst + tl + 4, *p = dst + cap;
    uint32_t x = RANS_L;
    for (size_t i = n; i-- > 0;) {
        uint32_t f = freq[src[i]];
        uint32_t x_max = ((RANS_L >> SCALE_BITS) << 8) * f;
        while (x >= x_max) {
            if (p == lo) return 0;
            *--p = (uint8_t)x;
            x >>= 8;
        }
        x = ((x / f) << SCALE_BITS) + (x % f) + cum[src[i]];
    }
    size_t body = (size_t)(dst + cap - p);
    slm_put_u32(dst + tl, x);
    memmove(dst + tl + 4, p, body);
    return tl + 4 + body;
}

static slm_status rans_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t n) {
    uint32_t freq[256], cum[256];
    size_t k = 0;
    slm_status s = read_table(src, len, freq, &k);
    if (s) return s;
    static _Thread_local uint8_t sym[SCALE];
    uint32_t c = 0;
    for (int i = 0; i < 256; i++) {
        cum[i] = c;
        if (freq[i]) memset(sym + c, i, freq[i]);
        c += freq[i];
    }
    if (len - k < 4) return slm_error(SLM_ERR_FORMAT, "entropy: rANS state truncated");
    uint32_t x = slm_get_u32(src + k);
    k += 4;
    if (x < RANS_L || x >= RANS_L << 8) return slm_error(SLM_ERR_FORMAT, "entropy: rANS state out of range");
    for (size_t i = 0; i < n; i++) {
        uint32_t slot = x & (SCALE - 1);
        uint8_t v = sym[slot];
        dst[i] = v;
        x = freq[v] * (x >> SCALE_BITS) + slot - cum[v];
        while (x < RANS_L) {
            if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: rANS data truncated at symbol %zu of %zu", i, n);
            x = x << 8 | src[k++];
        }
    }
    if (x != RANS_L || k != len) return slm_error(SLM_ERR_FORMAT, "entropy: rANS stream does not end cleanly");
    return SLM_OK;
}

/* ---- streams ------------------------------------------------------------------------- */

/* Codes one stream of n bytes at dst (capacity >= n + 1); returns the bytes used. scratch
 * holds at least n + TABLE_MAX + 8 bytes. */
static size_t encode_stream(const uint8_t *src, size_t n, uint8_t *dst, uint8_t *scratch) {
    uint64_t cnt[256] = {0};
    for (size_t i = 0; i < n; i++) cnt[src[i]]++;
    if (n > 0 && cnt[src[0]] == n) {
        dst[0] = MODE_CONST;
        dst[1] = src[0];
        if (n >= 2) return 2;
    }
    if (n > 16) {
        uint32_t freq[256];
        normalize(cnt, n, freq);
        /* worth it only when smaller than storing: mode + u32 + payload < 1 + n */
        size_t cap = n > 4 ? n - 4 : 0;
        size_t m = cap ? rans_encode(src, n, freq, scratch, cap) : 0;
        if (m) {
            dst[0] = MODE_RANS;
            slm_put_u32(dst + 1, (uint32_t)m);
            memcpy(dst + 5, scratch, m);
            return 5 + m;
        }
    }
    dst[0] = MODE_STORED;
    if (n) memcpy(dst + 1, src, n);
    return 1 + n;
}

static slm_status decode_stream(const uint8_t *src, size_t len, size_t *pos, uint8_t *dst, size_t n) {
    size_t k = *pos;
    if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: stream header missing at byte %zu", k);
    int mode = src[k++];
    if (mode == MODE_STORED) {
        if (n > len - k) return slm_error(SLM_ERR_FORMAT, "entropy: stored stream of %zu bytes truncated", n);
        if (n) memcpy(dst, src + k, n);
        k += n;
    } else if (mode == MODE_CONST) {
        if (k >= len) return slm_error(SLM_ERR_FORMAT, "entropy: constant stream truncated");
        memset(dst, src[k++], n);
    } else if (mode == MODE_RANS) {
        if (len - k < 4) return slm_error(SLM_ERR_FORMAT, "entropy: rANS stream length truncated");
        uint32_t m = slm_get_u32(src + k);
        k += 4;
        if (m > len - k) return slm_error(SLM_ERR_FORMAT, "entropy: rANS stream of %u bytes truncated", m);
        slm_status s = rans_decode(src + k, m, dst, n);
        if (s) return s;
        k += m;
    } else {
        return slm_error(SLM_ERR_FORMAT, "entropy: unknown stream mode %d", mode);
    }
    *pos = k;
    return SLM_OK;
}

/* ---- whole buffers ------------------------------------------------------------------- */

slm_status slm_ent_encode(const slm_ent_layout *layout, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                          size_t *out_len) {
    slm_ent_layout none = {0};
    const slm_ent_layout *l = layout ? layout : &none;
    size_t ns = layout_streams(l);
    if (!ns) return slm_error(SLM_ERR_ARG, "entropy: invalid layout");
    if (cap < slm_ent_bound(n)) return slm_error(SLM_ERR_ARG, "entropy: output capacity below the bound");
    size_t bb = l->block_bytes ? l->block_bytes : 1, n_blocks = l->block_bytes ? n / bb : 0;
    size_t k = 0;
    dst[k++] = (uint8_t)l->block_bytes;
    dst[k++] = (uint8_t)(l->block_bytes >> 8);
    dst[k++] = l->n_fields;
    for (int i = 0; i < l->n_fields; i++) {
        dst[k++] = (uint8_t)l->fields[i].len;
        dst[k++] = (uint8_t)(l->fields[i].len >> 8);
        dst[k++] = l->fields[i].split;
    }
    uint8_t *buf = malloc(n + 1), *scratch = malloc(n + TABLE_MAX + 8);
    if (!buf || !scratch) {
        free(buf);
        free(scratch);
        return slm_error(SLM_ERR_NOMEM, "entropy: out of memory coding %zu bytes", n);
    }
    if (l->block_bytes) {
        stream_pos pos[SLM_ENT_MAX_STREAMS];
        stream_list(l, pos);
        for (size_t i = 0; i < ns; i++) {
            size_t m = n_blocks * pos[i].width;
            gather(src, n_blocks, bb, pos[i], buf);
            k += encode_stream(buf, m, dst + k, scratch);
        }
    }
    size_t tail = l->block_bytes ? n - n_blocks * bb : n;
    k += encode_stream(src + (n - tail), tail, dst + k, scratch);
    free(buf);
    free(scratch);
    *out_len = k;
    return SLM_OK;
}

slm_status slm_ent_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t n) {
    if (len < 3) return slm_error(SLM_ERR_FORMAT, "entropy: coded data of %zu bytes too short", len);
    slm_ent_layout l;
    memset(&l, 0, sizeof l);
    l.block_bytes = (uint16_t)(src[0] | src[1] << 8);
    l.n_fields = src[2];
    size_t k = 3;
    if (l.n_fields > SLM_ENT_MAX_FIELDS) return slm_error(SLM_ERR_FORMAT, "entropy: %u fields", l.n_fields);
    if ((size_t)l.n_fields * 3 > len - k) return slm_error(SLM_ERR_FORMAT, "entropy: layout truncated");
    for (int i = 0; i < l.n_fields; i++, k += 3) {
        l.fields[i].len = (uint16_t)(src[k] | src[k + 1] << 8);
        l.fields[i].split = src[k + 2];
    }
    size_t ns = layout_streams(&l);
    if (!ns) return slm_error(SLM_ERR_FORMAT, "entropy: invalid block layout");
    size_t bb = l.block_bytes, n_blocks = bb ? n / bb : 0, tail = bb ? n - n_blocks * bb : n;
    slm_status s = SLM_OK;
    if (bb) {
        uint8_t *buf = malloc(n + 1);
        if (!buf) return slm_error(SLM_ERR_NOMEM, "entropy: out of memory decoding %zu bytes", n);
        stream_pos pos[SLM_ENT_MAX_STREAMS];
        stream_list(&l, pos);
        for (size_t i = 0; i < ns && !s; i++) {
            s = decode_stream(src, len, &k, buf, n_blocks * pos[i].width);
            if (!s) scatter(buf, n_blocks, bb, pos[i], dst);
        }
        free(buf);
        if (s) return s;
    }
    if ((s = decode_stream(src, len, &k, dst + (n - tail), tail))) return s;
    if (k != len) return slm_error(SLM_ERR_FORMAT, "entropy: %zu bytes after the last stream", len - k);
    return SLM_OK;
}
