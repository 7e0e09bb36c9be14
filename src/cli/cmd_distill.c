/* cmd_distill.c - `slimlm distill`: train a smaller (or LoRA-adapted) student on a teacher's
 * logits and write it as GGUF. The loop is src/compress/distill.h, the student choice and the
 * export src/compress/student.h. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "compress/calib.h"
#include "compress/distill.h"
#include "compress/student.h"
#include "core/dtype.h"
#include "train/tmodel.h"

static const char *const usage =
    "usage: slimlm distill --teacher T -o OUT [--student S | --keep-layers LIST | --drop-block N | --every-other]\n"
    "                      [options]\n"
    "\n"
    "Knowledge distillation: the student (a subset of the teacher's layers, or another model with\n"
    "the teacher's vocabulary) is trained in fp32 to match the teacher's next-token distribution\n"
    "on windows of a text, then written as GGUF (LoRA adapters merged).\n"
    "\n"
    "  --teacher T         teacher model (any type, packed files too)\n"
    "  -o, --out OUT       output model (written atomically)\n"
    "student (at most one; default: all of the teacher's layers):\n"
    "  --student S         a GGUF or packed file with the teacher's vocabulary\n"
    "  --keep-layers LIST  the teacher's layers kept, e.g. 0-7,22-29\n"
    "  --every-other       keep layers 0, 2, 4, ...\n"
    "  --drop-block N      drop the N contiguous layers whose removal changes the hidden state\n"
    "                      least (angular distance over 8 windows of the data)\n"
    "data:\n"
    "  --data FILE         training text (default ../shared/data/wikitext2-valid.txt)\n"
    "  --tokens N          training tokens (default 65536); steps = ceil(N / (B*L*A)); 0 writes\n"
    "                      the initialized student without training\n"
    "  --seq L             tokens per sequence (default 256)\n"
    "  --batch B           sequences per micro-batch (default 4)\n"
    "  --accum A           micro-batches per optimizer step (default 1)\n"
    "  --gen-frac F        fraction of each batch's sequences sampled by the teacher (default 0)\n"
    "  --seed S            data windows, sampling, adapters (default 1)\n"
    "objective and optimizer:\n"
    "  --loss L            kl (default), rkl, ce or mix ((1-w) kl + w ce)\n"
    "  --temp T            distillation temperature (default 1)\n"
    "  --ce-weight W       w of --loss mix (default 0.5)\n"
    "  --lr X              peak learning rate (default 1e-4)\n"
    "  --min-lr X          final learning rate of the cosine decay (default lr/10)\n"
    "  --warmup W          warmup steps (default min(100, steps/10))\n"
    "  --wd X              AdamW weight decay of matrices (default 0)\n"
    "  --clip X            global gradient norm clip, 0 = off (default 1)\n"
    "  --lora R            train rank-R adapters only (merged before export)\n"
    "  --lora-alpha A      adapter scale alpha/R (default alpha = R)\n"
    "  --freeze-embd       keep token_embd / output fixed\n"
    "output:\n"
    "  --type T            f32, f16 or any quantized type (default f32 when the teacher's\n"
    "                      matrices are f32, else f16)\n"
    "run:\n"
    "  -t, --threads N     threads (default: all CPUs)\n"
    "  --ckpt FILE         checkpoint file (written atomically every --ckpt-every steps and at the end)\n"
    "  --ckpt-every N      steps between checkpoints (default 10% of the run)\n"
    "  --resume FILE       continue from a checkpoint (same flags: the result is bit-identical)\n"
    "  --stop-after S      stop after S steps (checkpoint written, no output model)\n"
    "  --log FILE          JSON lines: one per step (loss, lr, grad_norm, offsets), evaluations\n"
    "  --eval-every N      before training, every N steps and at the end: KL and CE against the\n"
    "                      teacher on the last 5% of the data (held out of training)\n"
    "  --eval-tokens N     held-out tokens evaluated (default 8192)\n"
    "  -q, --quiet         no progress\n"
    "  -h, --help          this help\n";

static const char *cmd = "distill";

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

typedef struct {
    const char *teacher, *out, *student, *keep_layers, *data, *type_name, *ckpt, *resume, *log;
    int drop_block; /* 0: no */
    bool every_other, freeze_embd, quiet;
    long tokens, seq, batch, accum, lora, threads, ckpt_every, stop_after, eval_every, eval_tokens;
    long warmup; /* -1: default */
    double lr, min_lr, wd, clip, temp, ce_weight, lora_alpha, gen_frac; /* min_lr < 0: default */
    long seed;
    slm_distill_loss loss;
} dargs;

