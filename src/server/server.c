/* server.c - the engine thread, the scheduler's lifetime, start and orderly stop. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

static void *engine_main(void *arg) {
    srv_server *s = arg;
    slm_sched_run(s->sched);
    return NULL;
}

slm_status srv_server_start(const slm_model *m, const slm_tokenizer *tok, const srv_config *cfg, srv_server **out) {
    *out = NULL;
    if (cfg->sched.max_ctx <= 0) return slm_error(SLM_ERR_ARG, "server: max_ctx not set");
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return slm_error(SLM_ERR_NOMEM, "server: out of memory");
    pthread_rwlock_init(&s->sched_lock, NULL);
    snprintf(s->model_id, sizeof s->model_id, "%s", cfg->model_id);
    snprintf(s->model_alias, sizeof s->model_alias, "%s", cfg->model_alias ? cfg->model_alias : "");
    if (cfg->tmpl) s->tmpl = *cfg->tmpl;
    s->oai = (srv_oai_ctx){
        .tok = tok,
        .tmpl = cfg->tmpl ? &s->tmpl : NULL,
        .model_id = s->model_id,
        .model_alias = s->model_alias[0] ? s->model_alias : NULL,
        .max_ctx = cfg->sched.max_ctx,
    };
    s->max_body = cfg->max_body;
    s->started = (long)time(NULL);
    slm_status rc = slm_sched_create(m, tok, &cfg->sched, &s->sched);
    if (rc) {
        pthread_rwlock_destroy(&s->sched_lock);
        free(s);
        return rc;
    }
    if (pthread_create(&s->engine, NULL, engine_main, s)) {
        slm_sched_free(s->sched);
        pthread_rwlock_destroy(&s->sched_lock);
        free(s);
        return slm_error(SLM_ERR_NOMEM, "server: cannot start the engine thread");
    }
    if ((rc = srv_http_start(s, cfg->host, cfg->port, &s->http))) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", slm_last_error());
        srv_server_stop(s);
        return slm_error(rc, "%s", msg);
    }
    *out = s;
    return SLM_OK;
}

int srv_server_port(const srv_server *s) { return srv_http_port(s->http); }

slm_status srv_server_submit(srv_server *s, srv_stream *st, const slm_req_params *r) {
    slm_status rc;
    pthread_rwlock_rdlock(&s->sched_lock);
    if (!s->sched || __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
        rc = slm_error(SLM_ERR_UNSUPPORTED, "the server is shutting down");
    else
        rc = srv_stream_submit(st, s->sched, r);
    pthread_rwlock_unlock(&s->sched_lock);
    return rc;
}

void srv_server_cancel(srv_server *s, srv_stream *st) {
    pthread_rwlock_rdlock(&s->sched_lock);
    if (s->sched) srv_stream_cancel(st, s->sched);
    pthread_rwlock_unlock(&s->sched_lock);
}

void srv_server_stop(srv_server *s) {
    if (!s) return;
    __atomic_store_n(&s->stopping, 1, __ATOMIC_RELEASE);
    /* The engine first: stopping it cancels every request, so the connection threads that
     * wait on their streams see them end; then the daemon, which joins those threads. */
    slm_sched_stop(s->sched);
    pthread_join(s->engine, NULL);
    pthread_rwlock_wrlock(&s->sched_lock);
    slm_sched_free(s->sched);
    s->sched = NULL;
    __atomic_store_n(&s->engine_gone, 1, __ATOMIC_RELEASE);
    pthread_rwlock_unlock(&s->sched_lock);
    srv_http_stop(s->http);
    pthread_rwlock_destroy(&s->sched_lock);
    free(s);
}
