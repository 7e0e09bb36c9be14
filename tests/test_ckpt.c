/* test_ckpt.c - checkpoint files: round trip, and every kind of damage refused with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"
#include "test.h"
#include "train/ckpt.h"

#define NW 1000
#define NS 300

static const char *cfg = "student=0,2\nbatch=4\nseq=32\nparam=token_embd.weight 300x64\n";
static float w[NW], m[NS], v[NS], w2[NW], m2[NS], v2[NS];

static slm_status read_back(const char *path, const char *config, int64_t *step, uint64_t *tokens) {
    return slm_ckpt_read(path, config, NW, NS, w2, m2, v2, step, tokens);
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_file(const char *from, const char *to, long n_bytes) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ch;
    for (long i = 0; a && b && (n_bytes < 0 || i < n_bytes) && (ch = fgetc(a)) != EOF; i++) fputc(ch, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

static void poke(const char *path, long at, uint8_t x) {
    FILE *f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc((c ^ x) & 0xff, f);
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/test_ckpt_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/a.ckpt", dir);
    snprintf(bad, sizeof bad, "%s/b.ckpt", dir);
    uint32_t r = 12345;
    for (int i = 0; i < NW; i++) {
        r = r * 1664525u + 1013904223u;
        w[i] = (float)(int32_t)r * 1e-9f;
    }
    for (int i = 0; i < NS; i++) {
        m[i] = (float)i * 0.25f - 7;
        v[i] = 1.0f / (float)(i + 1);
    }
    w[3] = -0.0f;
    w[4] = 1e-40f; /* a denormal survives */
    const slm_ckpt c = {.config = cfg, .step = 17, .tokens = 17 * 128, .weights = w, .n_weights = NW, .m = m,
                        .v = v, .n_state = NS};
    CHECK(slm_ckpt_write(path, &c) == SLM_OK, "write: %s", slm_last_error());

    int64_t step = -1;
    uint64_t tokens = 0;
    slm_status s = read_back(path, cfg, &step, &tokens);
    CHECK(s == SLM_OK, "read: %s", slm_last_error());
    CHECK(step == 17 && tokens == 17 * 128, "step %lld tokens %llu", (long long)step, (unsigned long long)tokens);
    CHECK(!memcmp(w, w2, sizeof w) && !memcmp(m, m2, sizeof m) && !memcmp(v, v2, sizeof v), "arrays bit-identical");
    const long size = file_size(path);
    CHECK(size == 80 + (long)strlen(cfg) + 4 * (NW + 2 * NS) + 32, "file size %ld", size);

    /* another run's configuration: the message names the line */
    const char *other = "student=0,2\nbatch=8\nseq=32\nparam=token_embd.weight 300x64\n";
    s = read_back(path, other, &step, &tokens);
    CHECK(s == SLM_ERR_ARG, "mismatched configuration refused (%d)", s);
    CHECK(strstr(slm_last_error(), "batch is '4' in the checkpoint but '8' in this run") != NULL, "message: %s",
          slm_last_error());
    const char *longer = "student=0,2\nbatch=4\nseq=32\nparam=token_embd.weight 300x64\nlora=8\n";
    s = read_back(path, longer, &step, &tokens);
    CHECK(s == SLM_ERR_ARG && strstr(slm_last_error(), "lora=8"), "extra line named: %s", slm_last_error());
    /* the same configuration with other array sizes */
    s = slm_ckpt_read(path, cfg, NW - 1, NS, w2, m2, v2, &step, &tokens);
    CHECK(s == SLM_ERR_ARG, "array size mismatch refused (%d): %s", s, slm_last_error());

    /* truncation at every interesting place */
    const long cuts[] = {0, 4, 8, 40, 79, 80, 100, size / 2, size - 33, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        copy_file(path, bad, cuts[i]);
        s = read_back(bad, cfg, &step, &tokens);
        CHECK(s == SLM_ERR_FORMAT, "truncated at %ld refused (%d): %s", cuts[i], s, slm_last_error());
    }
    /* trailing bytes */
    copy_file(path, bad, -1);
    FILE *f = fopen(bad, "ab");
    if (f) {
        fputc(0, f);
        fclose(f);
    }
    s = read_back(bad, cfg, &step, &tokens);
    CHECK(s == SLM_ERR_FORMAT, "trailing byte refused (%d)", s);

    /* a flipped bit anywhere after the size fields: checksum (or a header check) catches it */
    const long flips[] = {32, 40, 50, 80, 85, 80 + (long)strlen(cfg), size / 2, size - 40, size - 1};
    for (size_t i = 0; i < sizeof flips / sizeof *flips; i++) {
        copy_file(path, bad, -1);
        poke(bad, flips[i], 0x10);
        s = read_back(bad, cfg, &step, &tokens);
        CHECK(s == SLM_ERR_FORMAT, "byte %ld flipped refused (%d): %s", flips[i], s, slm_last_error());
    }
    /* magic, version, size fields */
    copy_file(path, bad, -1);
    poke(bad, 0, 1);
    s = read_back(bad, cfg, &step, &tokens);
    CHECK(s == SLM_ERR_FORMAT && strstr(slm_last_error(), "magic"), "wrong magic: %s", slm_last_error());
    copy_file(path, bad, -1);
    poke(bad, 8, 3);
    s = read_back(bad, cfg, &step, &tokens);
    CHECK(s == SLM_ERR_FORMAT && strstr(slm_last_error(), "version"), "wrong version: %s", slm_last_error());
    copy_file(path, bad, -1);
    poke(bad, 23, 0x80); /* n_weights huge */
    s = read_back(bad, cfg, &step, &tokens);
    CHECK(s == SLM_ERR_FORMAT, "huge count refused: %s", slm_last_error());
    copy_file(path, bad, -1);
    poke(bad, 16, 1); /* n_weights off by one: size no longer matches */
    s = read_back(bad, cfg, &step, &tokens);
    CHECK(s == SLM_ERR_FORMAT, "size field changed refused: %s", slm_last_error());
    s = read_back("/nonexistent/dir/x.ckpt", cfg, &step, &tokens);
    CHECK(s == SLM_ERR_IO, "missing file (%d)", s);
    CHECK(slm_ckpt_write("/nonexistent/dir/x.ckpt", &c) != SLM_OK, "write into a missing directory fails");

    /* rewriting keeps the file whole and readable */
    const slm_ckpt c2 = {.config = cfg, .step = 18, .tokens = 1, .weights = w2, .n_weights = NW, .m = m2, .v = v2,
                         .n_state = NS};
    CHECK(slm_ckpt_write(path, &c2) == SLM_OK, "overwrite");
    CHECK(read_back(path, cfg, &step, &tokens) == SLM_OK && step == 18, "overwritten checkpoint reads");
    /* an empty state (no trainable optimizer values) round-trips */
    const slm_ckpt c3 = {.config = "x=1\n", .step = 0, .tokens = 0, .weights = w, .n_weights = NW, .m = NULL,
                         .v = NULL, .n_state = 0};
    CHECK(slm_ckpt_write(bad, &c3) == SLM_OK, "write with no state");
    CHECK(slm_ckpt_read(bad, "x=1\n", NW, 0, w2, NULL, NULL, &step, &tokens) == SLM_OK && step == 0,
          "read with no state: %s", slm_last_error());

    unlink(path);
    unlink(bad);
    rmdir(dir);
    return test_summary("ckpt");
}