/* Returns 1 = handled, 0 = not ours, -1 = error (printed). */
static int parse_flag(int argc, char **argv, int *i, dargs *a) {
    const char *f = argv[*i], *v;
#define VAL() \
    if (!(v = cli_value(cmd, argc, argv, i))) return -1
#define INT(lo, hi, dst) \
    VAL();               \
    if (!cli_int(cmd, f, v, lo, hi, dst)) return -1
#define FLT(lo, hi, dst) \
    VAL();               \
    if (!cli_float(cmd, f, v, lo, hi, dst)) return -1
    if (!strcmp(f, "--teacher")) {
        VAL();
        a->teacher = v;
    } else if (!strcmp(f, "-o") || !strcmp(f, "--out")) {
        VAL();
        a->out = v;
    } else if (!strcmp(f, "--student")) {
        VAL();
        a->student = v;
    } else if (!strcmp(f, "--keep-layers")) {
        VAL();
        a->keep_layers = v;
    } else if (!strcmp(f, "--drop-block")) {
        long n;
        INT(1, 100000, &n);
        a->drop_block = (int)n;
    } else if (!strcmp(f, "--every-other")) {
        a->every_other = true;
    } else if (!strcmp(f, "--data")) {
        VAL();
        a->data = v;
    } else if (!strcmp(f, "--tokens")) {
        INT(0, 1L << 40, &a->tokens);
    } else if (!strcmp(f, "--seq")) {
        INT(2, 1 << 15, &a->seq);
    } else if (!strcmp(f, "--batch")) {
        INT(1, 1 << 12, &a->batch);
    } else if (!strcmp(f, "--accum")) {
        INT(1, 1 << 12, &a->accum);
    } else if (!strcmp(f, "--lr")) {
        FLT(0.0, 10.0, &a->lr);
    } else if (!strcmp(f, "--min-lr")) {
        FLT(0.0, 10.0, &a->min_lr);
    } else if (!strcmp(f, "--warmup")) {
        INT(0, 1L << 40, &a->warmup);
    } else if (!strcmp(f, "--wd")) {
        FLT(0.0, 10.0, &a->wd);
    } else if (!strcmp(f, "--clip")) {
        FLT(0.0, 1e9, &a->clip);
    } else if (!strcmp(f, "--loss")) {
        VAL();
        if (!strcmp(v, "kl")) a->loss = SLM_DL_KL;
        else if (!strcmp(v, "rkl")) a->loss = SLM_DL_RKL;
        else if (!strcmp(v, "ce")) a->loss = SLM_DL_CE;
        else if (!strcmp(v, "mix")) a->loss = SLM_DL_MIX;
        else {
            cli_fail(cmd, "--loss %s: expected kl, rkl, ce or mix", v);
            return -1;
        }
    } else if (!strcmp(f, "--temp")) {
        FLT(0.01, 100.0, &a->temp);
    } else if (!strcmp(f, "--ce-weight")) {
        FLT(0.0, 1.0, &a->ce_weight);
    } else if (!strcmp(f, "--lora")) {
        INT(1, 4096, &a->lora);
    } else if (!strcmp(f, "--lora-alpha")) {
        FLT(0.0, 1e6, &a->lora_alpha);
    } else if (!strcmp(f, "--freeze-embd")) {
        a->freeze_embd = true;
    } else if (!strcmp(f, "--gen-frac")) {
        FLT(0.0, 1.0, &a->gen_frac);
    } else if (!strcmp(f, "--type")) {
        VAL();
        a->type_name = v;
    } else if (!strcmp(f, "--seed")) {
        INT(0, 0x7fffffff, &a->seed);
    } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
        INT(1, 1024, &a->threads);
    } else if (!strcmp(f, "--ckpt")) {
        VAL();
        a->ckpt = v;
    } else if (!strcmp(f, "--ckpt-every")) {
        INT(1, 1L << 40, &a->ckpt_every);
    } else if (!strcmp(f, "--resume")) {
        VAL();
        a->resume = v;
    } else if (!strcmp(f, "--stop-after")) {
        INT(1, 1L << 40, &a->stop_after);
    } else if (!strcmp(f, "--log")) {
        VAL();
        a->log = v;
    } else if (!strcmp(f, "--eval-every")) {
        INT(0, 1L << 40, &a->eval_every);
    } else if (!strcmp(f, "--eval-tokens")) {
        INT(1, 1L << 40, &a->eval_tokens);
    } else if (!strcmp(f, "-q") || !strcmp(f, "--quiet")) {
        a->quiet = true;
    } else {
        return 0;
    }
