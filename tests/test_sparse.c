/* test_sparse.c - the sparse formats of core/sparse.h: ids, names and row sizes; the layout,
 * read back by a decoder written here from the spec in sparse.h; the pruning quantizers (2:4
 * keeps the two largest per group, unstructured keeps the largest and pads to exactly C); a
 * row that is already pruned quantizes to exactly q8_0's / q4_0's values of the dense row
 * (2:4 and unstructured, 8- and 4-bit values);
 * check_rows; the reference decoders on malformed rows; the class choice. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/sparse.h"
#include "test.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint64_t rng_next(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float rng_uniform(void) { /* [-1, 1) */
    return (float)((double)(rng_next() >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}
/* nonzero, magnitudes spread over two decades */
static float rng_weight(void) {
    const float a = 0.01f + (float)(rng_next() >> 40) * 0x1.0p-24f;
    return (rng_next() & 1) ? a : -a;
}

enum { N_MAX = 1536 };

static const slm_dtype_traits *tr_of(int t) { return slm_dtype_get((uint32_t)t); }

static size_t row_bytes(int t, int64_t n) {
    size_t b = 0;
    return slm_row_bytes((uint32_t)t, n, &b) ? b : 0;
}

static int q8s(int c) { return SLM_DT_SP_FIRST + 1 + c; }
static int q4s(int c) { return SLM_DT_SP_FIRST + 64 + c; }
static int qs(int bits, int c) { return bits == 8 ? q8s(c) : q4s(c); }

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- decoders from the spec ----------------------------------------------------------------
 * A row decodes to per-block scale bits d16[b] and per-weight integers q[i] (the dense value
 * is d * q; for 4-bit values q = u - 8), plus a stored flag per weight. */
typedef struct {
    uint16_t d16[N_MAX / 32];
    int q[N_MAX];
    bool stored[N_MAX];
} decoded;

static void decode_s24(int bits, const uint8_t *p, int64_t n, decoded *o) {
    const int bb = bits == 8 ? 22 : 14;
    for (int64_t b = 0; b < n / 32; b++, p += bb) {
        o->d16[b] = u16_at(p);
        for (int j = 0; j < 32; j++) {
            o->q[b * 32 + j] = 0;
            o->stored[b * 32 + j] = false;
        }
        for (int g = 0; g < 8; g++) {
            const int nib = g % 2 ? p[2 + g / 2] >> 4 : p[2 + g / 2] & 15;
            const int pos[2] = {nib & 3, nib >> 2};
            for (int s = 0; s < 2; s++) {
                const int k = 2 * g + s;
                const int v = bits == 8 ? (int8_t)p[6 + k] : (k < 8 ? p[6 + k] & 15 : p[6 + k - 8] >> 4) - 8;
                o->q[b * 32 + 4 * g + pos[s]] = v;
                o->stored[b * 32 + 4 * g + pos[s]] = true;
            }
        }
    }
}

static void decode_us(int bits, const uint8_t *p, int64_t n, decoded *o) {
    const uint8_t *v = p + n / 32 * 6;
    int k = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        o->d16[b] = u16_at(p + 6 * b);
        const uint32_t m = u32_at(p + 6 * b + 2);
        for (int j = 0; j < 32; j++) {
            o->stored[b * 32 + j] = (m >> j) & 1;
            int q = 0;
            if (o->stored[b * 32 + j]) {
                q = bits == 8 ? (int8_t)v[k] : (k % 2 ? v[k / 2] >> 4 : v[k / 2] & 15) - 8;
                k++;
            }
            o->q[b * 32 + j] = q;
        }
    }
}

/* q8_0 (34-byte) or q4_0 (18-byte) blocks as (d16, q) with q4_0's q = u - 8 */
static void decode_dense(int t, const uint8_t *p, int64_t n, decoded *o) {
    for (int64_t b = 0; b < n / 32; b++) {
        if (t == SLM_DT_Q8_0) {
            o->d16[b] = u16_at(p + 34 * b);
            for (int j = 0; j < 32; j++) o->q[b * 32 + j] = (int8_t)p[34 * b + 2 + j];
        } else {
            const uint8_t *blk = p + 18 * b;
            o->d16[b] = u16_at(blk);
            for (int j = 0; j < 16; j++) {
                o->q[b * 32 + j] = (blk[2 + j] & 15) - 8;
                o->q[b * 32 + j + 16] = (blk[2 + j] >> 4) - 8;
            }
        }
    }
}

