/* sse.c - server-sent events for streamed completions. */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/strbuf.h"
#include "http.h"
#include "server.h"

typedef struct {
    srv_server *srv;
    srv_stream *st;
    srv_oai_req req;
    char id[64];
    long created;
    int fd;
    slm_sb out;      /* bytes produced and not yet handed to MHD: out.p[pos, out.len) */
    size_t pos;
    size_t *sent;    /* [n] text bytes sent per sample */
    int *sent_recs;  /* [n] token records sent */
    size_t *offset;  /* [n] text_offset of the next record */
    bool *final;     /* [n] finish chunk sent */
    int n_final;
    bool started, over, abandon;
} sse;

static void emit(sse *x, char *json) {
    if (!json) {
        x->out.oom = 1;
        return;
    }
    slm_sb_printf(&x->out, "data: %s\n\n", json);
    free(json);
}

/* With the stream locked: turn whatever is new into events. True if anything was produced
 * (or the stream is over). */
static bool collect(sse *x) {
    srv_stream *st = x->st;
    const srv_oai_ctx *c = &x->srv->oai;
    size_t before = x->out.len;
    if (!x->started) {
        x->started = true;
        for (int i = 0; x->req.kind == SRV_CHAT && i < st->n; i++)
            emit(x, srv_oai_chunk_json(c, &x->req, x->id, x->created, &(srv_oai_delta){.index = i, .role = true}));
    }
    for (int i = 0; i < st->n; i++) {
        if (x->final[i]) continue;
        const srv_sample *sm = &st->samples[i];
        bool done = sm->done || x->abandon;
        size_t safe = sm->safe < x->sent[i] ? x->sent[i] : sm->safe;
        if (!done && safe == x->sent[i]) continue; /* records wait for their text */
        srv_oai_delta d = {
            .index = i,
            .text = sm->text ? sm->text + x->sent[i] : "",
            .len = safe - x->sent[i],
            .recs = sm->recs + x->sent_recs[i],
            .n_recs = sm->n_recs - x->sent_recs[i],
            .text_offset = x->offset[i],
            .finish = done ? srv_oai_finish(sm->done ? sm->finish : SLM_FINISH_CANCELLED) : NULL,
        };
        emit(x, srv_oai_chunk_json(c, &x->req, x->id, x->created, &d));
        for (int j = 0; j < d.n_recs; j++) {
            char tmp[8];
            int k = slm_tokenizer_piece(st->tok, d.recs[j].token, true, tmp, sizeof tmp);
            if (k > 0) x->offset[i] += (size_t)k;
        }
        x->sent[i] = safe;
        x->sent_recs[i] = sm->n_recs;
        if (done) {
            x->final[i] = true;
            x->n_final++;
        }
    }
    if (x->n_final == st->n && !x->over) {
        if (x->req.include_usage) {
            int n_completion = 0;
            for (int i = 0; i < st->n; i++) n_completion += st->samples[i].n_tokens;
            emit(x, srv_oai_usage_chunk_json(c, &x->req, x->id, x->created, x->req.n_prompt, n_completion));
        }
        slm_sb_printf(&x->out, "data: [DONE]\n\n");
        x->over = true;
    }
    return x->out.len > before || x->over;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ssize_t reader(void *cls, uint64_t at, char *buf, size_t max) {
    (void)at;
    sse *x = cls;
    while (x->pos == x->out.len) {
        if (x->over) return MHD_CONTENT_READER_END_OF_STREAM;
        x->pos = x->out.len = 0;
        double next_check = now_s() + 0.2;
        srv_stream_lock(x->st);
        while (!collect(x)) {
            srv_stream_wait(x->st, 200);
            if (now_s() < next_check) continue;
            next_check = now_s() + 0.2;
            srv_stream_unlock(x->st);
            if (!srv_http_peer_alive(x->fd)) {
                srv_server_cancel(x->srv, x->st);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (__atomic_load_n(&x->srv->engine_gone, __ATOMIC_ACQUIRE)) x->abandon = true;
            srv_stream_lock(x->st);
        }
        srv_stream_unlock(x->st);
        if (x->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = x->out.len - x->pos;
    if (n > max) n = max;
    memcpy(buf, x->out.p + x->pos, n);
    x->pos += n;
    return (ssize_t)n;
}

static void sse_free(void *cls) {
    sse *x = cls;
    srv_server_cancel(x->srv, x->st); /* no-op when every sample finished */
    srv_stream_unref(x->st);
    srv_oai_req_free(&x->req);
    slm_sb_free(&x->out);
    free(x->sent);
    free(x->sent_recs);
    free(x->offset);
    free(x->final);
    free(x);
}

struct MHD_Response *srv_sse_response(srv_server *srv, srv_stream *st, srv_oai_req *req, const char *id, long created,
                                      int fd) {
    sse *x = calloc(1, sizeof *x);
    int n = st->n;
    if (x) {
        x->sent = calloc((size_t)n, sizeof *x->sent);
        x->sent_recs = calloc((size_t)n, sizeof *x->sent_recs);
        x->offset = calloc((size_t)n, sizeof *x->offset);
        x->final = calloc((size_t)n, sizeof *x->final);
    }
    if (!x || !x->sent || !x->sent_recs || !x->offset || !x->final) {
        if (x) {
            free(x->sent);
            free(x->sent_recs);
            free(x->offset);
            free(x->final);
        }
        free(x);
        srv_server_cancel(srv, st);
        srv_stream_unref(st);
        srv_oai_req_free(req);
        return NULL;
    }
    x->srv = srv;
    x->st = st;
    x->req = *req;
    memset(req, 0, sizeof *req);
    snprintf(x->id, sizeof x->id, "%s", id);
    x->created = created;
    x->fd = fd;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, x, sse_free);
    if (!r) {
        sse_free(x);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    return r;
}
