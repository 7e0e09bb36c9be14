/* metrics.c - /metrics in the Prometheus text exposition format (version 0.0.4). */
#include <string.h>

#include "core/strbuf.h"
#include "server.h"

static void metric(slm_sb *b, const char *name, const char *type, const char *help, double v) {
    slm_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *srv_metrics_text(srv_server *s) {
    slm_sched_metrics m;
    memset(&m, 0, sizeof m);
    pthread_rwlock_rdlock(&s->sched_lock);
    if (s->sched) slm_sched_metrics_get(s->sched, &m);
    pthread_rwlock_unlock(&s->sched_lock);
    slm_sb b = {0};
    metric(&b, "slimlm_requests_queued", "gauge", "Requests waiting for a sequence slot.", m.queued);
    metric(&b, "slimlm_requests_running", "gauge", "Requests with sequences in the running batch.", m.running);
    metric(&b, "slimlm_kv_blocks_used", "gauge", "KV cache blocks in use.", m.kv_blocks_used);
    metric(&b, "slimlm_kv_blocks_total", "gauge", "KV cache blocks in the pool.", m.kv_blocks_total);
    metric(&b, "slimlm_tokens_generated_total", "counter", "Tokens generated.", (double)m.tokens_generated);
    metric(&b, "slimlm_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", (double)m.prompt_tokens);
    metric(&b, "slimlm_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.",
           (double)m.prompt_tokens_cached);
    metric(&b, "slimlm_preemptions_total", "counter", "Sequences preempted for lack of KV blocks.",
           (double)m.preemptions);
    metric(&b, "slimlm_requests_total", "counter", "Requests finished.", (double)m.requests_done);
    metric(&b, "slimlm_steps_total", "counter", "Engine steps (batched forward passes).", (double)m.steps);
    metric(&b, "slimlm_spec_drafted_tokens_total", "counter", "Tokens drafted by prompt lookup.",
           (double)m.spec_drafted);
    metric(&b, "slimlm_spec_accepted_tokens_total", "counter", "Drafted tokens accepted by verification.",
           (double)m.spec_accepted);
    metric(&b, "slimlm_spec_verify_steps_total", "counter", "Sample verifications that had drafts.",
           (double)m.spec_verify_steps);
    metric(&b, "slimlm_spec_acceptance_ratio", "gauge", "Accepted / drafted tokens since the start (0 before any draft).",
           m.spec_drafted ? (double)m.spec_accepted / (double)m.spec_drafted : 0.0);
    metric(&b, "slimlm_kv_tokens", "gauge", "Positions held in the KV cache by running sequences.", (double)m.kv_tokens);
    metric(&b, "slimlm_kv_waste_paged_ratio", "gauge",
           "Fraction of the blocks held that no position fills (paged cache; shared blocks counted once).",
           m.kv_waste_paged);
    metric(&b, "slimlm_kv_waste_reserved_ratio", "gauge",
           "Fraction that a cache reserving the full context per sequence would leave unused.", m.kv_waste_reserved);
    metric(&b, "slimlm_tokens_per_second", "gauge", "Generated tokens per second over the last few seconds.",
           m.tokens_per_s);
    if (b.oom) {
        slm_sb_free(&b);
        return NULL;
    }
    return b.p;
}
