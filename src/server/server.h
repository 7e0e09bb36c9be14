/* server.h - `slimlm serve`: the scheduler on an engine thread behind an HTTP front end.
 *
 * Lifetime: srv_server_start loads nothing itself (the model and tokenizer are the caller's
 * and must outlive the server); it creates the scheduler, starts slm_sched_run on its own
 * thread and then the HTTP daemon. srv_server_stop refuses new requests (503), stops the
 * scheduler (running requests end as cancelled, so their streams close), joins the engine
 * and the connection threads, and frees everything. */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "model/chat.h"
#include "model/model.h"
#include "openai.h"
#include "runtime/sched.h"
#include "stream.h"

typedef struct {
    const char *host;        /* IPv4 or IPv6 literal to bind (default 127.0.0.1) */
    int port;                /* 0: any free port */
    size_t max_body;         /* request bodies above this are refused with 413 */
    slm_sched_params sched;  /* sched.max_ctx must be set */
    const char *model_id;    /* name /v1/models reports */
    const char *model_alias; /* also accepted in "model" (NULL: none) */
    const slm_chat_template *tmpl; /* NULL: no chat endpoint */
} srv_config;

struct srv_http;

typedef struct srv_server {
    slm_sched *sched;          /* NULL once freed (under sched_lock) */
    pthread_rwlock_t sched_lock; /* readers: submit, cancel, metrics; writer: the free at stop */
    srv_oai_ctx oai;
    slm_chat_template tmpl;
    char model_id[256], model_alias[256];
    size_t max_body;
    int stopping;    /* atomic: new requests get 503 */
    int engine_gone; /* atomic: the scheduler is freed; waiting streams give up */
    pthread_t engine;
    struct srv_http *http;
    uint64_t next_id; /* atomic: response ids */
    long started;     /* unix time, for /v1/models */
} srv_server;

slm_status srv_server_start(const slm_model *m, const slm_tokenizer *tok, const srv_config *cfg, srv_server **out);
int srv_server_port(const srv_server *s); /* the bound port */
void srv_server_stop(srv_server *s);      /* NULL is a no-op */

/* Submit / cancel through the lock that guards the scheduler's lifetime. Submit after stop:
 * SLM_ERR_UNSUPPORTED. */
slm_status srv_server_submit(srv_server *s, srv_stream *st, const slm_req_params *r);
void srv_server_cancel(srv_server *s, srv_stream *st);

/* The Prometheus text exposition for /metrics (malloc'd). */
char *srv_metrics_text(srv_server *s);

#endif
