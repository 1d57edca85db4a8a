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

#endif
