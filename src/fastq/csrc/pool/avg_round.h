/* Average pooling with torch's rounding of each path, in one pass over a strided input.
 *
 * One kernel serves AvgPool (every path), AdaptiveAvgPool (every path) and the integer paths
 * of the mean over H, W: they differ only in their windows, in whether the zero point is
 * subtracted from the sums, and in how a window's sum d becomes the output integer:
 *     MUL:  v = f32(f32(f32(d) * m) + zp_before)
 *     FMA:  v = f32(f32(d) * m + zp_before)        (one rounding, as fmaf)
 *     DIV:  v = f32(f32(f32(d) / m) + zp_before)
 *     q   = clamp(rne(v) + zp_after, qmin, qmax)
 * m is per window. Channels below `split` take rule[0], the others rule[1] (torch's
 * channels-last kernels round their vector body and scalar tail differently).
 * x is read through element strides, so a contiguous NCHW input and the channels-last view a
 * convolution returns are both read in place; y is written NCHW or NHWC (y_channels_last). */
#ifndef FASTQ_AVG_ROUND_H
#define FASTQ_AVG_ROUND_H
#include <stdint.h>

enum { FQ_AVG_MUL = 0, FQ_AVG_FMA = 1, FQ_AVG_DIV = 2 };

typedef struct {
    int32_t op;
    const float *m;           /* [out_h * out_w] */
    float zp_before;
    int32_t zp_after;
} fq_avg_rule;

typedef struct {
    int32_t batch, channels, in_h, in_w, out_h, out_w;
    int64_t x_stride_n, x_stride_c, x_stride_h, x_stride_w;     /* in elements */
    const int32_t *h0, *h1, *w0, *w1;     /* window (oh, ow): rows [h0, h1), columns [w0, w1) */
    int32_t x_signed;                     /* int8 values, else uint8 */
    int32_t x_zero_point;                 /* d = sum(x) - taps * x_zero_point */
    int32_t qmin, qmax;
    int32_t split;
    fq_avg_rule rule[2];
    int32_t y_channels_last;
} fq_avg_pool_plan;

/* y: int8 / uint8 as x. Sums are exact in int32 for windows of fewer than 2^23 taps. */
void fq_avg_pool_rounded(const fq_avg_pool_plan *p, const void *x, void *y);
#endif
