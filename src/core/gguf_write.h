/* gguf_write.h - build a GGUF v3 file: metadata key/values and tensors.
 *
 * A writer collects key/values (copied from an opened file, then overridden or added) and
 * tensors (name, shape, dtype, data), then writes them atomically: the file is written to a
 * temporary name in the target's directory, read back with slm_gguf_open and checked (key
 * count and keys, every tensor's name, dtype, shape and a checksum of its bytes), and only
 * then fsynced and renamed into place. On any error nothing is left under the target name
 * and the temporary file is removed.
 *
 * Memory: keys and tensor names are copied; string values set with slm_gguf_writer_set_str
 * are copied. Values passed as slm_gguf_value (including everything copied from an input
 * slm_gguf) and tensor data are borrowed: they must stay alive until the write returns. */
#ifndef SLM_GGUF_WRITE_H
#define SLM_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "status.h"

typedef struct slm_gguf_writer slm_gguf_writer;

slm_status slm_gguf_writer_create(slm_gguf_writer **out);
void slm_gguf_writer_free(slm_gguf_writer *w); /* NULL is a no-op */

/* Add or replace a key (a replaced key keeps its position). The value is borrowed. Arrays use
 * arr.raw for numeric and bool elements (packed little-endian, as the reader gives them) and
 * arr.items for STRING and ARRAY elements. */
slm_status slm_gguf_writer_set(slm_gguf_writer *w, const char *key, const slm_gguf_value *v);
/* Copy every key/value of g in order (values borrowed from g). */
slm_status slm_gguf_writer_copy_kvs(slm_gguf_writer *w, const slm_gguf *g);
/* Typed setters; the string is copied. */
slm_status slm_gguf_writer_set_str(slm_gguf_writer *w, const char *key, const char *s);
slm_status slm_gguf_writer_set_u32(slm_gguf_writer *w, const char *key, uint32_t v);
slm_status slm_gguf_writer_set_i32(slm_gguf_writer *w, const char *key, int32_t v);
slm_status slm_gguf_writer_set_u64(slm_gguf_writer *w, const char *key, uint64_t v);
slm_status slm_gguf_writer_set_f32(slm_gguf_writer *w, const char *key, float v);
slm_status slm_gguf_writer_set_bool(slm_gguf_writer *w, const char *key, bool v);
/* Remove a key if present. */
void slm_gguf_writer_remove(slm_gguf_writer *w, const char *key);
size_t slm_gguf_writer_n_kv(const slm_gguf_writer *w);

/* Add a tensor. ne[0] is the row length (a multiple of the dtype's block size); nbytes must
 * equal the size the shape and dtype imply. The data is borrowed. */
slm_status slm_gguf_writer_add_tensor(slm_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                                      uint32_t dtype, const void *data, size_t nbytes);

/* Write everything to path (atomically, verified before the rename). The alignment is
 * general.alignment (a UINT32 power of two) when set, else 32. */
slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path);

/* Test hook for the failure path: when non-zero, the write fails with ENOSPC once this many
 * bytes have been written, exactly as a full disk would make it fail (0 turns it off). */
void slm_gguf_writer_fail_after(slm_gguf_writer *w, uint64_t bytes);

#endif
