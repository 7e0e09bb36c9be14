/* test_kvcache.c - block pool: allocation on demand, exhaustion reported, blocks returned on
 * truncate/release, addressing through the block table; block manager: fork, copy-on-write,
 * sizing in bytes, accounting, and a randomized run against a reference model of the
 * contents of every sequence. */
#include <stdint.h>
#include <string.h>

#include "runtime/kvcache.h"
#include "test.h"

/* Reference counts recomputed from the block tables must equal kv->refs, and every block is
 * either free (once on the free list) or referenced. */
static int pool_consistent(const slm_kv *kv, slm_seq *const *seqs, int n) {
    int32_t cnt[256] = {0}, onfree[256] = {0};
    if (kv->n_blocks > 256) return 0;
    for (int i = 0; i < n; i++)
        for (int b = 0; b < seqs[i]->n_blocks; b++) cnt[seqs[i]->blocks[b]]++;
    for (int i = 0; i < kv->n_free; i++) onfree[kv->free_list[i]]++;
    for (int id = 0; id < kv->n_blocks; id++) {
        if (cnt[id] != kv->refs[id]) return 0;
        if (onfree[id] != (cnt[id] == 0)) return 0;
    }
    return 1;
}

static float key_at(const slm_kv *kv, const slm_seq *s, int l, int p, int d) {
    return ((const float *)slm_kv_key(kv, s, l, p))[d];
}
static float val_at(const slm_kv *kv, const slm_seq *s, int l, int p, int d) {
    return ((const float *)slm_kv_value(kv, s, l, p))[d];
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* fork and copy-on-write with explicit checks */
static void test_fork_cow(void) {
    slm_kv *kv;
    enum { L = 3, D = 4, BS = 4 };
    CHECK(slm_kv_create(SLM_KV_F32, L, D, BS, 10 * BS, &kv) == SLM_OK, "create");
    slm_seq a = {0}, b = {0}, c = {0};
    float k[D], v[D];
    CHECK(slm_seq_reserve(kv, &a, 10) == SLM_OK && a.n_blocks == 3, "a: 10 positions, 3 blocks");
    for (int l = 0; l < L; l++)
        for (int p = 0; p < 10; p++) {
            for (int d = 0; d < D; d++) k[d] = (float)(l * 1000 + p * 10 + d), v[d] = -k[d];
            slm_kv_store(kv, &a, l, p, k, v);
        }
    a.n_tokens = 10;
    CHECK(slm_seq_fork(kv, &a, &a) == SLM_ERR_ARG, "fork into itself rejected");
    CHECK(slm_seq_fork(kv, &a, &b) == SLM_OK, "fork");
    CHECK(b.n_blocks == 3 && b.n_tokens == 10 && kv->n_free == 7, "fork shares all blocks, allocates none");
    CHECK(kv->refs[a.blocks[0]] == 2 && kv->refs[a.blocks[2]] == 2, "refcounts incremented");
    CHECK(slm_seq_fork(kv, &a, &b) == SLM_ERR_ARG, "fork into a non-empty sequence rejected");
    int same = 1;
    for (int p = 0; p < 10; p++) same &= slm_kv_key(kv, &a, 2, p) == slm_kv_key(kv, &b, 2, p);
    CHECK(same, "forked sequence reads the same storage");

    /* b appends position 10: its last block (positions 8..11) is shared and must be copied */
    const int32_t shared_last = a.blocks[2];
    CHECK(slm_seq_reserve(kv, &b, 11) == SLM_OK, "reserve after fork");
    CHECK(b.blocks[2] != shared_last && a.blocks[2] == shared_last, "writer got a private copy of its last block");
    CHECK(b.blocks[0] == a.blocks[0] && b.blocks[1] == a.blocks[1], "untouched blocks stay shared");
    CHECK(kv->refs[shared_last] == 1 && kv->refs[b.blocks[2]] == 1 && kv->n_free == 6, "refs after copy");
    int copied = 1;
    for (int l = 0; l < L; l++)
        for (int p = 8; p < 10; p++)
            for (int d = 0; d < D; d++)
                copied &= key_at(kv, &b, l, p, d) == (float)(l * 1000 + p * 10 + d) && val_at(kv, &b, l, p, d) == -key_at(kv, &b, l, p, d);
    CHECK(copied, "the copy holds the old contents in every layer");
    for (int l = 0; l < L; l++) {
        for (int d = 0; d < D; d++) k[d] = 7.0f, v[d] = 8.0f;
        slm_kv_store(kv, &b, l, 10, k, v);
        slm_kv_store(kv, &b, l, 9, k, v);
    }
    b.n_tokens = 11;
    int a_intact = 1;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < 10; p++)
            for (int d = 0; d < D; d++) a_intact &= key_at(kv, &a, l, p, d) == (float)(l * 1000 + p * 10 + d);
    CHECK(a_intact, "writes of the fork leave the original unchanged");
    CHECK(key_at(kv, &b, 1, 9, 0) == 7.0f && val_at(kv, &b, 1, 10, 3) == 8.0f, "the writer sees its own writes");

    /* overwriting an old shared position: prepare_write copies block 0 only */
    CHECK(slm_seq_prepare_write(kv, &b, 1, 2) == SLM_OK, "prepare_write");
    CHECK(b.blocks[0] != a.blocks[0] && b.blocks[1] == a.blocks[1], "only the block covering [1,3) was copied");
    CHECK(slm_seq_prepare_write(kv, &b, 1, 2) == SLM_OK && kv->n_free == 5, "second prepare_write copies nothing");
    CHECK(slm_seq_prepare_write(kv, &b, -1, 2) == SLM_ERR_ARG && slm_seq_prepare_write(kv, &b, INT32_MAX, 2) == SLM_ERR_ARG,
          "bad ranges rejected");

    /* a truncated fork re-appending into a shared block copies it */
    CHECK(slm_seq_fork(kv, &a, &c) == SLM_OK, "second fork");
    slm_seq_truncate(kv, &c, 5);
    CHECK(c.n_blocks == 2 && kv->refs[a.blocks[2]] == 1 && kv->refs[a.blocks[1]] == 3, "truncating a fork drops refs");
    CHECK(slm_seq_reserve(kv, &c, 6) == SLM_OK && c.blocks[1] != a.blocks[1] && kv->refs[a.blocks[1]] == 2,
          "appending at 5 copies the block shared by three");

    /* exhaustion during copy-on-write changes nothing */
    slm_seq d = {0}, filler = {0};
    CHECK(slm_seq_fork(kv, &a, &d) == SLM_OK, "third fork");
    CHECK(slm_seq_reserve(kv, &filler, kv->n_free * BS) == SLM_OK && kv->n_free == 0, "fill the pool");
    int32_t before[3];
    memcpy(before, d.blocks, sizeof before);
    CHECK(slm_seq_reserve(kv, &d, 11) == SLM_ERR_FULL, "copy-on-write with an empty pool reports full");
    CHECK(!memcmp(before, d.blocks, sizeof before) && d.n_blocks == 3 && kv->n_free == 0, "and changes nothing");
    slm_seq *all[] = {&a, &b, &c, &d, &filler};
    CHECK(pool_consistent(kv, all, 5), "pool consistent");

    /* accounting */
    slm_kv_usage u;
    const slm_seq *set[] = {&a, &d};
    CHECK(slm_kv_account(kv, set, 2, 100, &u) == SLM_OK, "account");
    CHECK(u.blocks == 3 && u.tokens == 20 && u.token_bytes == 2 * L * D * 4, "shared blocks count once (%d blocks)", u.blocks);
    CHECK(u.paged_bytes == (size_t)3 * BS * u.token_bytes && u.reserved_bytes == (size_t)200 * u.token_bytes, "bytes");
    CHECK(u.reserved_waste > 0.89 && u.reserved_waste < 0.91, "reserved waste %.3f", u.reserved_waste);
    const slm_seq *one[] = {&a};
    CHECK(slm_kv_account(kv, one, 1, 12, &u) == SLM_OK && u.paged_waste > 0.16 && u.paged_waste < 0.17,
          "paged waste of 10 tokens in 3 blocks of 4: %.3f", u.paged_waste);

    for (int i = 0; i < 5; i++) slm_seq_release(kv, all[i]);
    CHECK(kv->n_free == kv->n_blocks, "everything returned");
    slm_kv_free(kv);
}

