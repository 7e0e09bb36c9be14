/* openai_req.c - parsing and validating OpenAI completion and chat requests. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "openai.h"

#define INVALID "invalid_request_error"

void srv_error_set(srv_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                   ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static bool bad_field(srv_error *e, const char *key, const char *what) {
    srv_error_set(e, 400, INVALID, "invalid_value", key, "'%s' must be %s", key, what);
    return false;
}

/* A field that is absent or null counts as not given. */
static const cJSON *field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static bool get_number(const cJSON *o, const char *key, double lo, double hi, bool lo_open, double *out, srv_error *e) {
    const cJSON *v = field(o, key);
    if (!v) return true;
    char what[96];
    snprintf(what, sizeof what, "a number in %c%g, %g]", lo_open ? '(' : '[', lo, hi);
    if (!cJSON_IsNumber(v)) return bad_field(e, key, what);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) return bad_field(e, key, what);
    *out = x;
    return true;
}

static bool get_int(const cJSON *o, const char *key, long lo, long hi, long *out, srv_error *e) {
    const cJSON *v = field(o, key);
    if (!v) return true;
    char what[96];
    snprintf(what, sizeof what, "an integer in [%ld, %ld]", lo, hi);
    if (!cJSON_IsNumber(v)) return bad_field(e, key, what);
    double x = v->valuedouble;
    if (!isfinite(x) || x != floor(x) || x < (double)lo || x > (double)hi) return bad_field(e, key, what);
    *out = (long)x;
    return true;
}

static bool get_bool(const cJSON *o, const char *key, bool *out, srv_error *e) {
    const cJSON *v = field(o, key);
    if (!v) return true;
    if (!cJSON_IsBool(v)) return bad_field(e, key, "true or false");
    *out = cJSON_IsTrue(v);
    return true;
}

static bool unsupported(srv_error *e, const char *key, const char *why) {
    srv_error_set(e, 400, INVALID, "unsupported_parameter", key, "'%s' is not supported: %s", key, why);
    return false;
}

static bool check_model(const srv_oai_ctx *c, const cJSON *root, srv_error *e) {
    const cJSON *v = field(root, "model");
    if (!v) return true;
    if (!cJSON_IsString(v)) return bad_field(e, "model", "a string");
    if (!strcmp(v->valuestring, c->model_id) || (c->model_alias && !strcmp(v->valuestring, c->model_alias)) ||
        !strcmp(v->valuestring, ""))
        return true;
    srv_error_set(e, 404, "not_found_error", "model_not_found", "model",
                  "the model '%.120s' does not exist (this server has '%.120s')", v->valuestring, c->model_id);
    return false;
}

/* Fields we do not implement are refused when they are set to something that matters. */
static bool check_unsupported(const cJSON *root, srv_error *e) {
    const cJSON *v;
    if ((v = field(root, "echo")) && !cJSON_IsFalse(v)) return unsupported(e, "echo", "the prompt is not echoed");
    if ((v = field(root, "suffix")) && !(cJSON_IsString(v) && !v->valuestring[0]))
        return unsupported(e, "suffix", "no insertion mode");
    if ((v = field(root, "best_of")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        return unsupported(e, "best_of", "only 1");
    if ((v = field(root, "logit_bias")) && !(cJSON_IsObject(v) && !v->child))
        return unsupported(e, "logit_bias", "no logit biases");
    if ((v = field(root, "tools")) && !(cJSON_IsArray(v) && !v->child)) return unsupported(e, "tools", "no tool calls");
    if ((v = field(root, "functions")) && !(cJSON_IsArray(v) && !v->child))
        return unsupported(e, "functions", "no function calls");
    if ((v = field(root, "response_format"))) {
        const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return unsupported(e, "response_format", "only {\"type\": \"text\"}");
    }
    double pen = 0;
    if (!get_number(root, "presence_penalty", -2, 2, false, &pen, e)) return false;
    if (pen != 0) return unsupported(e, "presence_penalty", "use repetition_penalty");
    if (!get_number(root, "frequency_penalty", -2, 2, false, &pen, e)) return false;
    if (pen != 0) return unsupported(e, "frequency_penalty", "use repetition_penalty");
    return true;
}

static bool is_valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        int k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (k < 0 || (k == 1 && c < 0xc2) || (k == 3 && c > 0xf4) || n - i <= (size_t)k) return false;
        for (int j = 1; j <= k; j++)
            if ((p[i + (size_t)j] & 0xc0) != 0x80) return false;
        i += (size_t)k + 1;
    }
    return true;
}

