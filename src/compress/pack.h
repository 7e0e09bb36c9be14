/* pack.h - packed model files: a GGUF file's exact bytes, entropy-coded per tensor.
 *
 * Layout (little-endian):
 *   header (64 bytes): magic "SLMPACK\x1a" | u32 version (1) | u32 n_segments |
 *                      u64 original size | 32 bytes SHA-256 of the original file | 8 zero bytes
 *   n_segments x { u8 codec | u8 name length | u32 dtype | u64 raw size | u64 coded size |
 *                  u32 CRC-32 of the raw bytes | name | coded bytes }
 * The segments cut the original file at each tensor's first byte, in file order: the first
 * holds the header and metadata (name empty, dtype SLM_PACK_DTYPE_META), each further one a
 * tensor's bytes and the padding after it. Concatenated they are the original file.
 * Codecs: raw (stored), zstd, own (compress/entropy.h). A packed file is untrusted input:
 * every size is checked against the original size and the bytes present before use, every
 * segment's CRC and the whole file's SHA-256 are verified; errors name the tensor. */
#ifndef SLM_PACK_H
#define SLM_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gguf.h"
#include "core/status.h"

#define SLM_PACK_VERSION 1
#define SLM_PACK_HEADER_BYTES 64
#define SLM_PACK_DTYPE_META 0xffffffffu /* dtype field of the header/metadata segment */

typedef enum {
    SLM_PACK_RAW = 0,
    SLM_PACK_ZSTD = 1,
    SLM_PACK_OWN = 2,
    SLM_PACK_CODEC_COUNT,
    SLM_PACK_AUTO = 255 /* packer only: the smallest of the three per segment */
} slm_pack_codec;

const char *slm_pack_codec_name(int codec);

typedef struct {
    int codec;      /* slm_pack_codec */
    int level;      /* zstd level (0: 3) */
    /* called after each segment (may be NULL) */
    void (*progress)(void *ud, size_t done, size_t total);
    void *ud;
} slm_pack_opts;

/* What happened to one segment. */
typedef struct {
    char name[128];  /* tensor name ("" for the header segment), truncated */
    uint32_t dtype;  /* SLM_PACK_DTYPE_META for the header segment */
    int codec;
    uint64_t raw, coded; /* coded: bytes in the packed file including the segment record */
} slm_pack_seg_info;

/* Pack the file that g was opened from (g->buf, g->size) into out_path, atomically. Every
 * segment is decoded again and compared before it is written. *info (malloc'd, *n_info
 * entries) describes the segments; info may be NULL. */
slm_status slm_pack_write(const slm_gguf *g, const char *out_path, const slm_pack_opts *o, slm_pack_seg_info **info,
                          size_t *n_info);

/* True if the first bytes of a file (n of them) are a packed file's magic. */
bool slm_pack_has_magic(const void *head, size_t n);
/* True if the file at path starts with the packed magic (false if unreadable). */
bool slm_pack_is_packed_file(const char *path);

/* Unpack into a new 64-byte-aligned buffer (release with slm_pack_release), verified. */
slm_status slm_pack_unpack_memory(const char *path, void **buf, size_t *size);
void slm_pack_release(void *buf, size_t size);

/* Open a model file that is either a GGUF (mapped) or a packed file (unpacked into memory,
 * every CRC and the SHA-256 verified, then parsed; g->map is NULL, so page dropping is a
 * no-op). Errors of a packed file are prefixed with its path. On error *out is NULL. */
slm_status slm_pack_open_gguf(const char *path, slm_gguf **out);

/* Unpack into a file (atomically; nothing is left behind on any error), verified. */
slm_status slm_pack_unpack_file(const char *in_path, const char *out_path);

#endif
