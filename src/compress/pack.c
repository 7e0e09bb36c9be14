/* pack.c - packed model container: write, read and verify, unpack (see pack.h). */
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "compress/entropy.h"
#include "core/atomic_file.h"
#include "core/sha256.h"

static const uint8_t MAGIC[8] = {'S', 'L', 'M', 'P', 'A', 'C', 'K', 0x1a};
#define RECORD_BYTES 26 /* segment record before its name: 1 + 1 + 4 + 8 + 8 + 4 */

typedef unsigned long long ull;

const char *slm_pack_codec_name(int codec) {
    switch (codec) {
    case SLM_PACK_RAW: return "raw";
    case SLM_PACK_ZSTD: return "zstd";
    case SLM_PACK_OWN: return "own";
    case SLM_PACK_AUTO: return "auto";
    default: return "unknown";
    }
}

/* ---- CRC-32 (IEEE, reflected polynomial 0xEDB88320), four table slices ------------- */

static uint32_t crc_table[4][256];

static void crc_fill(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 4; t++) crc_table[t][i] = crc_table[0][crc_table[t - 1][i] & 0xff] ^ (crc_table[t - 1][i] >> 8);
}

static void crc_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc_fill);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    crc_init();
    uint32_t c = 0xffffffffu;
    while (n >= 4) {
        c ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        c = crc_table[3][c & 0xff] ^ crc_table[2][(c >> 8) & 0xff] ^ crc_table[1][(c >> 16) & 0xff] ^
            crc_table[0][c >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* ---- little-endian fields ------------------------------------------------------------ */

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---- codecs -------------------------------------------------------------------------- */

static slm_status zstd_encode(ZSTD_CCtx *cc, int level, const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                              size_t *out) {
    size_t r = ZSTD_compressCCtx(cc, dst, cap, src, n, level);
    if (ZSTD_isError(r)) return slm_error(SLM_ERR_FORMAT, "zstd: %s", ZSTD_getErrorName(r));
    *out = r;
    return SLM_OK;
}

/* Decodes one segment's coded bytes into dst (exactly raw bytes). */
static slm_status decode(int codec, const uint8_t *src, size_t len, uint8_t *dst, size_t raw) {
    switch (codec) {
    case SLM_PACK_RAW:
        if (len != raw) return slm_error(SLM_ERR_FORMAT, "raw segment of %zu bytes holds %zu", raw, len);
        if (raw) memcpy(dst, src, raw);
        return SLM_OK;
    case SLM_PACK_ZSTD: {
        size_t r = ZSTD_decompress(dst, raw, src, len);
        if (ZSTD_isError(r)) return slm_error(SLM_ERR_FORMAT, "corrupt zstd data (%s)", ZSTD_getErrorName(r));
        if (r != raw) return slm_error(SLM_ERR_FORMAT, "zstd data gives %zu bytes, expected %zu", r, raw);
        return SLM_OK;
    }
    case SLM_PACK_OWN: {
        slm_status s = slm_ent_decode(src, len, dst, raw);
        if (s) return slm_error_prefix(s, "corrupt coded data");
        return SLM_OK;
    }
    default: return slm_error(SLM_ERR_FORMAT, "unknown codec %d", codec);
    }
}

/* ---- reading ------------------------------------------------------------------------- */

typedef struct {
    int codec;
    uint32_t dtype;
    char name[256];     /* NUL-terminated, printable */
    uint64_t raw, coded, offset; /* offset: position in the original file */
    uint32_t crc;
    const uint8_t *data;
} seg;

typedef struct {
    void *map;
    size_t size;
    uint64_t orig;
    uint8_t sha[32];
    uint32_t n;
    uint64_t max_raw;
} packed;

static void packed_close(packed *p) {
    if (p->map) munmap(p->map, p->size);
    memset(p, 0, sizeof *p);
}

/* "tensor 'x'" or "metadata header": what a message names. */
static const char *seg_label(const seg *s, char *buf, size_t cap) {
    if (!s->name[0]) snprintf(buf, cap, "metadata header");
    else snprintf(buf, cap, "tensor '%s'", s->name);
    return buf;
}

static slm_status map_file(const char *path, void **map, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_error(SLM_ERR_IO, "pack: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return slm_error(SLM_ERR_IO, "pack: %s is not a regular file", path);
    }
    if (st.st_size < SLM_PACK_HEADER_BYTES) {
        close(fd);
        return slm_error(SLM_ERR_FORMAT, "pack: %s: file of %lld bytes is too small for a packed header", path,
                         (long long)st.st_size);
    }
    *size = (size_t)st.st_size;
    *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (*map == MAP_FAILED) {
        *map = NULL;
        return slm_error(SLM_ERR_IO, "pack: cannot mmap %s: %s", path, strerror(e));
    }
    return SLM_OK;
}

/* Reads and validates segment `i` whose record starts at *pos and whose bytes start at
 * original offset `off`; advances *pos past its coded bytes. */
static slm_status read_seg(const packed *p, uint32_t i, size_t *pos, uint64_t off, seg *g) {
    const uint8_t *b = p->map;
    char lab[300];
    if (p->size - *pos < RECORD_BYTES)
        return slm_error(SLM_ERR_FORMAT, "pack: truncated file: segment %u of %u record missing", i, p->n);
    const uint8_t *r = b + *pos;
    g->codec = r[0];
    size_t nl = r[1];
    g->dtype = (uint32_t)get_le(r + 2, 4);
    g->raw = get_le(r + 6, 8);
    g->coded = get_le(r + 14, 8);
    g->crc = (uint32_t)get_le(r + 22, 4);
    size_t at = *pos + RECORD_BYTES;
    if (g->codec >= SLM_PACK_CODEC_COUNT)
        return slm_error(SLM_ERR_FORMAT, "pack: segment %u of %u: unknown codec %d (corrupt record)", i, p->n,
                         g->codec);
    if (nl > p->size - at) return slm_error(SLM_ERR_FORMAT, "pack: truncated file: segment %u name missing", i);
    for (size_t k = 0; k < nl; k++) {
        unsigned char c = b[at + k];
        g->name[k] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
    }
    g->name[nl] = '\0';
    at += nl;
    seg_label(g, lab, sizeof lab);
    if (g->codec == SLM_PACK_RAW && g->raw != g->coded)
        return slm_error(SLM_ERR_FORMAT, "pack: %s: stored segment of %llu bytes holds %llu", lab, (ull)g->raw,
                         (ull)g->coded);
    if (g->raw > p->orig - off)
        return slm_error(SLM_ERR_FORMAT, "pack: %s: size %llu exceeds the %llu bytes left of the original", lab,
                         (ull)g->raw, (ull)(p->orig - off));
    if (g->coded > p->size - at)
        return slm_error(SLM_ERR_FORMAT, "pack: truncated file: %s needs %llu bytes, %zu remain", lab, (ull)g->coded,
                         p->size - at);
    g->data = b + at;
    g->offset = off;
    *pos = at + (size_t)g->coded;
    return SLM_OK;
}

/* Maps the container and walks every record, validating sizes before anything is decoded or
 * allocated (nothing is allocated per segment: the unpackers walk the records again). */
static slm_status packed_open(const char *path, packed *p) {
    memset(p, 0, sizeof *p);
    slm_status s = map_file(path, &p->map, &p->size);
    if (s) return s;
    const uint8_t *b = p->map;
    if (memcmp(b, MAGIC, sizeof MAGIC) != 0) {
        s = slm_error(SLM_ERR_FORMAT, "pack: %s is not a packed model file (bad magic)", path);
        goto fail;
    }
    uint32_t version = (uint32_t)get_le(b + 8, 4);
    if (version != SLM_PACK_VERSION) {
        s = slm_error(SLM_ERR_UNSUPPORTED, "pack: %s: unsupported version %u", path, version);
        goto fail;
    }
    p->n = (uint32_t)get_le(b + 12, 4);
    p->orig = get_le(b + 16, 8);
    memcpy(p->sha, b + 24, 32);
    if (p->n == 0 || p->n > (p->size - SLM_PACK_HEADER_BYTES) / RECORD_BYTES) {
        s = slm_error(SLM_ERR_FORMAT, "pack: %s: segment count %u does not fit the file (%zu bytes)", path, p->n,
                      p->size);
        goto fail;
    }
    if (p->orig > SIZE_MAX / 2) {
        s = slm_error(SLM_ERR_FORMAT, "pack: original size %llu too large", (ull)p->orig);
        goto fail;
    }
    size_t pos = SLM_PACK_HEADER_BYTES;
    uint64_t off = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        seg g;
        if ((s = read_seg(p, i, &pos, off, &g))) goto fail;
        off += g.raw;
        if (g.raw > p->max_raw) p->max_raw = g.raw;
    }
    if (off != p->orig) {
        s = slm_error(SLM_ERR_FORMAT, "pack: segments hold %llu bytes, the header says %llu (truncated or corrupt)",
                      (ull)off, (ull)p->orig);
        goto fail;
    }
    if (pos != p->size) {
        s = slm_error(SLM_ERR_FORMAT, "pack: %zu unexpected bytes after the last segment", p->size - pos);
        goto fail;
    }
    return SLM_OK;
fail:
    packed_close(p);
    return s;
}

/* Decodes a segment into dst and checks its CRC. */
static slm_status unpack_seg(const seg *g, uint8_t *dst) {
    char lab[300];
    slm_status s = decode(g->codec, g->data, (size_t)g->coded, dst, (size_t)g->raw);
    if (s) return slm_error_prefix(s, "pack: %s", seg_label(g, lab, sizeof lab));
    if (crc32_of(dst, (size_t)g->raw) != g->crc)
        return slm_error(SLM_ERR_FORMAT, "pack: %s: checksum mismatch", seg_label(g, lab, sizeof lab));
    return SLM_OK;
}

static slm_status check_sha(const packed *p, slm_sha256 *c) {
    uint8_t d[32];
    slm_sha256_final(c, d);
    if (memcmp(d, p->sha, 32) != 0) return slm_error(SLM_ERR_FORMAT, "pack: whole-file SHA-256 mismatch");
    return SLM_OK;
}

bool slm_pack_has_magic(const void *head, size_t n) { return n >= sizeof MAGIC && !memcmp(head, MAGIC, sizeof MAGIC); }

bool slm_pack_is_packed_file(const char *path) {
    uint8_t head[sizeof MAGIC];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return slm_pack_has_magic(head, n);
}

void slm_pack_release(void *buf, size_t size) {
    (void)size;
    free(buf);
}

slm_status slm_pack_unpack_memory(const char *path, void **out, size_t *size) {
    *out = NULL;
    *size = 0;
    packed p;
    slm_status s = packed_open(path, &p);
    if (s) return s;
    void *buf = NULL;
    size_t n = (size_t)p.orig;
    if (posix_memalign(&buf, 64, n ? n : 64) != 0) {
        packed_close(&p);
        return slm_error(SLM_ERR_NOMEM, "pack: out of memory unpacking %zu bytes", n);
    }
    slm_sha256 c;
    slm_sha256_init(&c);
    size_t pos = SLM_PACK_HEADER_BYTES;
    uint64_t off = 0;
    for (uint32_t i = 0; i < p.n && !s; i++) {
        seg g;
        if ((s = read_seg(&p, i, &pos, off, &g))) break;
        uint8_t *dst = (uint8_t *)buf + off;
        if (!(s = unpack_seg(&g, dst))) slm_sha256_update(&c, dst, (size_t)g.raw);
        off += g.raw;
    }
    if (!s) s = check_sha(&p, &c);
    packed_close(&p);
    if (s) {
        free(buf);
        return s;
    }
    *out = buf;
    *size = n;
    return SLM_OK;
}

slm_status slm_pack_open_gguf(const char *path, slm_gguf **out) {
    *out = NULL;
    if (!slm_pack_is_packed_file(path)) return slm_gguf_open(path, out);
    void *buf;
    size_t size;
    slm_status s = slm_pack_unpack_memory(path, &buf, &size);
    if (!s) s = slm_gguf_open_memory(buf, size, slm_pack_release, out);
    return s ? slm_error_prefix(s, "%s", path) : SLM_OK;
}

slm_status slm_pack_unpack_file(const char *in_path, const char *out_path) {
    packed p;
    slm_status s = packed_open(in_path, &p);
    if (s) return s;
    uint8_t *buf = malloc(p.max_raw ? (size_t)p.max_raw : 1);
    if (!buf) {
        packed_close(&p);
        return slm_error(SLM_ERR_NOMEM, "pack: out of memory (%llu bytes)", (ull)p.max_raw);
    }
    slm_afile af;
    if ((s = slm_afile_open(&af, out_path))) goto done;
    slm_sha256 c;
    slm_sha256_init(&c);
    size_t pos = SLM_PACK_HEADER_BYTES;
    uint64_t off = 0;
    for (uint32_t i = 0; i < p.n && !s; i++) {
        seg g;
        if ((s = read_seg(&p, i, &pos, off, &g)) || (s = unpack_seg(&g, buf))) break;
        slm_sha256_update(&c, buf, (size_t)g.raw);
        slm_afile_write(&af, buf, (size_t)g.raw);
        off += g.raw;
    }
    if (!s) s = check_sha(&p, &c);
    if (s) slm_afile_abort(&af);
    else s = slm_afile_commit(&af);
done:
    free(buf);
    packed_close(&p);
    return s;
}

/* ---- writing ------------------------------------------------------------------------- */

typedef struct {
    size_t start, len;
    const slm_gguf_tensor *t; /* NULL: the header segment */
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Cuts the file at every non-empty tensor's first byte. */
static slm_status plan_spans(const slm_gguf *g, span **out, size_t *n_out) {
    size_t n = 1;
    span *v = malloc(((size_t)g->n_tensors + 1) * sizeof *v);
    if (!v) return slm_error(SLM_ERR_NOMEM, "pack: out of memory");
    for (size_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        if (t->nbytes == 0) continue;
        v[n++] = (span){(size_t)((const uint8_t *)t->data - g->buf), 0, t};
    }
    qsort(v + 1, n - 1, sizeof *v, cmp_span);
    v[0] = (span){0, 0, NULL};
    for (size_t i = 0; i < n; i++) v[i].len = (i + 1 < n ? v[i + 1].start : g->size) - v[i].start;
    *out = v;
    *n_out = n;
    return SLM_OK;
}

typedef struct {
    ZSTD_CCtx *cc;
    uint8_t *enc[3]; /* candidate outputs per codec */
    uint8_t *check;  /* decoded again for verification */
    size_t cap;
} work;

static slm_status grow(work *w, size_t raw) {
    size_t need = slm_ent_bound(raw);
    size_t zb = ZSTD_compressBound(raw);
    if (zb > need) need = zb;
    if (need <= w->cap) return SLM_OK;
    for (int i = 0; i < 3; i++) {
        free(w->enc[i]);
        w->enc[i] = malloc(need);
    }
    free(w->check);
    w->check = malloc(need);
    w->cap = need;
    if (!w->enc[0] || !w->enc[1] || !w->enc[2] || !w->check) {
        w->cap = 0;
        return slm_error(SLM_ERR_NOMEM, "pack: out of memory (%zu bytes)", need);
    }
    return SLM_OK;
}

/* Codes one span; *codec and *len describe the chosen output in w->enc[*codec]. */
static slm_status code_span(work *w, const slm_pack_opts *o, const uint8_t *src, const span *sp, int *codec,
                            size_t *len) {
    size_t lens[3] = {sp->len, (size_t)-1, (size_t)-1};
    slm_status s;
    if (sp->len) memcpy(w->enc[SLM_PACK_RAW], src, sp->len);
    if (o->codec == SLM_PACK_ZSTD || o->codec == SLM_PACK_AUTO) {
        if ((s = zstd_encode(w->cc, o->level ? o->level : 3, src, sp->len, w->enc[SLM_PACK_ZSTD], w->cap,
                             &lens[SLM_PACK_ZSTD])))
            return s;
    }
    if (o->codec == SLM_PACK_OWN || o->codec == SLM_PACK_AUTO) {
        slm_ent_layout l = {0};
        if (sp->t) l = slm_ent_layout_for(sp->t->type, sp->t->ne[0]);
        if ((s = slm_ent_encode(&l, src, sp->len, w->enc[SLM_PACK_OWN], w->cap, &lens[SLM_PACK_OWN]))) return s;
    }
    int c = o->codec;
    if (c == SLM_PACK_AUTO) {
        c = SLM_PACK_RAW;
        for (int k = 1; k < 3; k++)
            if (lens[k] < lens[c]) c = k;
    }
    *codec = c;
    *len = lens[c];
    return SLM_OK;
}

slm_status slm_pack_write(const slm_gguf *g, const char *out_path, const slm_pack_opts *o, slm_pack_seg_info **info,
                          size_t *n_info) {
    if (info) *info = NULL;
    if (n_info) *n_info = 0;
    if (o->codec != SLM_PACK_AUTO && (o->codec < 0 || o->codec >= SLM_PACK_CODEC_COUNT))
        return slm_error(SLM_ERR_ARG, "pack: unknown codec %d", o->codec);
    span *sp = NULL;
    size_t n = 0;
    slm_status s = plan_spans(g, &sp, &n);
    if (s) return s;
    if (n > UINT32_MAX) {
        free(sp);
        return slm_error(SLM_ERR_ARG, "pack: too many tensors");
    }
    work w = {0};
    slm_afile af = {0};
    slm_pack_seg_info *inf = calloc(n, sizeof *inf);
    w.cc = ZSTD_createCCtx();
    if (!inf || !w.cc) {
        s = slm_error(SLM_ERR_NOMEM, "pack: out of memory");
        goto done;
    }
    if ((s = slm_afile_open(&af, out_path))) goto done;
    uint8_t hdr[SLM_PACK_HEADER_BYTES] = {0};
    memcpy(hdr, MAGIC, sizeof MAGIC);
    put_le(hdr + 8, SLM_PACK_VERSION, 4);
    put_le(hdr + 12, n, 4);
    put_le(hdr + 16, g->size, 8);
    slm_sha256 c;
    slm_sha256_init(&c);
    slm_sha256_update(&c, g->buf, g->size);
    slm_sha256_final(&c, hdr + 24);
    slm_afile_write(&af, hdr, sizeof hdr);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *src = g->buf + sp[i].start;
        slm_pack_seg_info *f = &inf[i];
        if (sp[i].t) slm_gguf_str_copy(sp[i].t->name, f->name, sizeof f->name);
        f->dtype = sp[i].t ? sp[i].t->type : SLM_PACK_DTYPE_META;
        char lab[200];
        snprintf(lab, sizeof lab, sp[i].t ? "tensor '%s'" : "metadata header", f->name);
        int codec;
        size_t len;
        if ((s = grow(&w, sp[i].len)) || (s = code_span(&w, o, src, &sp[i], &codec, &len))) {
            s = slm_error_prefix(s, "pack: %s", lab);
            goto done;
        }
        /* Decode what will be written and compare before writing it. */
        if ((s = decode(codec, w.enc[codec], len, w.check, sp[i].len))) {
            s = slm_error_prefix(s, "pack: %s: verification", lab);
            goto done;
        }
        if (sp[i].len && memcmp(w.check, src, sp[i].len) != 0) {
            s = slm_error(SLM_ERR_FORMAT, "pack: %s: %s round trip differs", lab, slm_pack_codec_name(codec));
            goto done;
        }
        uint8_t rec[RECORD_BYTES];
        uint8_t nl = 0;
        if (sp[i].t) nl = sp[i].t->name.len > 255 ? 255 : (uint8_t)sp[i].t->name.len;
        rec[0] = (uint8_t)codec;
        rec[1] = nl;
        put_le(rec + 2, f->dtype, 4);
        put_le(rec + 6, sp[i].len, 8);
        put_le(rec + 14, len, 8);
        put_le(rec + 22, crc32_of(src, sp[i].len), 4);
        slm_afile_write(&af, rec, sizeof rec);
        if (nl) slm_afile_write(&af, sp[i].t->name.ptr, nl);
        slm_afile_write(&af, w.enc[codec], len);
        f->codec = codec;
        f->raw = sp[i].len;
        f->coded = RECORD_BYTES + nl + len;
        if (o->progress) o->progress(o->ud, i + 1, n);
    }
    if (!s) s = slm_afile_commit(&af);
done:
    slm_afile_abort(&af);
    ZSTD_freeCCtx(w.cc);
    for (int k = 0; k < 3; k++) free(w.enc[k]);
    free(w.check);
    free(sp);
    if (s || !info) {
        free(inf);
        return s;
    }
    *info = inf;
    if (n_info) *n_info = n;
    return SLM_OK;
}
