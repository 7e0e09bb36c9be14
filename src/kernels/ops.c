/* ops.c - elementwise and normalization kernels: scalar twins and run-time choice of the
 * AVX2 / AVX-512 ones. */
#include "ops.h"

#include <math.h>
#include <stddef.h>

#include "qdot.h"

/* 2 with the AVX-512 kernel table, 1 with the AVX2 one, else 0; looked up once. */
static int simd_level(void) {
    static _Atomic int level = -1;
    int lv = level;
    if (lv < 0) {
        lv = 0;
#if defined(__x86_64__)
        if (slm_kernels_get(SLM_ISA_AVX512)) lv = 2;
        else if (slm_kernels_get(SLM_ISA_AVX2)) lv = 1;
#endif
        level = lv;
    }
    return lv;
}

void slm_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
#if defined(__x86_64__)
    if (simd_level() >= 1) {
        slm_rmsnorm_avx2(out, x, w, n, eps);
        return;
    }
#endif
    slm_rmsnorm_ref(out, x, w, n, eps);
}

void slm_swiglu(float *gate, const float *up, int n) {
#if defined(__x86_64__)
    const int lv = simd_level();
    if (lv == 2) {
        slm_swiglu_avx512(gate, up, n);
        return;
    }
    if (lv == 1) {
        slm_swiglu_avx2(gate, up, n);
        return;
    }
#endif
    slm_swiglu_ref(gate, up, n);
}

void slm_rmsnorm_ref(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void slm_rope_table(float *cos_t, float *sin_t, int rope_dim, float pos, float base) {
    for (int i = 0; i < rope_dim / 2; i++) {
        double inv = pow((double)base, -2.0 * i / rope_dim);
        double a = (double)pos * inv;
        cos_t[i] = (float)cos(a);
        sin_t[i] = (float)sin(a);
    }
}

void slm_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t, const float *sin_t, int neox) {
    int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * cos_t[i] - x1 * sin_t[i];
            x[b] = x0 * sin_t[i] + x1 * cos_t[i];
        }
    }
}

void slm_softmax(float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void slm_swiglu_ref(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