static bool same_values(const decoded *a, const decoded *b, int64_t n) {
    for (int64_t b_ = 0; b_ < n / 32; b_++)
        if (a->d16[b_] != b->d16[b_]) return false;
    for (int64_t i = 0; i < n; i++)
        if (a->q[i] != b->q[i]) return false;
    return true;
}

/* ---- ids, names, sizes --------------------------------------------------------------------- */

static void check_ids(void) {
    CHECK(slm_dtype_from_name("s24q8") == SLM_DT_SP_FIRST, "s24q8 id");
    CHECK(slm_dtype_from_name("S24Q4") == SLM_DT_SP_FIRST + 1, "s24q4 id");
    CHECK(slm_sp_24_type(8) == SLM_DT_SP_FIRST && slm_sp_24_type(4) == SLM_DT_SP_FIRST + 1 &&
              slm_sp_24_type(2) == -1, "slm_sp_24_type");
    for (int c = 1; c <= 63; c++) {
        char name[16];
        snprintf(name, sizeof name, "q8s%d", c);
        CHECK(slm_dtype_from_name(name) == q8s(c), "%s id", name);
        char name4[16];
        snprintf(name4, sizeof name4, "q4s%d", c);
        CHECK(slm_dtype_from_name(name4) == q4s(c), "%s id", name4);
        slm_sp_format f4;
        CHECK(slm_sp_format_of((uint32_t)q4s(c), &f4) && f4.kind == SLM_SP_UNSTRUCTURED && f4.bits == 4 && f4.cls == c,
              "%s descriptor", name4);
        CHECK(row_bytes(q4s(c), 128) == 4 * 6 + (size_t)c, "%s row bytes (n 128)", name4);
        CHECK(row_bytes(q4s(c), 64) == 2 * 6 + (size_t)(c + 1) / 2, "%s row bytes (n 64)", name4);
        CHECK(strcmp(slm_dtype_name((uint32_t)q8s(c)), name) == 0, "%s name", name);
        slm_sp_format f;
        CHECK(slm_sp_format_of((uint32_t)q8s(c), &f) && f.kind == SLM_SP_UNSTRUCTURED && f.bits == 8 && f.cls == c,
              "%s descriptor", name);
        CHECK(row_bytes(q8s(c), 128) == 4 * 6 + 2 * (size_t)c, "%s row bytes", name);
        CHECK(slm_sp_capacity(&f, 1536) == 24 * c, "%s capacity", name);
        CHECK(slm_sp_act_type((uint32_t)q8s(c)) == SLM_DT_Q8_0, "%s activations", name);
    }
    slm_sp_format f;
    CHECK(slm_sp_format_of(SLM_DT_SP_FIRST, &f) && f.kind == SLM_SP_24 && f.bits == 8, "s24q8 descriptor");
    CHECK(slm_sp_format_of(SLM_DT_SP_FIRST + 1, &f) && f.kind == SLM_SP_24 && f.bits == 4, "s24q4 descriptor");
    CHECK(row_bytes(SLM_DT_SP_FIRST, 64) == 44 && row_bytes(SLM_DT_SP_FIRST + 1, 96) == 42, "2:4 row bytes");
    size_t b;
    CHECK(!slm_row_bytes((uint32_t)q8s(5), 96, &b), "unstructured rows are multiples of 64");
    CHECK(!slm_row_bytes(SLM_DT_SP_FIRST, 48, &b), "2:4 rows are multiples of 32");
    CHECK(slm_sp_format_of(SLM_DT_SP_FIRST + 127, NULL) && !slm_sp_format_of(SLM_DT_SP_FIRST + 128, NULL) &&
              !slm_sp_format_of(SLM_DT_SP_FIRST - 1, NULL), "the range is ids 216 .. 343");
    CHECK(slm_sp_act_type(SLM_DT_Q8_0) == -1, "no activation type for other ids");
    /* names are unique across the whole table */
    for (int t = SLM_DT_SP_FIRST; t < SLM_DT_SP_FIRST + 128; t++)
        CHECK(slm_dtype_from_name(slm_dtype_name((uint32_t)t)) == t, "name of %d resolves to it", t);
}

