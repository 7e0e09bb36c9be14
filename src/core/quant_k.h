/* quant_k.h - reference quantizers for the K-quant formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K),
 * writing the llama.cpp-compatible block layouts of core/dtype.c.
 *
 * Each 256-element super-block is cut into sub-blocks (16 or 32 elements). Every sub-block
 * gets its own scale (and offset, for Q2_K/Q4_K/Q5_K) from a small search minimizing the
 * weighted squared error; the sub-block scales are then quantized against the super-block's
 * f16 scale(s), and the elements are re-quantized with the scales as stored. Importance
 * weights (one per element, >= 0) change the error being minimized; NULL means equal
 * weights. Output is deterministic. Non-finite input never causes undefined behaviour: NaN
 * counts as 0 and infinities as the largest magnitude the format can hold. */
#ifndef SLM_QUANT_K_H
#define SLM_QUANT_K_H

#include <stdbool.h>
#include <stdint.h>

/* Quantize n elements (n a multiple of 256) of src into blocks at dst. */
void slm_quantize_q2_k(const float *src, void *dst, int64_t n);
void slm_quantize_q3_k(const float *src, void *dst, int64_t n);
void slm_quantize_q4_k(const float *src, void *dst, int64_t n);
void slm_quantize_q5_k(const float *src, void *dst, int64_t n);
void slm_quantize_q6_k(const float *src, void *dst, int64_t n);

/* The same with per-element importance imp[0..n) (may be NULL) for K-quant type t
 * (SLM_DT_Q2_K .. SLM_DT_Q6_K). False, with nothing written, for another type or an n that
 * is not a non-negative multiple of 256. */
bool slm_quantize_k(uint32_t t, const float *src, void *dst, int64_t n, const float *imp);

#endif