/* Byte sizing helpers. */
static void test_bytes(void) {
    /* fixture shape: 30 layers, kv_dim 192, F16, blocks of 16: 30*16*192*2*2 = 368640 bytes */
    CHECK(slm_kv_block_bytes(SLM_KV_F16, 30, 192, 16) == 368640, "block bytes");
    CHECK(slm_kv_tokens_for_bytes(SLM_KV_F16, 30, 192, 16, 368640 * 10 + 5) == 160, "bytes -> whole blocks");
    CHECK(slm_kv_tokens_for_bytes(SLM_KV_F16, 30, 192, 16, 1000) == 0, "less than a block");
    CHECK(slm_kv_block_bytes(SLM_KV_F32, 0, 192, 16) == 0, "bad geometry");
    CHECK(slm_kv_tokens_for_bytes(SLM_KV_F32, 1, 1, 1, SIZE_MAX) > 0, "huge budgets clamp");
}

/* Randomized operations over several sequences, checked against a model of their contents. */
static void test_random(void) {
    enum { L = 2, D = 3, BS = 4, NB = 48, NS = 6, MAXLEN = 70 };
    slm_kv *kv;
    CHECK(slm_kv_create(SLM_KV_F32, L, D, BS, NB * BS, &kv) == SLM_OK, "create");
    slm_seq seqs[NS];
    memset(seqs, 0, sizeof seqs);
    slm_seq *all[NS];
    static float model[NS][MAXLEN][L]; /* key = model + d, value = -(model + d) */
    for (int i = 0; i < NS; i++) all[i] = &seqs[i];
    float counter = 1.0f;
    int bad_data = 0, bad_pool = 0, full_seen = 0, bad_full = 0, cows = 0, n_ops = 10000;
    for (int op = 0; op < n_ops; op++) {
        const int i = (int)rnd(NS);
        slm_seq *s = &seqs[i];
        const uint32_t kind = rnd(100);
        if (kind < 40) { /* append 1..12 tokens */
            const int add = 1 + (int)rnd(12);
            if (s->n_tokens + add > MAXLEN) continue;
            const int free0 = kv->n_free, nb0 = s->n_blocks;
            slm_status st = slm_seq_reserve(kv, s, s->n_tokens + add);
            if (st == SLM_ERR_FULL) {
                full_seen++;
                bad_full += kv->n_free != free0 || s->n_blocks != nb0;
                continue;
            }
            if (st != SLM_OK) {
                bad_data++;
                continue;
            }
            for (int p = s->n_tokens; p < s->n_tokens + add; p++)
                for (int l = 0; l < L; l++) {
                    float k[D], v[D];
                    model[i][p][l] = counter;
                    for (int d = 0; d < D; d++) k[d] = counter + (float)d, v[d] = -k[d];
                    counter += 1.0f;
                    slm_kv_store(kv, s, l, p, k, v);
                }
            s->n_tokens += add;
        } else if (kind < 55) { /* overwrite one old position */
            if (s->n_tokens == 0) continue;
            const int p = (int)rnd((uint32_t)s->n_tokens), l = (int)rnd(L);
            const int free0 = kv->n_free;
            slm_status st = slm_seq_prepare_write(kv, s, p, 1);
            if (st == SLM_ERR_FULL) {
                full_seen++;
                bad_full += kv->n_free != free0;
                continue;
            }
            cows += kv->n_free < free0;
            float k[D], v[D];
            model[i][p][l] = counter;
            for (int d = 0; d < D; d++) k[d] = counter + (float)d, v[d] = -k[d];
            counter += 1.0f;
            slm_kv_store(kv, s, l, p, k, v);
        } else if (kind < 70) { /* fork into an empty slot */
            int j = (int)rnd(NS);
            if (j == i || seqs[j].n_blocks != 0) continue;
            if (slm_seq_fork(kv, s, &seqs[j]) != SLM_OK) {
                bad_data++;
                continue;
            }
            memcpy(model[j], model[i], sizeof model[i]);
        } else if (kind < 85) { /* truncate */
            slm_seq_truncate(kv, s, s->n_tokens ? (int)rnd((uint32_t)s->n_tokens + 1) : 0);
        } else if (kind < 92) { /* release */
            slm_seq_release(kv, s);
        } else { /* verify everything */
            for (int q = 0; q < NS; q++)
                for (int p = 0; p < seqs[q].n_tokens; p++)
                    for (int l = 0; l < L; l++)
                        for (int d = 0; d < D; d++)
                            bad_data += key_at(kv, &seqs[q], l, p, d) != model[q][p][l] + (float)d ||
                                        val_at(kv, &seqs[q], l, p, d) != -(model[q][p][l] + (float)d);
        }
        bad_pool += !pool_consistent(kv, all, NS);
    }
    CHECK(bad_data == 0, "random ops: contents match the model (%d mismatches)", bad_data);
    CHECK(bad_pool == 0, "random ops: refcounts and free list consistent (%d bad)", bad_pool);
    CHECK(full_seen > 0 && bad_full == 0, "random ops: exhaustion reported %d times, never changing state", full_seen);
    CHECK(cows > 0, "random ops: %d copy-on-write events", cows);
    for (int i = 0; i < NS; i++) slm_seq_release(kv, &seqs[i]);
    int refs_zero = 1;
    for (int id = 0; id < kv->n_blocks; id++) refs_zero &= kv->refs[id] == 0;
    CHECK(kv->n_free == kv->n_blocks && refs_zero, "random ops: every block back in the pool (%d of %d)", kv->n_free,
          kv->n_blocks);
    slm_kv_free(kv);
}