static bool parse_stop(const cJSON *root, srv_stops *st, srv_error *e) {
    const cJSON *v = field(root, "stop");
    memset(st, 0, sizeof *st);
    if (!v) return true;
    const char *what = "a string or an array of at most 4 non-empty strings of at most 256 bytes";
    if (cJSON_IsString(v)) {
        if (!srv_stops_add(st, v->valuestring, strlen(v->valuestring))) return bad_field(e, "stop", what);
        return true;
    }
    if (!cJSON_IsArray(v)) return bad_field(e, "stop", what);
    const cJSON *s;
    cJSON_ArrayForEach(s, v) {
        if (!cJSON_IsString(s) || !srv_stops_add(st, s->valuestring, strlen(s->valuestring)))
            return bad_field(e, "stop", what);
    }
    return true;
}

static bool sampling(const cJSON *root, srv_oai_req *r, srv_error *e) {
    slm_sampler_params *sp = &r->rp.sp;
    *sp = slm_sampler_defaults();
    double temp = 1.0, top_p = 1.0, min_p = 0.0, rep = 1.0;
    long top_k = 0, n = 1, rep_n = 64;
    if (!get_number(root, "temperature", 0, 2, false, &temp, e) || !get_number(root, "top_p", 0, 1, true, &top_p, e) ||
        !get_number(root, "min_p", 0, 1, false, &min_p, e) || !get_int(root, "top_k", -1, 1 << 24, &top_k, e) ||
        !get_number(root, "repetition_penalty", 0, 100, true, &rep, e) ||
        !get_int(root, "repeat_last_n", 0, 1 << 20, &rep_n, e) || !get_int(root, "n", 1, SLM_SCHED_MAX_N, &n, e))
        return false;
    if (min_p >= 1) return bad_field(e, "min_p", "a number in [0, 1)");
    sp->temperature = (float)temp;
    sp->top_p = (float)top_p;
    sp->min_p = (float)min_p;
    sp->top_k = top_k < 0 ? 0 : (int)top_k;
    sp->repeat_penalty = (float)rep;
    sp->repeat_last_n = (int)rep_n;
    const cJSON *seed = field(root, "seed");
    if (seed) {
        double x = seed->valuedouble;
        if (!cJSON_IsNumber(seed) || !isfinite(x) || x != floor(x) || fabs(x) > 9007199254740992.0)
            return bad_field(e, "seed", "an integer");
        sp->seed = x < 0 ? (uint64_t)(int64_t)x : (uint64_t)x;
    } else {
        static uint64_t counter;
        uint64_t k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        sp->seed = ((uint64_t)time(NULL) << 20) ^ (k * 0x9e3779b97f4a7c15ull);
    }
    r->rp.n = (int)n;
    bool ignore_eos = false;
    if (!get_bool(root, "ignore_eos", &ignore_eos, e)) return false;
    r->rp.ignore_eog = ignore_eos;
    return true;
}

static bool encode(const srv_oai_ctx *c, const char *text, srv_oai_req *r, srv_error *e) {
    size_t n = 0;
    int32_t *ids = NULL;
    if (slm_tokenizer_encode(c->tok, text, strlen(text), true, true, &ids, &n)) {
        srv_error_set(e, 400, INVALID, NULL, "prompt", "the prompt could not be tokenized: %.200s", slm_last_error());
        return false;
    }
    r->prompt = ids;
    r->n_prompt = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
    return true;
}