#undef VAL
#undef INT
#undef FLT
    return 1;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static long long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* The output type: --type, else f32 for an f32 teacher, else f16. */
static int output_type(const dargs *a, const slm_model *teacher) {
    if (!a->type_name) {
        const slm_gguf_tensor *t = slm_gguf_find_tensor(teacher->gguf, "blk.0.attn_q.weight");
        return t && t->type == SLM_DT_F32 ? SLM_DT_F32 : SLM_DT_F16;
    }
    const int t = slm_dtype_from_name(a->type_name);
    const slm_dtype_traits *tr = t >= 0 ? slm_dtype_get((uint32_t)t) : NULL;
    return tr && tr->from_float && tr->to_float ? t : -1;
}

/* Same vocabulary: size and every token's text. */
static bool same_vocab(const slm_model *t, const slm_tokenizer *tt, const slm_model *s, const slm_tokenizer *st,
                       const char *path) {
    if (t->cfg.vocab_size != s->cfg.vocab_size || slm_tokenizer_n_vocab(tt) != slm_tokenizer_n_vocab(st)) {
        cli_fail(cmd, "student %s has a vocabulary of %d tokens, the teacher %d", path, s->cfg.vocab_size,
                 t->cfg.vocab_size);
        return false;
    }
    char x[512], y[512];
    for (int32_t id = 0; id < slm_tokenizer_n_vocab(tt); id++) {
        const int lx = slm_tokenizer_piece(tt, id, true, x, sizeof x), ly = slm_tokenizer_piece(st, id, true, y, sizeof y);
        if (lx != ly || (lx > 0 && memcmp(x, y, (size_t)(lx < (int)sizeof x ? lx : (int)sizeof x)) != 0)) {
            cli_fail(cmd, "student %s: token %d differs from the teacher's (another tokenizer)", path, id);
            return false;
        }
    }
    return true;
}

/* --drop-block: distances over 8 windows of the training tokens, the table, the choice. */
static int choose_block(const dargs *a, cli_engine *e, const int32_t *train, size_t n_train, int32_t bos, int *first) {
    const int L = e->model->cfg.n_layers, n = a->drop_block;
    slm_calib_params cp = slm_calib_params_default();
    cp.n_samples = 8;
    cp.seq_len = n_train > 257 ? 256 : (int)n_train - 1;
    cp.seed = (uint64_t)a->seed;
    int32_t *win = NULL;
    double *dist = malloc((size_t)(L - n + 1) * sizeof *dist);
    slm_status s = dist ? SLM_OK : slm_error(SLM_ERR_NOMEM, "out of memory");
    if (!s && cp.seq_len < 2) s = slm_error(SLM_ERR_ARG, "the data is too short for --drop-block");
    if (!s) s = slm_calib_windows(train, n_train, bos, &cp, &win);
    if (!s) s = slm_student_block_distances(e->ctx, win, cp.n_samples, cp.seq_len, n, dist);
    free(win);
    if (s) {
        free(dist);
        return cli_fail_status(cmd, s);
    }
    *first = 0;
    for (int l = 1; l <= L - n; l++)
        if (dist[l] < dist[*first]) *first = l;
    {
        printf("angular distance arccos(cos(h_l, h_l+%d))/pi, %d windows of %d tokens:\n", n, cp.n_samples,
               cp.seq_len);
        printf("%-8s %-10s %s\n", "layers", "distance", "");
        for (int l = 0; l <= L - n; l++) {
            char r[32];
            snprintf(r, sizeof r, "%d-%d", l, l + n - 1);
            printf("%-8s %-10.6f%s\n", r, dist[l], l == *first ? " <- dropped" : "");
        }
    }
    printf("distill: dropping layers %d-%d (distance %.6f)\n", *first, *first + n - 1, dist[*first]);
    free(dist);
    return 0;
}

