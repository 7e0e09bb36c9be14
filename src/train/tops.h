/* tops.h - training ops: each op a forward / backward pair over caller-owned buffers.
 *
 * Shapes are row-major; N = B*T token rows (B sequences of T tokens, sequence-major). A
 * forward writes its outputs (and whatever its backward needs, e.g. rstd) into buffers the
 * caller owns; a backward ADDS into the gradients of its inputs and parameters (+=), so the
 * caller zeroes them once per step and a value used twice (the residual stream, tied
 * embeddings) collects both contributions. A parameter-gradient pointer of NULL means the
 * parameter is frozen: that part of the backward is skipped. Nothing allocates.
 *
 * The element type `treal` is float. Compiled with SLM_TRAIN_DOUBLE defined (the gradient
 * tests include tops.c and tmodel.c that way) it is double, so backward passes can be checked
 * against central finite differences in double precision; the float build runs the linear
 * layers through the threaded sgemm, the double build through plain loops. */
#ifndef SLM_TOPS_H
#define SLM_TOPS_H

#include <stdint.h>

#include "../core/threadpool.h"
#include "../model/config.h"

#ifdef SLM_TRAIN_DOUBLE
typedef double treal;
#else
typedef float treal;
#endif

/* ---- embedding: out[n][D] = embd[tok[n]][D] ---------------------------------------------- */
void slm_t_embed_forward(treal *out, const int32_t *tok, const treal *embd, int N, int D);
void slm_t_embed_backward(treal *dembd, const treal *dout, const int32_t *tok, int N, int D);

/* ---- RMSNorm: out = in * rstd * w, rstd[n] = 1/sqrt(mean(in^2) + eps) --------------------- */
void slm_t_rmsnorm_forward(treal *out, treal *rstd, const treal *in, const treal *w, int N, int D, float eps);
void slm_t_rmsnorm_backward(treal *din, treal *dw, const treal *dout, const treal *in, const treal *w,
                            const treal *rstd, int N, int D);

/* ---- linear: out[N][O] = in[N][I] W[O][I]^T (+ bias[O]) ----------------------------------- */
void slm_t_linear_forward(slm_pool *pool, treal *out, const treal *in, const treal *w, const treal *bias, int N,
                          int I, int O);
/* din += dout W; dw += dout^T in (dw NULL: frozen); dbias += sum over rows of dout (NULL: none
 * or frozen). din may be NULL when the input needs no gradient (the first op of a graph). */
void slm_t_linear_backward(slm_pool *pool, treal *din, treal *dw, treal *dbias, const treal *dout, const treal *in,
                           const treal *w, int N, int I, int O);

/* ---- LoRA side product: out[N][O] += scale * (in A^T) B^T, A [R][I], B [O][R] ------------
 * tmp[N][R] keeps in A^T for the backward. */
void slm_t_lora_forward(slm_pool *pool, treal *out, treal *tmp, const treal *in, const treal *a, const treal *b,
                        float scale, int N, int I, int O, int R);
/* din += scale * dout B A; da += scale * (dout B)^T in; db += scale * dout^T tmp. dtmp [N][R]
 * is scratch. */
void slm_t_lora_backward(slm_pool *pool, treal *din, treal *da, treal *db, treal *dtmp, const treal *dout,
                         const treal *in, const treal *tmp, const treal *a, const treal *b, float scale, int N, int I,
                         int O, int R);

/* ---- RoPE, in place on x[N][n_heads*head_dim]; token n of a sequence sits at position n % T.
 * Pairing and frequencies as the inference engine (config: rope_dim, rope_base, rope_scale,
 * rope_mode). The backward rotates the gradient by the opposite angle, also in place. */
void slm_t_rope_forward(treal *x, int N, int T, int n_heads, const slm_config *c);
void slm_t_rope_backward(treal *dx, int N, int T, int n_heads, const slm_config *c);

/* ---- causal grouped-query attention ------------------------------------------------------
 * q [N][H*hd] (after RoPE), k, v [N][KV*hd] (k after RoPE); head h reads KV group
 * h / (H/KV). out [N][H*hd]; att [B][H][T][T] keeps the softmax probabilities (row t holds
 * t+1 valid entries, the rest zero), scaled by 1/sqrt(hd). */
void slm_t_attention_forward(slm_pool *pool, treal *out, treal *att, const treal *q, const treal *k,
                             const treal *v, int B, int T, int H, int KV, int hd);
/* dq, dk, dv += ...; datt [B][H][T][T] is scratch. */
void slm_t_attention_backward(slm_pool *pool, treal *dq, treal *dk, treal *dv, treal *datt, const treal *dout,
                              const treal *q, const treal *k, const treal *v, const treal *att, int B, int T, int H,
                              int KV, int hd);

/* ---- SwiGLU: out = silu(gate) * up, elementwise over n values ---------------------------- */
void slm_t_swiglu_forward(treal *out, const treal *gate, const treal *up, long n);
void slm_t_swiglu_backward(treal *dgate, treal *dup, const treal *dout, const treal *gate, const treal *up, long n);

/* ---- losses over logit rows [N][V] -------------------------------------------------------
 * Each returns the SUM of the per-row losses (in double) and ADDS scale * d(sum)/dlogits to
 * dlogits (dlogits NULL: value only). Rows whose target is negative are skipped (no loss, no
 * gradient). Teacher logits are the inference engine's (float).
 *
 * ce:  -log softmax(z)[target]
 * kl:  forward KL(p || q) at temperature tau, times tau^2 (Hinton's scaling, so gradient
 *      magnitudes do not shrink with tau): p = softmax(t/tau), q = softmax(z/tau)
 * rkl: reverse KL(q || p) at temperature tau, times tau^2 */
double slm_t_ce_loss(const treal *logits, const int32_t *targets, int N, int V, double scale, treal *dlogits);
double slm_t_kl_loss(const treal *logits, const float *teacher, int N, int V, float tau, double scale,
                     treal *dlogits);
double slm_t_rkl_loss(const treal *logits, const float *teacher, int N, int V, float tau, double scale,
                      treal *dlogits);

#endif
