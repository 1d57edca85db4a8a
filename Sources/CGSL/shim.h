#ifndef PAYSTORM_CGSL_SHIM_H
#define PAYSTORM_CGSL_SHIM_H

#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_statistics_double.h>
#include <gsl/gsl_sort_double.h>
#include <gsl/gsl_sf_gamma.h>
#include <gsl/gsl_math.h>

/// Swift 6 treats imported mutable C globals as shared mutable state; these
/// accessors hand out the (never-written) generator descriptors instead.
static inline const gsl_rng_type *paystorm_gsl_rng_mt19937(void) { return gsl_rng_mt19937; }

/// Seeds GSL's MT19937 with Matsumoto and Nishimura's `init_by_array`
/// (mt19937ar.c), so a 64-bit seed (two 32-bit keys) selects the stream
/// instead of the 32 bits `gsl_rng_set` keeps. Writes the state layout of
/// GSL's mt.c: `unsigned long mt[624]; int mti;`.
/// Returns 0 on success, -1 if `r` is not an MT19937 generator.
static inline int paystorm_mt19937_init_by_array(gsl_rng *r, const unsigned long *keys, int length) {
    if (r->type != gsl_rng_mt19937 || length < 1) return -1;
    typedef struct { unsigned long mt[624]; int mti; } paystorm_mt_state;
    paystorm_mt_state *state = (paystorm_mt_state *)r->state;
    unsigned long *mt = state->mt;
    const int n = 624;
    mt[0] = 19650218UL;
    for (int j = 1; j < n; j++) {
        mt[j] = (1812433253UL * (mt[j - 1] ^ (mt[j - 1] >> 30)) + (unsigned long)j) & 0xffffffffUL;
    }
    int i = 1, j = 0;
    for (int k = (n > length ? n : length); k; k--) {
        mt[i] = ((mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525UL)) + keys[j] + (unsigned long)j) & 0xffffffffUL;
        i++; j++;
        if (i >= n) { mt[0] = mt[n - 1]; i = 1; }
        if (j >= length) j = 0;
    }
    for (int k = n - 1; k; k--) {
        mt[i] = ((mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941UL)) - (unsigned long)i) & 0xffffffffUL;
        i++;
        if (i >= n) { mt[0] = mt[n - 1]; i = 1; }
    }
    mt[0] = 0x80000000UL;
    state->mti = n;
    return 0;
}

#endif
