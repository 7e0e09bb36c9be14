/* test_kvcache.c - block pool: allocation on demand, exhaustion reported, blocks returned on
 * truncate/release, addressing through the block table. */
#include <string.h>

#include "runtime/kvcache.h"
#include "test.h"

int main(void) {
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