static void check_type_choice(void) {
    CHECK(slm_sp_unstructured_type(8, 1536, 0) == q8s(1), "nnz 0 -> q8s1");
    CHECK(slm_sp_unstructured_type(8, 1536, 24) == q8s(1), "nnz 24 -> q8s1");
    CHECK(slm_sp_unstructured_type(8, 1536, 25) == q8s(2), "nnz 25 -> q8s2");
    CHECK(slm_sp_unstructured_type(8, 1536, 768) == q8s(32), "nnz 768 -> q8s32");
    CHECK(slm_sp_unstructured_type(8, 1536, 769) == q8s(33), "nnz 769 -> q8s33");
    CHECK(slm_sp_unstructured_type(8, 1536, 63 * 24) == q8s(63), "nnz 1512 -> q8s63");
    CHECK(slm_sp_unstructured_type(8, 1536, 63 * 24 + 1) == -1, "too dense -> -1");
    CHECK(slm_sp_unstructured_type(8, 96, 10) == -1, "n not a multiple of 64 -> -1");
    CHECK(slm_sp_unstructured_type(3, 1536, 10) == -1, "unsupported bits -> -1");
    CHECK(slm_sp_unstructured_type(4, 1536, 25) == q4s(2), "4 bits, nnz 25 -> q4s2");
    /* against the definition: smallest c with c * n / 64 >= nnz */
    for (int64_t nnz = 0; nnz <= 576; nnz += 7) {
        int want = -1;
        for (int c = 63; c >= 1; c--)
            if (c * 9 >= nnz) want = q8s(c);
        CHECK(slm_sp_unstructured_type(8, 576, nnz) == want, "n 576 nnz %lld", (long long)nnz);
    }
}

/* ---- 2:4 --------------------------------------------------------------------------------------- */

