/* complete.c - the generation endpoints: parse, submit, wait or stream. */
#include "complete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "server.h"
#include "sse.h"

/* A scheduler refusal as the HTTP error the client should see. */
static void submit_error(slm_status s, srv_error *e) {
    const char *m = slm_last_error();
    switch (s) {
    case SLM_ERR_FULL:
        srv_error_set(e, 429, "rate_limit_error", "queue_full", NULL, "too many requests waiting: %.200s", m);
        break;
    case SLM_ERR_ARG:
        srv_error_set(e, 400, "invalid_request_error", "invalid_value", NULL, "%.300s", m);
        break;
    case SLM_ERR_UNSUPPORTED:
        srv_error_set(e, 503, "server_error", "shutting_down", NULL, "the server is shutting down");
        break;
    default:
        srv_error_set(e, 500, "server_error", NULL, NULL, "%.300s", m);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wait for every sample; false if the client went away (the request is then cancelled). The
 * socket is looked at every 200 ms, whether or not tokens keep arriving. */
static bool wait_all(srv_server *srv, srv_stream *st, int fd) {
    double next_check = now_s() + 0.2;
    srv_stream_lock(st);
    while (!srv_stream_all_done(st)) {
        srv_stream_wait(st, 200);
        if (srv_stream_all_done(st) || now_s() < next_check) continue;
        next_check = now_s() + 0.2;
        srv_stream_unlock(st);
        if (!srv_http_peer_alive(fd)) {
            srv_server_cancel(srv, st);
            return false;
        }
        if (__atomic_load_n(&srv->engine_gone, __ATOMIC_ACQUIRE)) return true;
        srv_stream_lock(st);
    }
    srv_stream_unlock(st);
    return true;
}

enum MHD_Result srv_complete(srv_server *srv, struct MHD_Connection *c, srv_kind kind, const char *body, size_t len) {
    srv_oai_req req;
    srv_error e;
    if (!srv_oai_parse(&srv->oai, kind, body, len, &req, &e)) return srv_http_send_error(c, &e);
    srv_stream *st = srv_stream_create(srv->oai.tok, req.rp.n, req.rp.logprobs, &req.stops);
    if (!st) {
        srv_oai_req_free(&req);
        srv_error_set(&e, 500, "server_error", NULL, NULL, "out of memory");
        return srv_http_send_error(c, &e);
    }
    slm_status s = srv_server_submit(srv, st, &req.rp);
    if (s) {
        submit_error(s, &e);
        srv_stream_unref(st);
        srv_oai_req_free(&req);
        return srv_http_send_error(c, &e);
    }
    char id[64];
    uint64_t k = __atomic_fetch_add(&srv->next_id, 1, __ATOMIC_RELAXED);
    snprintf(id, sizeof id, "%s-%lx%06llx", kind == SRV_CHAT ? "chatcmpl" : "cmpl", (unsigned long)srv->started,
             (unsigned long long)k);
    long created = (long)time(NULL);
    int fd = srv_http_fd(c);

    if (req.stream) {
        struct MHD_Response *r = srv_sse_response(srv, st, &req, id, created, fd); /* takes st and req */
        if (!r) return MHD_NO;
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }

    if (!wait_all(srv, st, fd)) {
        srv_stream_unref(st);
        srv_oai_req_free(&req);
        return MHD_NO;
    }
    char *json = NULL;
    srv_stream_lock(st);
    bool cancelled = !srv_stream_all_done(st), failed = st->oom || st->error[0];
    for (int i = 0; i < st->n; i++) {
        if (st->samples[i].finish == SLM_FINISH_CANCELLED) cancelled = true;
        if (st->samples[i].finish == SLM_FINISH_ERROR) failed = true;
    }
    if (failed)
        srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %.250s",
                      st->oom ? "out of memory" : st->error);
    else if (cancelled)
        srv_error_set(&e, 503, "server_error", "cancelled", NULL, "the request was cancelled (server shutting down)");
    else
        json = srv_oai_response_json(&srv->oai, &req, st, id, created);
    srv_stream_unlock(st);
    srv_stream_unref(st);
    srv_oai_req_free(&req);
    if (failed || cancelled) return srv_http_send_error(c, &e);
    return srv_http_send(c, MHD_HTTP_OK, "application/json", json);
}
