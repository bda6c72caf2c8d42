/* Elementwise kernels of pyce.nn's activations (ELU, ReLU); see pyce_nn_kernels.c. */
#ifndef PYCE_NN_KERNELS_H
#define PYCE_NN_KERNELS_H

#include <stdint.h>

void pyce_elu_fwd_f32(const float *x, float *y, int64_t n, float alpha);
void pyce_elu_fwd_f64(const double *x, double *y, int64_t n, double alpha);
void pyce_elu_bwd_f32(const float *x, const float *y, const float *g, float *dx,
                      int64_t n, float alpha);
void pyce_elu_bwd_f64(const double *x, const double *y, const double *g, double *dx,
                      int64_t n, double alpha);
void pyce_relu_bwd_f32(const float *y, const float *g, float *dx, int64_t n);
void pyce_relu_bwd_f64(const double *y, const double *g, double *dx, int64_t n);
void pyce_expm1_f32(const float *x, float *y, int64_t n);
void pyce_expm1_f64(const double *x, double *y, int64_t n);

#endif
