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


#include <gsl/gsl_multifit_nlinear.h>
#include <gsl/gsl_blas.h>

/// The Universal Scalability Law, X(N) = λN / (1 + σ(N−1) + κN(N−1)),
/// fitted to (N, X) points by GSL's trust-region nonlinear least squares.
typedef struct { const double *n; const double *x; size_t count; } paystorm_usl_data;

static int paystorm_usl_f(const gsl_vector *p, void *context, gsl_vector *f) {
    const paystorm_usl_data *d = (const paystorm_usl_data *)context;
    const double lambda = gsl_vector_get(p, 0), sigma = gsl_vector_get(p, 1), kappa = gsl_vector_get(p, 2);
    for (size_t i = 0; i < d->count; i++) {
        const double n = d->n[i];
        gsl_vector_set(f, i, lambda * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)) - d->x[i]);
    }
    return GSL_SUCCESS;
}

static int paystorm_usl_df(const gsl_vector *p, void *context, gsl_matrix *J) {
    const paystorm_usl_data *d = (const paystorm_usl_data *)context;
    const double lambda = gsl_vector_get(p, 0), sigma = gsl_vector_get(p, 1), kappa = gsl_vector_get(p, 2);
    for (size_t i = 0; i < d->count; i++) {
        const double n = d->n[i];
        const double denominator = 1 + sigma * (n - 1) + kappa * n * (n - 1);
        gsl_matrix_set(J, i, 0, n / denominator);
        gsl_matrix_set(J, i, 1, -lambda * n * (n - 1) / (denominator * denominator));
        gsl_matrix_set(J, i, 2, -lambda * n * n * (n - 1) / (denominator * denominator));
    }
    return GSL_SUCCESS;
}

/// Fits λ, σ, κ (in/out: `parameters`, the initial guess going in). Writes
/// the 3×3 covariance (unscaled, row-major) and χ². Returns a GSL status.
static inline int paystorm_usl_fit(const double *n, const double *x, size_t count, double parameters[3],
                                   double covariance[9], double *chisq, size_t *iterations) {
    if (count < 3) return GSL_EINVAL;
    paystorm_usl_data data = { n, x, count };
    gsl_multifit_nlinear_fdf fdf;
    fdf.f = paystorm_usl_f;
    fdf.df = paystorm_usl_df;
    fdf.fvv = NULL;
    fdf.n = count;
    fdf.p = 3;
    fdf.params = &data;
    gsl_multifit_nlinear_parameters settings = gsl_multifit_nlinear_default_parameters();
    gsl_multifit_nlinear_workspace *w = gsl_multifit_nlinear_alloc(gsl_multifit_nlinear_trust, &settings, count, 3);
    if (w == NULL) return GSL_ENOMEM;
    gsl_vector_view start = gsl_vector_view_array(parameters, 3);
    int status = gsl_multifit_nlinear_init(&start.vector, &fdf, w);
    int info = 0;
    if (status == GSL_SUCCESS) status = gsl_multifit_nlinear_driver(500, 1e-10, 1e-10, 1e-10, NULL, NULL, &info, w);
    if (status == GSL_SUCCESS) {
        gsl_vector *result = gsl_multifit_nlinear_position(w);
        for (int i = 0; i < 3; i++) parameters[i] = gsl_vector_get(result, i);
        gsl_matrix *J = gsl_multifit_nlinear_jac(w);
        gsl_matrix_view cov = gsl_matrix_view_array(covariance, 3, 3);
        status = gsl_multifit_nlinear_covar(J, 0.0, &cov.matrix);
        gsl_vector *residual = gsl_multifit_nlinear_residual(w);
        gsl_blas_ddot(residual, residual, chisq);
        *iterations = gsl_multifit_nlinear_niter(w);
    }
    gsl_multifit_nlinear_free(w);
    return status;
}

#endif
