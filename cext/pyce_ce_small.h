/*
 * Fused softmax cross-entropy for few classes (C <= 16), vectorized across
 * rows with in-register transposes: cext/pyce_ce_small.c (design note there).
 *
 * Narrow interface: the kernel's block function (pyce_loss_template.h,
 * pyce_ce_block) offers every block of rows here first; a call returns 1 when
 * it computed rows [i0, i1) -- gradient, per-row losses and *loss_sum, the
 * sum of the per-row losses in row order, in double -- and 0, touching
 * nothing, when it does not handle the case (then the existing paths run).
 */
#ifndef PYCE_CE_SMALL_H
#define PYCE_CE_SMALL_H

#include <stdint.h>
#include "pyce_loss_kernels.h"

int pyce_ce_small_f32(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum);
int pyce_ce_small_f64(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum);

/* Rows of at least 1 MiB (cext/pyce_ce_online.c): the forward in one sweep with
 * a running maximum, the fused call in segments of 1024 elements (each row read
 * from memory once); same contract as pyce_ce_small_*. */
int pyce_ce_online_f32(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum);
int pyce_ce_online_f64(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum);

/* 0 when PYCE_SMALL_ISA=none turns both fast paths off (A/B benchmarks, tests). */
int pyce_fast_paths_enabled(void);

/* Which implementation pyce_ce_small_* uses on this CPU (for show_config and
 * tests): "avx512", "avx2" or "none" (the existing lanes path runs). */
const char *pyce_ce_small_isa(void);

/* The float32 AVX-512 path's exp and log1p (pyce_exp.h) on arrays, for tests:
 * 1, or 0 without AVX-512 (nothing written). */
int pyce_expneg_x16_array_f32(const float *x, float *out, int64_t n);
int pyce_log1p_x16_array_f32(const float *x, float *out, int64_t n);
/* The AVX2 path's exp and log1p (pyce_exp.h): 1, or 0 without AVX2 and FMA. */
int pyce_expneg_x8_array_f32(const float *x, float *out, int64_t n);
int pyce_log1p_x8_array_f32(const float *x, float *out, int64_t n);
/* The float64 AVX-512 path's exp and log1p: 1, or 0 without AVX-512. */
int pyce_expneg_x8_array_f64(const double *x, double *out, int64_t n);
int pyce_log1p_x8_array_f64(const double *x, double *out, int64_t n);
/* The float64 AVX2 path's: 1, or 0 without AVX2 and FMA. */
int pyce_expneg_x4_array_f64(const double *x, double *out, int64_t n);
int pyce_log1p_x4_array_f64(const double *x, double *out, int64_t n);

#endif /* PYCE_CE_SMALL_H */
