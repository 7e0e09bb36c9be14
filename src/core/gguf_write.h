/* gguf_write.h - build a GGUF v3 file: metadata key/values and tensors.
 *
 * A writer collects key/values (copied from an opened file, then overridden or added) and
 * tensors (name, shape, dtype, data), then writes them atomically: the file is written to a
 * temporary name in the target's directory, read back with slm_gguf_open and checked (key
 * count and keys, every tensor's name, dtype, shape and a checksum of its bytes), and only
 * then fsynced and renamed into place. On any error nothing is left under the target name
 * and the temporary file is removed.
 *
 * Tensors are either borrowed buffers (slm_gguf_writer_add_tensor) or produced during the
 * write (slm_gguf_writer_add_tensor_src): the writer asks for each one's bytes when its turn
 * comes and releases them right after, so a file of any size can be written with one tensor
 * in memory at a time. The read-back check reads the output in chunks and drops each chunk's
 * pages after checksumming it.
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

/* A tensor produced during the write. produce is called once, in tensor order, while the
 * file is written: it sets *data to the tensor's nbytes bytes (or returns an error, which
 * aborts the write); they must stay valid until release (may be NULL) is called, right after
 * they are written. index is passed back as given. */
typedef struct {
    slm_status (*produce)(void *user, size_t index, const void **data);
    void (*release)(void *user, size_t index, const void *data);
    void *user;
    size_t index;
} slm_gguf_tensor_source;

/* Add a tensor whose bytes src produces at write time (shape rules as add_tensor; src is
 * copied, src->user borrowed). */
slm_status slm_gguf_writer_add_tensor_src(slm_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                                          uint32_t dtype, size_t nbytes, const slm_gguf_tensor_source *src);

/* Write everything to path (atomically, verified before the rename). The alignment is
 * general.alignment (a UINT32 power of two) when set, else 32. */
slm_status slm_gguf_writer_write(slm_gguf_writer *w, const char *path);

/* Test hook for the failure path: when non-zero, the write fails with ENOSPC once this many
 * bytes have been written, exactly as a full disk would make it fail (0 turns it off). */
void slm_gguf_writer_fail_after(slm_gguf_writer *w, uint64_t bytes);

#endif
