/* openai.h - the OpenAI request and response shapes: /v1/completions, /v1/chat/completions,
 * /v1/models, and their error objects.
 *
 * Parsing checks every field we use (type and range) and refuses fields that would change
 * the result in ways we do not implement (echo, suffix, best_of, logit_bias, tools, ...);
 * other unknown fields are ignored. The prompt is tokenized here (chat messages through the
 * model's chat template), so the length check against the context happens before submit. */
#ifndef SRV_OPENAI_H
#define SRV_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/chat.h"
#include "model/tokenizer.h"
#include "runtime/sched.h"
#include "stop.h"
#include "stream.h"

typedef struct {
    const slm_tokenizer *tok;
    const slm_chat_template *tmpl; /* NULL: the model has no template we can render */
    const char *model_id;          /* what /v1/models lists (the file's basename) */
    const char *model_alias;       /* general.name, also accepted in "model"; NULL if none */
    int max_ctx;                   /* prompt + generated tokens per sequence */
} srv_oai_ctx;

typedef enum { SRV_COMPLETIONS = 0, SRV_CHAT = 1 } srv_kind;

typedef struct {
    int status;         /* HTTP status */
    const char *type;   /* "invalid_request_error", "not_found_error", ... */
    const char *code;   /* NULL or e.g. "context_length_exceeded" */
    const char *param;  /* NULL or the offending field */
    char message[320];
} srv_error;

void srv_error_set(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                   ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

typedef struct {
    srv_kind kind;
    int32_t *prompt;      /* [n_prompt] malloc'd */
    int n_prompt;
    slm_req_params rp;    /* rp.prompt points at prompt */
    int top_logprobs;     /* chat: alternatives per token (with logprobs) */
    bool stream, include_usage;
    srv_stops stops;
} srv_oai_req;

/* Parse and validate a request body; false with *e filled (4xx). */
bool srv_oai_parse(const srv_oai_ctx *c, srv_kind kind, const char *body, size_t len, srv_oai_req *r, srv_error *e);
void srv_oai_req_free(srv_oai_req *r);

/* "stop" / "length" / "cancelled" / "error". */
const char *srv_oai_finish(slm_finish f);

/* Every result below is a malloc'd NUL-terminated JSON text (NULL when out of memory). */
char *srv_oai_error_json(const srv_error *e);
char *srv_oai_models_json(const srv_oai_ctx *c, long created);
/* The whole response; st locked, every sample done. */
char *srv_oai_response_json(const srv_oai_ctx *c, const srv_oai_req *r, const srv_stream *st, const char *id,
                            long created);

/* One streamed choice delta: text[0, len) (may be empty), the token records of that piece
 * (text_offset: where the piece starts in the sample's text), finish (NULL while running),
 * role: the first chat chunk, which carries the assistant role. */
typedef struct {
    int index;
    const char *text;
    size_t len;
    const srv_tokrec *recs;
    int n_recs;
    size_t text_offset;
    const char *finish;
    bool role;
} srv_oai_delta;
char *srv_oai_chunk_json(const srv_oai_ctx *c, const srv_oai_req *r, const char *id, long created,
                         const srv_oai_delta *d);
/* The final usage-only chunk (stream_options.include_usage). */
char *srv_oai_usage_chunk_json(const srv_oai_ctx *c, const srv_oai_req *r, const char *id, long created, int n_prompt,
                               int n_completion);

#endif
