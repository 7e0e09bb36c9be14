/* rng.h - the project's small seedable random numbers: the splitmix64 generator and finalizer,
 * and a normal variate from it (Box-Muller). Deterministic for a seed on every platform. */
#ifndef SLM_RNG_H
#define SLM_RNG_H

#include <math.h>
#include <stdint.h>

/* The splitmix64 finalizer of z + 0x9E3779B97F4A7C15: a well-mixed hash of z. */
static inline uint64_t slm_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The next value of the splitmix64 sequence with state *s. */
static inline uint64_t slm_splitmix64(uint64_t *s) {
    const uint64_t z = slm_mix64(*s);
    *s += 0x9E3779B97F4A7C15ull;
    return z;
}

/* A standard normal variate (Box-Muller over two splitmix64 draws of 53 bits). */
static inline double slm_rng_normal(uint64_t *s) {
    const double u = ((double)(slm_splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
    const double v = (double)(slm_splitmix64(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