static void check_24(int bits) {
    const int t = slm_sp_24_type(bits), dense = bits == 8 ? SLM_DT_Q8_0 : SLM_DT_Q4_0;
    const slm_dtype_traits *tr = tr_of(t), *dtr = tr_of(dense);
    static float x[N_MAX], pruned[N_MAX], y[N_MAX], act[N_MAX];
    static uint8_t q[N_MAX * 2], dq[N_MAX * 2];
    static decoded a, b;
    const int64_t n = 1536;
    for (int rep = 0; rep < 4; rep++) {
        /* dense row: the quantizer keeps the two largest |w| of each group */
        for (int64_t i = 0; i < n; i++) x[i] = rng_weight();
        if (rep == 3) /* ties: equal magnitudes keep the lower positions */
            for (int64_t i = 0; i < n; i++) x[i] = (i % 3 == 0) ? -0.5f : 0.5f;
        tr->from_float(x, q, n);
        decode_s24(bits, q, n, &a);
        int bad = 0;
        for (int64_t g = 0; g < n / 4; g++) {
            int i0 = 0, i1 = -1;
            for (int j = 1; j < 4; j++)
                if (fabsf(x[4 * g + j]) > fabsf(x[4 * g + i0])) i0 = j;
            for (int j = 0; j < 4; j++)
                if (j != i0 && (i1 < 0 || fabsf(x[4 * g + j]) > fabsf(x[4 * g + i1]))) i1 = j;
            for (int j = 0; j < 4; j++) bad += a.stored[4 * g + j] != (j == i0 || j == i1);
            const int nib = g % 2 ? q[(g / 8) * (bits == 8 ? 22 : 14) + 2 + (g % 8) / 2] >> 4
                                  : q[(g / 8) * (bits == 8 ? 22 : 14) + 2 + (g % 8) / 2] & 15;
            bad += (nib & 3) >= (nib >> 2); /* kept positions in increasing order */
        }
        CHECK(bad == 0, "s24q%d rep %d: the two largest of every group kept (%d wrong)", bits, rep, bad);
        /* the pruned dense row: same values as q8_0 / q4_0 of it */
        for (int64_t i = 0; i < n; i++) pruned[i] = a.stored[i] ? x[i] : 0.0f;
        dtr->from_float(pruned, dq, n);
        decode_dense(dense, dq, n, &b);
        CHECK(same_values(&a, &b, n), "s24q%d rep %d: values equal %s of the pruned row", bits, rep, dtr->name);
        /* quantizing the pruned row again gives the same bytes (the pattern is kept) */
        static uint8_t q2[N_MAX * 2];
        tr->from_float(pruned, q2, n);
        CHECK(memcmp(q, q2, row_bytes(t, n)) == 0, "s24q%d rep %d: pruned row requantizes to the same bytes", bits,
              rep);
        /* to_float and dot_f32 against the spec decoder */
        tr->to_float(q, y, n);
        int mism = 0;
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            act[i] = rng_uniform();
            const float v = slm_f16_to_f32(a.d16[i / 32]) * (float)a.q[i];
            mism += y[i] != v;
            ref += (double)v * act[i];
            mag += fabs((double)v * act[i]);
        }
        CHECK(mism == 0, "s24q%d rep %d: to_float matches the spec decoder (%d)", bits, rep, mism);
        CHECK(fabs(tr->dot_f32(q, act, n) - ref) <= 1e-5 * mag + 1e-30, "s24q%d rep %d: dot_f32", bits, rep);
    }
    /* an already pruned row with random kept positions keeps its zero pattern */
    for (int64_t g = 0; g < n / 4; g++) {
        const int p0 = (int)(rng_next() % 4), p1 = (p0 + 1 + (int)(rng_next() % 3)) % 4;
        for (int j = 0; j < 4; j++) x[4 * g + j] = (j == p0 || j == p1) ? rng_weight() : 0.0f;
    }
    tr->from_float(x, q, n);
    decode_s24(bits, q, n, &a);
    tr->to_float(q, y, n);
    int pat = 0;
    for (int64_t i = 0; i < n; i++) pat += a.stored[i] != (x[i] != 0.0f) || (x[i] == 0.0f && y[i] != 0.0f);
    CHECK(pat == 0, "s24q%d: the zero pattern of a pruned row is kept (%d)", bits, pat);
    dtr->from_float(x, dq, n);
    decode_dense(dense, dq, n, &b);
    CHECK(same_values(&a, &b, n), "s24q%d: pruned row equals %s value for value", bits, dtr->name);

    /* check_rows: valid rows pass, a group naming one position twice (or out of order) fails */
    CHECK(tr->check_rows((uint32_t)t, q, 512, 3), "s24q%d: valid rows pass", bits);
    const size_t rb = row_bytes(t, 512);
    uint8_t save = q[2 * rb + 2];
    q[2 * rb + 2] = (uint8_t)((save & 0xf0) | 0x5); /* positions 1, 1 */
    CHECK(!tr->check_rows((uint32_t)t, q, 512, 3), "s24q%d: repeated position rejected", bits);
    q[2 * rb + 2] = (uint8_t)((save & 0xf0) | 0x2); /* positions 2, 0 */
    CHECK(!tr->check_rows((uint32_t)t, q, 512, 3), "s24q%d: decreasing positions rejected", bits);
    q[2 * rb + 2] = save;
    CHECK(tr->check_rows((uint32_t)t, q, 512, 3), "s24q%d: restored row passes", bits);
}

/* ---- unstructured (8- and 4-bit values) -------------------------------------------------------------------------------- */

static int popcount_row(const decoded *a, int64_t n) {
    int c = 0;
    for (int64_t i = 0; i < n; i++) c += a->stored[i];
    return c;
}

