/* stream.c - per-request event queue between the engine thread and a connection thread. */
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

srv_stream *srv_stream_create(const slm_tokenizer *tok, int n, int logprobs, const srv_stops *stops) {
    srv_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->samples = calloc((size_t)n, sizeof *st->samples);
    if (!st->samples) {
        free(st);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&st->mu, NULL);
    st->refs = 1;
    st->tok = tok;
    st->n = n;
    st->logprobs = logprobs;
    if (stops) st->stops = *stops;
    return st;
}

void srv_stream_ref(srv_stream *st) {
    pthread_mutex_lock(&st->mu);
    st->refs++;
    pthread_mutex_unlock(&st->mu);
}

void srv_stream_unref(srv_stream *st) {
    if (!st) return;
    pthread_mutex_lock(&st->mu);
    int left = --st->refs;
    pthread_mutex_unlock(&st->mu);
    if (left > 0) return;
    for (int i = 0; i < st->n; i++) {
        free(st->samples[i].text);
        free(st->samples[i].recs);
    }
    free(st->samples);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

slm_status srv_stream_submit(srv_stream *st, slm_sched *s, const slm_req_params *r) {
    srv_stream_ref(st); /* the engine's, dropped after the last DONE */
    uint64_t id = 0;
    /* Not under the lock: events may arrive before submit returns; they do not need the id. */
    slm_status rc = slm_sched_submit(s, r, srv_stream_on_event, st, &id);
    if (rc != SLM_OK) {
        srv_stream_unref(st);
        return rc;
    }
    pthread_mutex_lock(&st->mu);
    st->id = id;
    st->submitted = true;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void srv_stream_cancel(srv_stream *st, slm_sched *s) {
    pthread_mutex_lock(&st->mu);
    bool live = st->submitted && st->n_done < st->n;
    uint64_t id = st->id;
    pthread_mutex_unlock(&st->mu);
    if (live) slm_sched_cancel(s, id);
}

static bool text_append(srv_sample *sm, const char *p, size_t n) {
    if (sm->len + n + 1 > sm->cap) {
        size_t cap = sm->cap ? sm->cap : 256;
        while (cap < sm->len + n + 1) cap *= 2;
        char *t = realloc(sm->text, cap);
        if (!t) return false;
        sm->text = t;
        sm->cap = cap;
    }
    memcpy(sm->text + sm->len, p, n);
    sm->len += n;
    sm->text[sm->len] = 0;
    return true;
}

static bool rec_append(srv_sample *sm, const slm_event *ev) {
    if (sm->n_recs == sm->cap_recs) {
        int cap = sm->cap_recs ? sm->cap_recs * 2 : 32;
        srv_tokrec *r = realloc(sm->recs, (size_t)cap * sizeof *r);
        if (!r) return false;
        sm->recs = r;
        sm->cap_recs = cap;
    }
    srv_tokrec *r = &sm->recs[sm->n_recs++];
    r->token = ev->token;
    r->logprob = ev->logprob;
    r->n_top = ev->n_top < 0 ? 0 : ev->n_top > SLM_SCHED_MAX_LOGPROBS ? SLM_SCHED_MAX_LOGPROBS : ev->n_top;
    if (!ev->top_ids || !ev->top_logprobs) r->n_top = 0;
    for (int i = 0; i < r->n_top; i++) {
        r->top_ids[i] = ev->top_ids[i];
        r->top_lp[i] = ev->top_logprobs[i];
    }
    return true;
}

/* New decoded bytes arrived: cut at a stop string or advance the safe length. Returns false
 * when the sample must end. */
static bool scan_stops(srv_stream *st, srv_sample *sm) {
    if (st->stops.n == 0) {
        sm->safe = sm->len;
        return true;
    }
    long p = srv_stops_find(&st->stops, sm->text, sm->len, sm->safe);
    if (p >= 0) {
        sm->len = (size_t)p;
        sm->text[p] = 0;
        sm->safe = sm->len;
        sm->stopped = true;
        return false;
    }
    sm->safe = srv_stops_safe(&st->stops, sm->text, sm->len, sm->safe);
    return true;
}

bool srv_stream_on_event(void *user, const slm_event *ev) {
    srv_stream *st = user;
    bool keep = true, release = false;
    pthread_mutex_lock(&st->mu);
    if (ev->index < 0 || ev->index >= st->n) {
        pthread_mutex_unlock(&st->mu);
        return false;
    }
    srv_sample *sm = &st->samples[ev->index];
    if (ev->kind == SLM_EV_TOKEN && !sm->done) {
        if (sm->stopped) {
            keep = false;
        } else {
            char buf[512];
            size_t n = slm_detok_push(&sm->dt, st->tok, ev->token, false, buf, sizeof buf);
            sm->n_tokens++;
            if (st->logprobs >= 0 && !rec_append(sm, ev)) st->oom = true;
            if (!text_append(sm, buf, n)) st->oom = true;
            keep = !st->oom && scan_stops(st, sm);
        }
    } else if (ev->kind == SLM_EV_DONE && !sm->done) {
        if (!sm->stopped) {
            char buf[16];
            size_t n = slm_detok_flush(&sm->dt, buf, sizeof buf);
            if (n && !text_append(sm, buf, n)) st->oom = true;
            if (!st->oom && !scan_stops(st, sm)) sm->finish = SLM_FINISH_STOP;
        }
        sm->safe = sm->len;
        sm->done = true;
        sm->finish = sm->stopped ? SLM_FINISH_STOP : ev->finish;
        if (ev->finish == SLM_FINISH_ERROR && !st->error[0])
            snprintf(st->error, sizeof st->error, "%s", ev->error ? ev->error : "generation failed");
        st->n_prompt = ev->n_prompt;
        st->n_cached = ev->n_cached;
        release = ++st->n_done == st->n;
    }
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (release) srv_stream_unref(st);
    return keep;
}

void srv_stream_lock(srv_stream *st) { pthread_mutex_lock(&st->mu); }
void srv_stream_unlock(srv_stream *st) { pthread_mutex_unlock(&st->mu); }

bool srv_stream_wait(srv_stream *st, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&st->cv, &st->mu, &ts) != ETIMEDOUT;
}

bool srv_stream_all_done(const srv_stream *st) { return st->n_done == st->n; }
