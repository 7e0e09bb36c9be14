/* openai_resp.c - OpenAI response bodies: completions, chat completions, stream chunks,
 * models, errors. Text from the model is made valid UTF-8 before it goes into JSON (invalid
 * bytes become U+FFFD), so any JSON parser accepts it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "openai.h"

/* Valid UTF-8 copy of s[0, n): malformed bytes and NUL become U+FFFD. */
static char *utf8_clean(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned c = p[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        bool ok = c != 0 && k >= 0 && !(k == 1 && c < 0xc2) && !(k == 3 && c > 0xf4) && n - i > (size_t)k;
        for (int j = 1; ok && j <= k; j++) ok = (p[i + (size_t)j] & 0xc0) == 0x80;
        if (ok && k == 2) { /* no overlong forms or surrogates */
            unsigned cp = ((c & 0x0fu) << 12) | ((p[i + 1] & 0x3fu) << 6);
            ok = cp >= 0x800 && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (ok && k == 3) {
            unsigned cp = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok) {
            memcpy(out + o, p + i, (size_t)k + 1);
            o += (size_t)k + 1;
            i += (size_t)k + 1;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

static cJSON *add_text(cJSON *o, const char *key, const char *s, size_t n) {
    char *t = utf8_clean(s, n);
    cJSON *r = t ? cJSON_AddStringToObject(o, key, t) : NULL;
    free(t);
    return r;
}

static double finite_lp(float x) { return isfinite(x) ? (double)x : -9999.0; }

const char *srv_oai_finish(slm_finish f) {
    switch (f) {
    case SLM_FINISH_STOP: return "stop";
    case SLM_FINISH_LENGTH: return "length";
    case SLM_FINISH_CANCELLED: return "cancelled";
    default: return "error";
    }
}

static char *print_free(cJSON *root) {
    char *s = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

char *srv_oai_error_json(const srv_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    if (!err) return print_free(root);
    add_text(err, "message", e->message, strlen(e->message));
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    return print_free(root);
}

char *srv_oai_models_json(const srv_oai_ctx *c, long created) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data"), *m = cJSON_CreateObject();
    if (!data || !m) {
        cJSON_Delete(m);
        return print_free(root);
    }
    cJSON_AddItemToArray(data, m);
    add_text(m, "id", c->model_id, strlen(c->model_id));
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)created);
    cJSON_AddStringToObject(m, "owned_by", "slimlm");
    cJSON_AddNumberToObject(m, "max_model_len", c->max_ctx);
    return print_free(root);
}

static cJSON *head(const srv_oai_req *r, const srv_oai_ctx *c, const char *id, long created, bool chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    const char *chat = chunk ? "chat.completion.chunk" : "chat.completion";
    cJSON_AddStringToObject(root, "object", r->kind == SRV_CHAT ? chat : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)created);
    add_text(root, "model", c->model_id, strlen(c->model_id));
    return root;
}

/* The text of one token for the logprobs lists (special tokens rendered). */
static int piece(const slm_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    int n = slm_tokenizer_piece(tok, id, true, buf, cap);
    return n < 0 ? 0 : (size_t)n > cap ? (int)cap : n;
}

static void add_bytes(cJSON *o, const char *s, int n) {
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (int i = 0; b && i < n; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)s[i]));
}

/* Completions: {tokens, token_logprobs, top_logprobs, text_offset}. */
static cJSON *logprobs_completion(const slm_tokenizer *tok, const srv_tokrec *recs, int n, size_t offset) {
    cJSON *lp = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens"), *vals = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(lp, "top_logprobs"), *offs = cJSON_AddArrayToObject(lp, "text_offset");
    if (!toks || !vals || !tops || !offs) return lp;
    char buf[256];
    for (int i = 0; i < n; i++) {
        int k = piece(tok, recs[i].token, buf, sizeof buf);
        char *t = utf8_clean(buf, (size_t)k);
        cJSON_AddItemToArray(toks, cJSON_CreateString(t ? t : ""));
        free(t);
        cJSON_AddItemToArray(vals, cJSON_CreateNumber(finite_lp(recs[i].logprob)));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        offset += (size_t)k;
        cJSON *top = cJSON_CreateObject();
        for (int j = 0; top && j < recs[i].n_top; j++) {
            int m = piece(tok, recs[i].top_ids[j], buf, sizeof buf);
            char *s = utf8_clean(buf, (size_t)m);
            if (s && !cJSON_GetObjectItemCaseSensitive(top, s))
                cJSON_AddNumberToObject(top, s, finite_lp(recs[i].top_lp[j]));
            free(s);
        }
        cJSON_AddItemToArray(tops, top);
    }
    return lp;
}

/* Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}. */
static cJSON *logprobs_chat(const slm_tokenizer *tok, const srv_tokrec *recs, int n, int n_top) {
    cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
    char buf[256];
    for (int i = 0; content && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e) break;
        cJSON_AddItemToArray(content, e);
        int k = piece(tok, recs[i].token, buf, sizeof buf);
        add_text(e, "token", buf, (size_t)k);
        cJSON_AddNumberToObject(e, "logprob", finite_lp(recs[i].logprob));
        add_bytes(e, buf, k);
        cJSON *tops = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int j = 0; tops && j < recs[i].n_top && j < n_top; j++) {
            cJSON *t = cJSON_CreateObject();
            if (!t) break;
            cJSON_AddItemToArray(tops, t);
            int m = piece(tok, recs[i].top_ids[j], buf, sizeof buf);
            add_text(t, "token", buf, (size_t)m);
            cJSON_AddNumberToObject(t, "logprob", finite_lp(recs[i].top_lp[j]));
            add_bytes(t, buf, m);
        }
    }
    return lp;
}

static void add_usage(cJSON *root, int n_prompt, int n_completion) {
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n_completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)n_prompt + n_completion);
}

char *srv_oai_response_json(const srv_oai_ctx *c, const srv_oai_req *r, const srv_stream *st, const char *id,
                            long created) {
    cJSON *root = head(r, c, id, created, false);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    int n_completion = 0;
    for (int i = 0; choices && i < st->n; i++) {
        const srv_sample *sm = &st->samples[i];
        cJSON *ch = cJSON_CreateObject();
        if (!ch) break;
        cJSON_AddItemToArray(choices, ch);
        cJSON_AddNumberToObject(ch, "index", i);
        if (r->kind == SRV_CHAT) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            add_text(msg, "content", sm->text ? sm->text : "", sm->len);
        } else {
            add_text(ch, "text", sm->text ? sm->text : "", sm->len);
        }
        if (r->rp.logprobs < 0) cJSON_AddNullToObject(ch, "logprobs");
        else if (r->kind == SRV_CHAT)
            cJSON_AddItemToObject(ch, "logprobs", logprobs_chat(c->tok, sm->recs, sm->n_recs, r->top_logprobs));
        else cJSON_AddItemToObject(ch, "logprobs", logprobs_completion(c->tok, sm->recs, sm->n_recs, 0));
        cJSON_AddStringToObject(ch, "finish_reason", srv_oai_finish(sm->finish));
        n_completion += sm->n_tokens;
    }
    add_usage(root, r->n_prompt, n_completion);
    return print_free(root);
}

char *srv_oai_chunk_json(const srv_oai_ctx *c, const srv_oai_req *r, const char *id, long created,
                         const srv_oai_delta *d) {
    cJSON *root = head(r, c, id, created, true);
    cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *ch = cJSON_CreateObject();
    if (!choices || !ch) {
        cJSON_Delete(ch);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", d->index);
    if (r->kind == SRV_CHAT) {
        cJSON *delta = cJSON_AddObjectToObject(ch, "delta");
        if (d->role) cJSON_AddStringToObject(delta, "role", "assistant");
        if (d->role || d->len || !d->finish) add_text(delta, "content", d->text ? d->text : "", d->len);
    } else {
        add_text(ch, "text", d->text ? d->text : "", d->len);
    }
    if (r->rp.logprobs < 0 || d->n_recs == 0) cJSON_AddNullToObject(ch, "logprobs");
    else if (r->kind == SRV_CHAT)
        cJSON_AddItemToObject(ch, "logprobs", logprobs_chat(c->tok, d->recs, d->n_recs, r->top_logprobs));
    else cJSON_AddItemToObject(ch, "logprobs", logprobs_completion(c->tok, d->recs, d->n_recs, d->text_offset));
    if (d->finish) cJSON_AddStringToObject(ch, "finish_reason", d->finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    return print_free(root);
}

char *srv_oai_usage_chunk_json(const srv_oai_ctx *c, const srv_oai_req *r, const char *id, long created, int n_prompt,
                               int n_completion) {
    cJSON *root = head(r, c, id, created, true);
    cJSON_AddArrayToObject(root, "choices");
    add_usage(root, n_prompt, n_completion);
    return print_free(root);
}