static void check_us(int bits) {
    const int dense = bits == 8 ? SLM_DT_Q8_0 : SLM_DT_Q4_0;
    static float x[N_MAX], pruned[N_MAX], y[N_MAX], act[N_MAX];
    static uint8_t q[N_MAX * 2], dq[N_MAX * 2];
    static decoded a, b;
    const int64_t n = 1536;
    static const int classes[] = {1, 3, 13, 32, 51, 63};
    for (size_t ci = 0; ci < sizeof classes / sizeof classes[0]; ci++) {
        const int c = classes[ci], t = qs(bits, c);
        const slm_dtype_traits *tr = tr_of(t);
        const int64_t cap = c * (n / 64);
        /* (1) sparse row, nnz < C: every nonzero stored, padding on the first zero weights */
        const int64_t nnz = cap / 2;
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        for (int64_t k = 0; k < nnz;) {
            const int64_t i = (int64_t)(rng_next() % (uint64_t)n);
            if (x[i] == 0.0f) {
                x[i] = rng_weight();
                k++;
            }
        }
        tr->from_float(x, q, n);
        decode_us(bits, q, n, &a);
        CHECK(popcount_row(&a, n) == cap, "q%ds%d: exactly C = %lld stored (%d)", bits, c, (long long)cap,
              popcount_row(&a, n));
        int64_t pad_left = cap - nnz, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (x[i] != 0.0f) bad += !a.stored[i];
            else if (pad_left > 0) bad += !a.stored[i], pad_left--;
            else bad += a.stored[i];
        }
        CHECK(bad == 0, "q%ds%d: nonzeros stored, padding on the lowest zero weights (%lld)", bits, c, (long long)bad);
        tr->to_float(q, y, n);
        int pat = 0;
        for (int64_t i = 0; i < n; i++) pat += (x[i] == 0.0f) != (y[i] == 0.0f && x[i] == 0.0f);
        CHECK(pat == 0, "q%ds%d: zero weights decode to zero (%d)", bits, c, pat);
        tr_of(dense)->from_float(x, dq, n);
        decode_dense(dense, dq, n, &b);
        CHECK(same_values(&a, &b, n), "q%ds%d: pruned row equals %s value for value", bits, c, tr_of(dense)->name);
        /* to_float and dot_f32 against the spec decoder */
        int mism = 0;
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < n; i++) {
            act[i] = rng_uniform();
            const float v = slm_f16_to_f32(a.d16[i / 32]) * (float)a.q[i];
            mism += y[i] != v;
            ref += (double)v * act[i];
            mag += fabs((double)v * act[i]);
        }
        CHECK(mism == 0, "q%ds%d: to_float matches the spec decoder (%d)", bits, c, mism);
        CHECK(fabs(tr->dot_f32(q, act, n) - ref) <= 1e-5 * mag + 1e-30, "q%ds%d: dot_f32", bits, c);

        /* (2) dense row: the C largest |w| kept, ties to the lower index */
        for (int64_t i = 0; i < n; i++) x[i] = rng_weight();
        for (int64_t i = 0; i < n; i += 5) x[i] = (i % 2) ? 0.25f : -0.25f; /* many ties */
        tr->from_float(x, q, n);
        decode_us(bits, q, n, &a);
        CHECK(popcount_row(&a, n) == cap, "q%ds%d dense: exactly C stored", bits, c);
        float min_kept = INFINITY, max_dropped = 0.0f;
        int64_t first_dropped_tie = n, last_kept_tie = -1;
        for (int64_t i = 0; i < n; i++) {
            const float m = fabsf(x[i]);
            if (a.stored[i] && m < min_kept) min_kept = m;
            if (!a.stored[i] && m > max_dropped) max_dropped = m;
        }
        for (int64_t i = 0; i < n; i++) {
            if (fabsf(x[i]) != min_kept) continue;
            if (a.stored[i]) last_kept_tie = i;
            else if (first_dropped_tie == n) first_dropped_tie = i;
        }
        CHECK(min_kept >= max_dropped, "q%ds%d dense: kept the largest (%g < %g)", bits, c, min_kept, max_dropped);
        CHECK(last_kept_tie < first_dropped_tie, "q%ds%d dense: ties go to the lower index", bits, c);
        for (int64_t i = 0; i < n; i++) pruned[i] = a.stored[i] ? x[i] : 0.0f;
        tr_of(dense)->from_float(pruned, dq, n);
        decode_dense(dense, dq, n, &b);
        CHECK(same_values(&a, &b, n), "q%ds%d dense: values equal %s of the pruned row", bits, c, tr_of(dense)->name);

        /* (3) check_rows: 3 valid rows pass; one bit more or less in row 2 fails */
        const int64_t rn = 256;
        const size_t rb = row_bytes(t, rn);
        static uint8_t rows[3 * (256 / 32 * 6 + 63 * 4)];
        for (int r = 0; r < 3; r++) {
            for (int64_t i = 0; i < rn; i++) x[i] = (rng_next() % 3) ? 0.0f : rng_weight();
            tr->from_float(x, rows + (size_t)r * rb, rn);
        }
        CHECK(tr->check_rows((uint32_t)t, rows, rn, 3), "q%ds%d: valid rows pass", bits, c);
        uint8_t *mask = rows + 2 * rb + 6 * 3 + 2; /* row 2, block 3 */
        int bit = 0;
        while (bit < 32 && (u32_at(mask) >> bit & 1)) bit++;
        if (bit < 32) {
            mask[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            CHECK(!tr->check_rows((uint32_t)t, rows, rn, 3), "q%ds%d: one mask bit too many rejected", bits, c);
            mask[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        bit = 0;
        while (bit < 32 && !(u32_at(mask) >> bit & 1)) bit++;
        if (bit < 32) {
            mask[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            CHECK(!tr->check_rows((uint32_t)t, rows, rn, 3), "q%ds%d: one mask bit too few rejected", bits, c);
            mask[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        CHECK(tr->check_rows((uint32_t)t, rows, rn, 3), "q%ds%d: restored rows pass", bits, c);
        CHECK(!tr->check_rows((uint32_t)t, rows, 96, 1), "q%ds%d: rows of 96 rejected", bits, c);
    }
}

/* The reference decoders never read past a row's C values, whatever its masks say: a row
 * in an allocation of exactly its size with every mask bit set (run under ASan to see). */
static void check_malformed(int bits) {
    /* q8s1 rows of 128 (C = 2 values of 1), q4s1 rows of 64 (C = 1 value, u = 9: 1) */
    const int t = qs(bits, 1);
    const int64_t n = bits == 8 ? 128 : 64, cap = n / 64;
    const size_t rb = row_bytes(t, n), hb = (size_t)(n / 32) * 6;
    uint8_t *row = malloc(rb);
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    if (!row || !x || !y) {
        CHECK(0, "out of memory");
        free(row), free(x), free(y);
        return;
    }
    CHECK(rb == hb + (size_t)(bits == 8 ? cap : (cap + 1) / 2), "q%ds1: row bytes", bits);
    memset(row, 0xff, rb);
    for (int64_t b = 0; b < n / 32; b++) row[6 * b] = 0, row[6 * b + 1] = 0x3c; /* d = 1 */
    for (size_t i = hb; i < rb; i++) row[i] = bits == 8 ? 1 : 0x99;
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    const slm_dtype_traits *tr = tr_of(t);
    CHECK(!tr->check_rows((uint32_t)t, row, n, 1), "q%ds1: all-ones masks rejected", bits);
    tr->to_float(row, y, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += y[i];
    CHECK(s == (float)cap, "q%ds1: to_float of a malformed row reads only C values (sum %g)", bits, s);
    CHECK(tr->dot_f32(row, x, n) == (float)cap, "q%ds1: dot_f32 of a malformed row reads only C values", bits);
    free(row), free(x), free(y);
}

int main(void) {
    check_ids();
    check_type_choice();
    check_24(8);
    check_24(4);
    check_us(8);
    check_us(4);
    check_malformed(8);
    check_malformed(4);
    return test_summary("sparse");
}