static bool token_array(const srv_oai_ctx *c, const cJSON *a, srv_oai_req *r, srv_error *e) {
    int n = cJSON_GetArraySize(a);
    int32_t vocab = slm_tokenizer_n_vocab(c->tok);
    if (n <= 0) return bad_field(e, "prompt", "a non-empty string or array of token ids");
    if (!(r->prompt = malloc((size_t)n * sizeof *r->prompt))) {
        srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, a) {
        double x = t->valuedouble;
        if (!cJSON_IsNumber(t) || x != floor(x) || x < 0 || x >= vocab) {
            char what[96];
            snprintf(what, sizeof what, "a string or an array of token ids in [0, %d)", vocab);
            return bad_field(e, "prompt", what);
        }
        r->prompt[i++] = (int32_t)x;
    }
    r->n_prompt = i;
    return true;
}

static bool completion_prompt(const srv_oai_ctx *c, const cJSON *root, srv_oai_req *r, srv_error *e) {
    const cJSON *p = field(root, "prompt");
    const char *what = "a string or an array of token ids";
    if (!p) {
        srv_error_set(e, 400, INVALID, "missing_field", "prompt", "'prompt' is required");
        return false;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child; /* a batch of one prompt */
    else if (cJSON_IsArray(p) && p->child && (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        return unsupported(e, "prompt", "one prompt per request (use n for several samples)");
    if (cJSON_IsString(p)) {
        if (!is_valid_utf8(p->valuestring, strlen(p->valuestring))) return bad_field(e, "prompt", "valid UTF-8");
        return encode(c, p->valuestring, r, e);
    }
    if (cJSON_IsArray(p)) return token_array(c, p, r, e);
    return bad_field(e, "prompt", what);
}

/* Message content: a string, or an array of {"type": "text", "text": ...} parts (joined). */
static char *message_text(const cJSON *content, bool *bad) {
    *bad = false;
    if (!content) return strdup("");
    if (cJSON_IsString(content)) return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        *bad = true;
        return NULL;
    }
    size_t len = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x)) {
            *bad = true;
            return NULL;
        }
        len += strlen(x->valuestring);
    }
    char *s = malloc(len + 1);
    if (!s) return NULL;
    size_t at = 0;
    cJSON_ArrayForEach(part, content) {
        const char *x = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t n = strlen(x);
        memcpy(s + at, x, n);
        at += n;
    }
    s[at] = 0;
    return s;
}

static bool chat_prompt(const srv_oai_ctx *c, const cJSON *root, srv_oai_req *r, srv_error *e) {
    const cJSON *msgs = field(root, "messages");
    if (!msgs) {
        srv_error_set(e, 400, INVALID, "missing_field", "messages", "'messages' is required");
        return false;
    }
    int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0;
    if (n <= 0) return bad_field(e, "messages", "a non-empty array of messages");
    if (!c->tmpl) {
        srv_error_set(e, 400, INVALID, "no_chat_template", "messages",
                      "the model has no chat template this server can render; use /v1/completions");
        return false;
    }
    slm_chat_msg *m = calloc((size_t)n, sizeof *m);
    if (!m) {
        srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        return false;
    }
    bool ok = true;
    int k = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        const char *rs = cJSON_IsString(role) ? role->valuestring : "";
        if (!cJSON_IsObject(msg) || (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") &&
                                     strcmp(rs, "developer"))) {
            ok = bad_field(e, "messages", "an array of {role: system|user|assistant, content: string}");
            break;
        }
        bool bad;
        char *text = message_text(field(msg, "content"), &bad);
        bool valid = text && is_valid_utf8(text, strlen(text));
        if (!valid) {
            if (bad || text) {
                ok = bad_field(e, "messages", "messages whose content is a UTF-8 string or text parts");
            } else {
                srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
                ok = false;
            }
            free(text);
            break;
        }
        m[k].role = strcmp(rs, "developer") ? rs : "system";
        m[k].content = text;
        k++;
    }
    char *rendered = NULL;
    if (ok && slm_chat_render(c->tmpl, m, k, true, &rendered)) {
        srv_error_set(e, 400, INVALID, NULL, "messages", "the conversation could not be rendered: %.200s",
                      slm_last_error());
        ok = false;
    }
    for (int i = 0; i < k; i++) free((char *)m[i].content);
    free(m);
    if (ok) ok = encode(c, rendered, r, e);
    free(rendered);
    return ok;
}