static int run(dargs *a, cli_engine *e) {
    int rc = 1;
    slm_status s;
    char *text = NULL, *config = NULL;
    int32_t *ids = NULL;
    int *layers = NULL;
    slm_model *smodel = NULL;
    slm_tokenizer *stok = NULL;
    slm_tmodel *tm = NULL;
    FILE *log = NULL;
    size_t len = 0, n_ids = 0;
    const slm_config *tcfg = &e->model->cfg;
    const int otype = output_type(a, e->model);
    if (otype < 0) {
        cli_fail(cmd, "--type %s: expected f32, f16 or a quantized type (q8_0, q4_k, ...)", a->type_name);
        goto done;
    }
    if (!(text = cli_read_file(cmd, a->data, &len))) goto done;
    if ((s = slm_tokenizer_encode(e->tok, text, len, false, false, &ids, &n_ids))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    const size_t n_eval = a->eval_every > 0 ? n_ids / 20 : 0, n_train = n_ids - n_eval;
    if (n_train < (size_t)a->seq + 2) {
        cli_fail(cmd, "%s has %zu training tokens, fewer than a sequence of %ld (+2)", a->data, n_train, a->seq);
        goto done;
    }
    if (a->eval_every > 0 && n_eval < (size_t)a->seq + 1) {
        cli_fail(cmd, "%s: the held-out 5%% (%zu tokens) is shorter than a sequence of %ld", a->data, n_eval, a->seq);
        goto done;
    }
    const int32_t bos = slm_tokenizer_add_bos(e->tok) ? slm_tokenizer_bos(e->tok) : -1;

    /* the student */
    int n_layers = tcfg->n_layers;
    const slm_model *src = e->model;
    char layers_str[4096] = "";
    if (a->student) {
        if ((s = slm_model_load(a->student, &smodel)) || (s = slm_tokenizer_load(smodel->gguf, &stok))) {
            cli_fail(cmd, "%s: %s", a->student, slm_last_error());
            goto done;
        }
        if (!same_vocab(e->model, e->tok, smodel, stok, a->student)) goto done;
        src = smodel;
        n_layers = smodel->cfg.n_layers;
    } else if (a->keep_layers || a->every_other || a->drop_block) {
        if (!(layers = malloc((size_t)tcfg->n_layers * sizeof *layers))) {
            cli_fail(cmd, "out of memory");
            goto done;
        }
        if (a->keep_layers) {
            free(layers);
            layers = NULL;
            if ((s = slm_student_parse_layers(a->keep_layers, tcfg->n_layers, &layers, &n_layers))) {
                cli_fail(cmd, "--keep-layers: %s", slm_last_error());
                goto done;
            }
        } else if (a->every_other) {
            n_layers = slm_student_every_other(tcfg->n_layers, layers);
        } else {
            if (a->drop_block >= tcfg->n_layers) {
                cli_fail(cmd, "--drop-block %d: the teacher has %d layers", a->drop_block, tcfg->n_layers);
                goto done;
            }
            int first = 0;
            if (choose_block(a, e, ids, n_train, bos, &first)) goto done;
            n_layers = slm_student_drop_block(tcfg->n_layers, first, a->drop_block, layers);
        }
        slm_student_layers_str(layers, n_layers, layers_str, sizeof layers_str);
    }
    slm_tcfg tc;
    slm_tmodel_cfg_from(src, n_layers, (int)a->lora, (float)a->lora_alpha, &tc);
    if ((s = slm_tmodel_create(&tc, (int)a->batch, (int)a->seq, e->ctx->pool, &tm)) ||
        (s = slm_tmodel_load(tm, src, layers, (uint64_t)a->seed))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    slm_tmodel_set_trainable(tm, a->lora > 0, a->freeze_embd);

    /* run parameters */
    const long per_step = a->batch * a->seq * a->accum;
    const int64_t total = (a->tokens + per_step - 1) / per_step;
    slm_distill_params p = {.batch = (int)a->batch, .seq = (int)a->seq, .accum = (int)a->accum, .lr = (float)a->lr,
                            .min_lr = (float)(a->min_lr >= 0 ? a->min_lr : a->lr / 10),
                            .warmup = a->warmup >= 0 ? a->warmup : (total / 10 < 100 ? total / 10 : 100),
                            .weight_decay = (float)a->wd, .clip = (float)a->clip, .loss = a->loss,
                            .temp = (float)a->temp, .ce_weight = (float)a->ce_weight, .gen_frac = (float)a->gen_frac,
                            .seed = (uint64_t)a->seed, .total_steps = total, .ckpt_path = a->ckpt,
                            .ckpt_every = a->ckpt_every > 0 ? a->ckpt_every : (total >= 10 ? total / 10 : 1),
                            .resume_path = a->resume, .stop_after = a->stop_after, .eval_every = a->eval_every,
                            .eval_tokens = a->eval_tokens, .progress = a->quiet ? 0 : isatty(2) ? 1 : 2};
    const size_t clen = 8192 + strlen(layers_str);
    if (!(config = malloc(clen))) {
        cli_fail(cmd, "out of memory");
        goto done;
    }
    snprintf(config, clen,
             "teacher=%s\nteacher_bytes=%lld\nstudent=%s\nstudent_bytes=%lld\nlayers=%s\ndata=%s\ndata_bytes=%lld\n"
             "freeze_embd=%d\n",
             base_name(a->teacher), file_size(a->teacher), a->student ? base_name(a->student) : "(teacher)",
             a->student ? file_size(a->student) : 0, layers_str, base_name(a->data), file_size(a->data),
             a->freeze_embd ? 1 : 0);
    p.config = config;
    if (a->log && !(log = fopen(a->log, a->resume ? "a" : "w"))) {
        cli_fail(cmd, "cannot write the log %s", a->log);
        goto done;
    }
    p.log = log;
    if (!a->quiet)
        fprintf(stderr, "distill: %d-layer student, %zu parameters (%s), %lld steps of %ld tokens, %zu training tokens%s\n",
                n_layers, slm_tmodel_n_params(tm), a->lora ? "adapters trained" : "all trained", (long long)total,
                per_step, n_train, n_eval ? ", 5% held out" : "");
    const slm_distill_data d = {.train = ids, .n_train = n_train, .eval = n_eval ? ids + n_train : NULL,
                                .n_eval = n_eval, .bos = bos};
    slm_distill_result r;
    if ((s = slm_distill_run(tm, e->ctx, &d, &p, &r))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    const double tps = r.seconds > 0 ? (double)r.run_tokens / r.seconds : 0;
    printf("distill: %lld steps (%lld this run), %" PRIu64 " tokens, loss %.6g -> %.6g, %.1f s (teacher %.1f s), "
           "%.0f tokens/s, peak memory %.0f MiB\n",
           (long long)r.steps_done, (long long)(r.steps_done - r.first_step), r.tokens, r.first_loss, r.final_loss,
           r.seconds, r.teacher_seconds, tps, peak_rss_mib());
    if (r.has_eval) printf("distill: held-out KL %.6f, CE %.6f\n", r.eval_kl, r.eval_ce);
    if (r.steps_done < total) {
        printf("distill: stopped after step %lld of %lld%s%s\n", (long long)r.steps_done, (long long)total,
               a->ckpt ? "; resume with --resume " : "", a->ckpt ? a->ckpt : "");
        rc = 0;
        goto done;
    }
    if (a->lora > 0) slm_tmodel_merge_lora(tm);
    const slm_student_export_opts eo = {.meta = src->gguf, .type = (uint32_t)otype, .teacher = base_name(a->teacher),
                                        .layers = layers_str, .objective = slm_distill_loss_name(a->loss),
                                        .tokens = r.tokens, .steps = r.steps_done, .final_loss = (float)r.final_loss,
                                        .pool = e->ctx->pool};
    if ((s = slm_student_export(tm, &eo, a->out))) {
        cli_fail_status(cmd, s);
        goto done;
    }
    printf("wrote %s (%s, %d layers)\n", a->out, slm_dtype_name((uint32_t)otype), n_layers);
    rc = 0;
done:
    if (log) fclose(log);
    slm_tmodel_free(tm);
    slm_tokenizer_free(stok);
    slm_model_free(smodel);
    free(layers);
    free(ids);
    free(text);
    free(config);
    return rc;
}

int cmd_distill(int argc, char **argv) {
    dargs a = {.data = "../shared/data/wikitext2-valid.txt", .tokens = 65536, .seq = 256, .batch = 4, .accum = 1,
               .lr = 1e-4, .min_lr = -1, .warmup = -1, .clip = 1.0, .temp = 1.0, .ce_weight = 0.5, .seed = 1,
               .eval_tokens = 8192, .loss = SLM_DL_KL};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        const int r = parse_flag(argc, argv, &i, &a);
        if (r < 0) return 1;
        if (r == 0) return cli_fail(cmd, "unknown option '%s' (see --help)", argv[i]);
    }
    if (!a.teacher) return cli_fail(cmd, "no teacher model (--teacher T)");
    if (!a.out) return cli_fail(cmd, "no output file (-o OUT)");
    const int n_choice = (a.student != NULL) + (a.keep_layers != NULL) + (a.drop_block > 0) + a.every_other;
    if (n_choice > 1) return cli_fail(cmd, "--student, --keep-layers, --drop-block and --every-other exclude each other");
    if (a.lora_alpha > 0 && !a.lora) return cli_fail(cmd, "--lora-alpha goes with --lora R");
    if (a.lora && a.freeze_embd) return cli_fail(cmd, "--freeze-embd goes with full training (LoRA trains adapters only)");
    if (a.ce_weight != 0.5 && a.loss != SLM_DL_MIX) return cli_fail(cmd, "--ce-weight goes with --loss mix");
    if (a.stop_after && !a.ckpt) return cli_fail(cmd, "--stop-after needs --ckpt FILE to continue from");
    if (a.min_lr > a.lr) return cli_fail(cmd, "--min-lr %g is above --lr %g", a.min_lr, a.lr);
    if (a.gen_frac > 0 && a.seq <= 16) return cli_fail(cmd, "--gen-frac needs --seq above 16 (16 prompt tokens)");
    if (access(a.teacher, R_OK) != 0) return cli_fail(cmd, "teacher %s is not readable", a.teacher);
    if (a.student && access(a.student, R_OK) != 0) return cli_fail(cmd, "student %s is not readable", a.student);
    if (access(a.data, R_OK) != 0) return cli_fail(cmd, "data %s is not readable (use --data FILE)", a.data);
    if (a.resume && access(a.resume, R_OK) != 0) return cli_fail(cmd, "checkpoint %s is not readable", a.resume);
    if (!cli_check_output(cmd, a.teacher, a.out)) return 1;
    if (a.student && !cli_check_output(cmd, a.student, a.out)) return 1;
    if ((a.ckpt && !strcmp(a.ckpt, a.out)) || (a.log && !strcmp(a.log, a.out)) || (a.resume && !strcmp(a.resume, a.out)))
        return cli_fail(cmd, "-o names the same file as --ckpt, --resume or --log");

    cli_engine_opts eo = {.model = a.teacher};
    eo.ctx.n_ctx = (int)(a.drop_block && a.seq < 256 ? 256 : a.seq);
    eo.ctx.max_batch = eo.ctx.n_ctx < 512 ? eo.ctx.n_ctx : 512;
    eo.ctx.n_threads = (int)a.threads;
    eo.ctx.kv_type = SLM_KV_F32;
    eo.ctx.deterministic = true; /* teacher logits (and sampled sequences) independent of -t */
    cli_engine e;
    if (!cli_engine_load(cmd, &eo, true, &e)) return 1;
    const int rc = run(&a, &e);
    cli_engine_free(&e);
    return rc;
}
