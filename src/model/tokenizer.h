/* tokenizer.h - text <-> token ids from the vocabulary stored in a GGUF file.
 *
 * Two families:
 *  - "gpt2": byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen2) with the model's pre-tokenizer
 *    (tokenizer.ggml.pre selects the split regex) and merges ranked by tokenizer.ggml.merges;
 *  - "llama": SentencePiece-style BPE (Llama 2, TinyLlama) with scores, the U+2581 space
 *    marker and <0xXX> byte fallback.
 * Special (control) tokens written literally in the text are recognized when parse_special. */
#ifndef SLM_TOKENIZER_H
#define SLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/gguf.h"
#include "../core/status.h"

typedef struct slm_tokenizer slm_tokenizer;

/* Build from the tokenizer.* metadata of g. The tokenizer copies what it needs; g may be
 * freed afterwards. Unknown tokenizer.ggml.model or pre-tokenizer: SLM_ERR_UNSUPPORTED. */
slm_status slm_tokenizer_load(const slm_gguf *g, slm_tokenizer **out);
void slm_tokenizer_free(slm_tokenizer *t); /* NULL is a no-op */

/* Encode len bytes of text. add_special: prepend BOS (and append EOS) as the model's
 * tokenizer.ggml.add_bos_token / add_eos_token say. parse_special: text like "<|im_start|>"
 * becomes the special token instead of being split into pieces.
 * *ids is malloc'd by the callee (free() it); *n_ids its length. Invalid UTF-8 is encoded as
 * bytes (never an error). */
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, bool add_special,
                                bool parse_special, int32_t **ids, size_t *n_ids);

/* The bytes token id stands for (byte-level/space-marker decoding applied). Control tokens
 * (BOS, <|im_end|>, ...) give their text only when render_special, else nothing. Returns the
 * number of bytes the piece has (may exceed cap: then only cap bytes are written), or -1 for
 * an id out of range. */
int slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, bool render_special, char *buf, size_t cap);

int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t);
int32_t slm_tokenizer_bos(const slm_tokenizer *t); /* -1 if none */
int32_t slm_tokenizer_eos(const slm_tokenizer *t); /* -1 if none */
bool slm_tokenizer_add_bos(const slm_tokenizer *t);
/* End of generation: EOS, EOT, <|im_end|>, <|eot_id|>, <|endoftext|> and the like. */
bool slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id);
/* Exact lookup of a vocabulary entry's text (as stored in the vocab), or -1. */
int32_t slm_tokenizer_find(const slm_tokenizer *t, const char *text);

/* Decode a whole sequence into a malloc'd, NUL-terminated string (*out_len excludes the NUL).
 * For "llama" models with add_space_prefix, the leading space the encoder added is removed
 * from the first decoded text, so decode(encode(x)) == x. An id out of range: SLM_ERR_ARG. */
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n_ids, bool render_special, char **out,
                                size_t *out_len);

/* The pre-tokenizer split alone (tests and tools): pre is a tokenizer.ggml.pre name; *ends
 * (malloc'd, *n entries) gets the byte offset where each piece ends. */
slm_status slm_pretokenize(const char *pre, const char *text, size_t len, size_t **ends, size_t *n);

/* Streaming detokenizer: pieces can end inside a UTF-8 character (byte tokens); push()
 * writes only complete characters and keeps the rest for the next push. */
typedef struct {
    char pending[8];
    int n_pending;
} slm_detok;

/* Appends the decoded bytes for id to out (at most cap bytes); returns the count written. */
size_t slm_detok_push(slm_detok *d, const slm_tokenizer *t, int32_t id, bool render_special, char *out, size_t cap);
/* Writes whatever is pending (an incomplete character at the end of the stream) and resets. */
size_t slm_detok_flush(slm_detok *d, char *out, size_t cap);

#endif
