/* stream.h - one request's results, handed from the engine thread to its connection thread.
 *
 * The engine thread delivers TOKEN/DONE events (srv_stream_on_event): each token is decoded
 * into its sample's text (complete UTF-8 characters only), stop strings are searched there,
 * and the bytes that can no longer turn into a stop string become sendable (`safe`). The
 * connection thread reads the samples under the lock and sleeps on the condition variable
 * between changes. The stream is reference counted: the connection holds one reference and
 * the engine one from submit until the last DONE event. */
#ifndef SRV_STREAM_H
#define SRV_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/sched.h"
#include "stop.h"

typedef struct {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[SLM_SCHED_MAX_LOGPROBS];
    float top_lp[SLM_SCHED_MAX_LOGPROBS];
} srv_tokrec;

typedef struct {
    char *text;         /* [len] decoded text, cut before a stop string; NUL-terminated */
    size_t len, cap;
    size_t safe;        /* text[0, safe) can be sent: no stop string can start there */
    slm_detok dt;
    srv_tokrec *recs;   /* [n_recs] per token, when logprobs were asked for */
    int n_recs, cap_recs;
    int n_tokens;       /* TOKEN events */
    bool stopped;       /* a stop string matched */
    bool done;          /* DONE received */
    slm_finish finish;
} srv_sample;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    const slm_tokenizer *tok;
    srv_stops stops;
    int logprobs;        /* -1: no token records kept */
    int n;
    srv_sample *samples; /* [n] */
    int n_done;
    int n_prompt, n_cached;
    uint64_t id;         /* valid once submitted */
    bool submitted;
    bool oom;
    char error[256];     /* first SLM_FINISH_ERROR message */
} srv_stream;

srv_stream *srv_stream_create(const slm_tokenizer *tok, int n, int logprobs, const srv_stops *stops);
void srv_stream_ref(srv_stream *st);
void srv_stream_unref(srv_stream *st); /* frees at zero */

/* Submit r with this stream as the event target (takes the engine's reference). Returns the
 * scheduler's status (the message is in slm_last_error()). */
slm_status srv_stream_submit(srv_stream *st, slm_sched *s, const slm_req_params *r);
/* Cancel the request if it was submitted and is not finished. */
void srv_stream_cancel(srv_stream *st, slm_sched *s);

/* The engine callback (slm_event_fn). */
bool srv_stream_on_event(void *user, const slm_event *ev);

void srv_stream_lock(srv_stream *st);
void srv_stream_unlock(srv_stream *st);
/* With the lock held: sleep until an event arrives or ms milliseconds pass; false on timeout. */
bool srv_stream_wait(srv_stream *st, int ms);
bool srv_stream_all_done(const srv_stream *st); /* lock held */

#endif
