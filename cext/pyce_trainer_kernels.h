/* Trainer kernels: elementwise kernels of pyce.nn (ELU, ReLU, Linear's bias)
   and pyce.optim (SGD, Adam steps); see pyce_trainer_kernels.c. */
#ifndef PYCE_TRAINER_KERNELS_H
#define PYCE_TRAINER_KERNELS_H

#include <stdint.h>

void pyce_elu_fwd_f32(const float *x, float *y, int64_t n, float alpha);
void pyce_elu_fwd_f64(const double *x, double *y, int64_t n, double alpha);
void pyce_elu_bwd_f32(const float *x, const float *y, const float *g, float *dx,
                      int64_t n, float alpha);
void pyce_elu_bwd_f64(const double *x, const double *y, const double *g, double *dx,
                      int64_t n, double alpha);
void pyce_relu_fwd_f32(const float *x, float *y, int64_t n);
void pyce_relu_fwd_f64(const double *x, double *y, int64_t n);
void pyce_relu_bwd_f32(const float *y, const float *g, float *dx, int64_t n);
void pyce_relu_bwd_f64(const double *y, const double *g, double *dx, int64_t n);
void pyce_expm1_f32(const float *x, float *y, int64_t n);
void pyce_expm1_f64(const double *x, double *y, int64_t n);

/* In place: p (and buf / m, v) updated from g; see pyce_trainer_kernels.c.
   buf may be NULL when mu == 0; first != 0 on a buffer's first step;
   damp1 = 1 - dampening (nesterov needs damp1 == 1). */
void pyce_sgd_step_f32(float *p, const float *g, float *buf, int64_t n,
                       float lr, float mu, float damp1, float wd, int nesterov, int first);
void pyce_sgd_step_f64(double *p, const double *g, double *buf, int64_t n,
                       double lr, double mu, double damp1, double wd, int nesterov, int first);
/* After a gemm wrote buf = mu*buf + (1 - dampening)*grad: buf += c*p (if c != 0),
   p -= lr*buf. */
void pyce_sgd_apply_f32(float *p, float *buf, int64_t n, float lr, float c);
void pyce_sgd_apply_f64(double *p, double *buf, int64_t n, double lr, double c);
void pyce_adam_step_f32(float *p, const float *g, float *m, float *v, int64_t n,
                        float wd, float w1, float beta2, float w2, float neg_step,
                        float bc2_sqrt, float eps);
void pyce_adam_step_f64(double *p, const double *g, double *m, double *v, int64_t n,
                        double wd, double w1, double beta2, double w2, double neg_step,
                        double bc2_sqrt, double eps);

/* Linear's bias: y[i, :] += b; out = (accumulate ? out : 0) + sum over rows of g. */
void pyce_add_row_bias_f32(float *y, const float *b, int64_t rows, int64_t cols);
void pyce_add_row_bias_f64(double *y, const double *b, int64_t rows, int64_t cols);
void pyce_column_sum_f32(const float *g, float *out, int64_t rows, int64_t cols, int accumulate);
void pyce_column_sum_f64(const double *g, double *out, int64_t rows, int64_t cols,
                         int accumulate);

#endif
