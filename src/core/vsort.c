/* vsort.c - radix sort of (value, weight) points (see vsort.h). */
#include "vsort.h"

#include <string.h>

/* Key of a float whose unsigned order is the float order (-0 just below +0). */
static uint32_t order_key(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

void slm_vw_sort(slm_vw *a, slm_vw *tmp, int64_t n) {
    slm_vw *src = a, *dst = tmp;
    for (int pass = 0; pass < 3; pass++) { /* three passes of 11 bits */
        const int shift = 11 * pass;
        int64_t count[2048] = {0};
        for (int64_t i = 0; i < n; i++) count[(order_key(src[i].v) >> shift) & 2047]++;
        int64_t sum = 0;
        for (int b = 0; b < 2048; b++) {
            const int64_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) dst[count[(order_key(src[i].v) >> shift) & 2047]++] = src[i];
        slm_vw *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

int64_t slm_vw_lower_bound(const slm_vw *a, int64_t n, double v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        const int64_t m = lo + (hi - lo) / 2;
        if ((double)a[m].v < v) lo = m + 1;
        else hi = m;
    }
    return lo;
}