static bool logprob_fields(srv_kind kind, const cJSON *root, srv_oai_req *r, srv_error *e) {
    r->rp.logprobs = -1;
    if (kind == SRV_COMPLETIONS) {
        long lp = -1;
        if (!get_int(root, "logprobs", 0, SLM_SCHED_MAX_LOGPROBS, &lp, e)) return false;
        r->rp.logprobs = (int)lp;
        return true;
    }
    bool want = false;
    long top = 0;
    if (!get_bool(root, "logprobs", &want, e) || !get_int(root, "top_logprobs", 0, SLM_SCHED_MAX_LOGPROBS, &top, e))
        return false;
    if (top > 0 && !want) return bad_field(e, "top_logprobs", "used together with \"logprobs\": true");
    r->top_logprobs = (int)top;
    r->rp.logprobs = want ? (int)top : -1;
    return true;
}

static bool length_fields(const srv_oai_ctx *c, srv_kind kind, const cJSON *root, srv_oai_req *r, srv_error *e) {
    long mt = -1;
    const char *key = "max_tokens";
    if (kind == SRV_CHAT && field(root, "max_completion_tokens")) key = "max_completion_tokens";
    if (!get_int(root, key, 1, 1L << 30, &mt, e)) return false;
    if (r->n_prompt <= 0) {
        srv_error_set(e, 400, INVALID, "invalid_value", "prompt", "the prompt is empty");
        return false;
    }
    if (r->n_prompt >= c->max_ctx || (mt > 0 && (long)r->n_prompt + mt > c->max_ctx)) {
        srv_error_set(e, 400, INVALID, "context_length_exceeded", kind == SRV_CHAT ? "messages" : "prompt",
                      "this model's maximum context length is %d tokens; the request has %d prompt tokens%s%ld",
                      c->max_ctx, r->n_prompt, mt > 0 ? " and asks for max_tokens " : "", mt > 0 ? mt : 0L);
        return false;
    }
    long room = c->max_ctx - r->n_prompt;
    if (mt < 0) mt = kind == SRV_COMPLETIONS ? (room < 16 ? room : 16) : room;
    r->rp.max_tokens = (int)mt;
    return true;
}

bool srv_oai_parse(const srv_oai_ctx *c, srv_kind kind, const char *body, size_t len, srv_oai_req *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    const char *end = NULL;
    cJSON *root = len ? cJSON_ParseWithLengthOpts(body, len, &end, false) : NULL;
    if (root && end) {
        while (end < body + len && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) end++;
        if (end != body + len) {
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        srv_error_set(e, 400, INVALID, "invalid_json", NULL, "the request body is not valid JSON");
        return false;
    }
    bool ok = false;
    if (!cJSON_IsObject(root)) {
        srv_error_set(e, 400, INVALID, "invalid_json", NULL, "the request body must be a JSON object");
        goto out;
    }
    if (!check_model(c, root, e) || !check_unsupported(root, e) || !sampling(root, r, e) ||
        !logprob_fields(kind, root, r, e) || !parse_stop(root, &r->stops, e) ||
        !get_bool(root, "stream", &r->stream, e))
        goto out;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) {
            bad_field(e, "stream_options", "an object");
            goto out;
        }
        if (!get_bool(so, "include_usage", &r->include_usage, e)) goto out;
    }
    if (!(kind == SRV_CHAT ? chat_prompt(c, root, r, e) : completion_prompt(c, root, r, e))) goto out;
    if (!length_fields(c, kind, root, r, e)) goto out;
    r->rp.prompt = r->prompt;
    r->rp.n_prompt = r->n_prompt;
    ok = true;
out:
    cJSON_Delete(root);
    if (!ok) srv_oai_req_free(r);
    return ok;
}

void srv_oai_req_free(srv_oai_req *r) {
    free(r->prompt);
    r->prompt = NULL;
    r->rp.prompt = NULL;
}