int main(void) {
    test_fork_cow();
    test_bytes();
    test_random();
    slm_kv *kv;
    CHECK(slm_kv_create(SLM_KV_F32, 2, 8, 4, 0, &kv) == SLM_ERR_ARG, "zero capacity rejected");
    CHECK(slm_kv_create(SLM_KV_F32, 2, 8, 4, 30, &kv) == SLM_OK, "create");
    CHECK(kv->n_blocks == 8 && kv->n_free == 8, "30 tokens in blocks of 4 -> 8 blocks");

    slm_seq a = {0}, b = {0};
    CHECK(slm_seq_reserve(kv, &a, 5) == SLM_OK && a.n_blocks == 2, "5 positions take 2 blocks");
    CHECK(slm_seq_reserve(kv, &a, 8) == SLM_OK && a.n_blocks == 2, "8 positions still 2 blocks");
    CHECK(slm_seq_reserve(kv, &b, 20) == SLM_OK && b.n_blocks == 5, "second sequence takes 5");
    CHECK(kv->n_free == 1, "one block left");
    CHECK(slm_seq_reserve(kv, &a, 13) == SLM_ERR_FULL, "needing 2 more blocks with 1 free is reported as full");
    CHECK(a.n_blocks == 2 && kv->n_free == 1, "a failed reserve changes nothing");
    CHECK(strstr(slm_last_error(), "full") != NULL, "message says full: %s", slm_last_error());

    /* distinct positions and sequences map to distinct storage; the same position in
     * different layers too */
    int distinct = 1;
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < 8; p++) {
            float *k = slm_kv_key(kv, &a, l, p);
            float *kbase = kv->k;
            for (int q = 0; q < 20; q++) distinct &= k != slm_kv_key(kv, &b, l, q);
            if (p) distinct &= k != slm_kv_key(kv, &a, l, p - 1);
            if (l) distinct &= k != slm_kv_key(kv, &a, 0, p);
            distinct &= k >= kbase && k + kv->kv_dim <= kbase + (size_t)2 * kv->n_blocks * 4 * 8;
        }
    CHECK(distinct, "addressing is distinct and in bounds");
    /* writes through one sequence do not touch the other */
    float zero[8] = {0}, val[8];
    for (int p = 0; p < 8; p++) slm_kv_store(kv, &a, 1, p, zero, zero);
    for (int p = 0; p < 20; p++) {
        for (int d = 0; d < 8; d++) val[d] = (float)(p * 8 + d);
        slm_kv_store(kv, &b, 1, p, val, val);
    }
    int intact = 1;
    for (int p = 0; p < 8; p++)
        for (int d = 0; d < 8; d++)
            intact &= ((float *)slm_kv_value(kv, &a, 1, p))[d] == 0.0f && ((float *)slm_kv_key(kv, &a, 1, p))[d] == 0.0f;
    CHECK(intact, "sequences are isolated");
    int stored = 1;
    for (int p = 0; p < 20; p++)
        for (int d = 0; d < 8; d++) stored &= ((float *)slm_kv_value(kv, &b, 1, p))[d] == (float)(p * 8 + d);
    CHECK(stored, "values read back through the block table");

    b.n_tokens = 20;
    slm_seq_truncate(kv, &b, 9);
    CHECK(b.n_blocks == 3 && b.n_tokens == 9 && kv->n_free == 3, "truncate to 9 keeps 3 blocks, frees 2");
    CHECK(slm_seq_reserve(kv, &a, 13) == SLM_OK && a.n_blocks == 4, "freed blocks are reused");
    slm_seq_release(kv, &a);
    slm_seq_release(kv, &b);
    CHECK(kv->n_free == 8 && a.blocks == NULL, "release returns everything");
    int refs_zero = 1;
    for (int i = 0; i < kv->n_blocks; i++) refs_zero &= kv->refs[i] == 0;
    CHECK(refs_zero, "all reference counts back to zero");
    slm_kv_free(kv);
    slm_kv_free(NULL);
    /* f16 storage rounds to half precision */
    CHECK(slm_kv_create(SLM_KV_F16, 1, 4, 2, 4, &kv) == SLM_OK && kv->elem_size == 2, "f16 pool");
    slm_seq c = {0};
    CHECK(slm_seq_reserve(kv, &c, 3) == SLM_OK, "reserve");
    float in[4] = {1.0f, -2.5f, 0.1f, 65504.0f};
    slm_kv_store(kv, &c, 0, 2, in, in);
    const uint16_t *h = slm_kv_key(kv, &c, 0, 2);
    CHECK(h[0] == 0x3c00 && h[1] == 0xc100 && h[2] == 0x2e66 && h[3] == 0x7bff, "f16 bits %04x %04x %04x %04x", h[0],
          h[1], h[2], h[3]);
    slm_seq_release(kv, &c);
    slm_kv_free(kv);
    CHECK(slm_kv_create(SLM_KV_F16, 1, 1 << 20, 4096, 1 << 30, &kv) == SLM_ERR_ARG, "absurd size rejected before allocating");
    return test_summary("test_kvcache");
}
