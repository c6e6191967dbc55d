/* Pooling kernels on uint8 terms (int8 values are stored as x ^ 0x80 by the callers' layout
 * step, or handled by x_xor; max and sums commute with that map up to the zero-point shift).
 *   max:      NHWC, vector across channels (any kernel, stride, padding, dilation, ceil_mode:
 *             the window is clipped to the input, padding never wins: torch pads with -inf)
 *   average:  NCHW plane by plane over windows given as clipped index ranges, so average
 *             pooling (padding, ceil_mode, count_include_pad, divisor_override) and adaptive
 *             average pooling are one kernel; torch's rounding is the caller's multiplier array
 *   sums:     NCHW, the sum of each plane (global average pooling / mean over H, W)
 */
#ifndef FASTQ_POOL_H
#define FASTQ_POOL_H
#include <stddef.h>
#include <stdint.h>
#include "fastq.h"

typedef struct {
    int32_t batch, channels, in_h, in_w, out_h, out_w;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
} fq_pool_geometry;

/* y[n, oh, ow, c] = max over the window's in-bounds taps of x[n, h, w, c] (NHWC bytes). Every
 * window must hold at least one in-bounds tap (torch's shape rules guarantee it). */
typedef void (*fq_max_pool_fn)(const fq_pool_geometry *g, const uint8_t *x, uint8_t *y);
/* sums[p] = sum of plane p (hw bytes), p < planes; exact in int32 for hw < 2^23 */
typedef void (*fq_plane_sums_fn)(const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums);

/* The pool family's kernels of one ISA (a field of fq_kernels, runtime/backends.c). */
typedef struct fq_pool_kernels {
    const char *name;
    fq_max_pool_fn max_pool_nhwc;
    fq_plane_sums_fn plane_sums;
} fq_pool_kernels;
const fq_pool_kernels *fq_pool_kernels_scalar(void);
const fq_pool_kernels *fq_pool_kernels_avx2(void);    /* defined where FQ_COMPILE_AVX2 */

/* The public calls (pool_entry.c): isa -1 the current backend, or a backend id to force its
 * pool kernels (tests; scalar when they cannot run here); each run counts under the family. */
void fq_max_pool_nhwc(int isa, const fq_pool_geometry *g, const uint8_t *x, uint8_t *y);
void fq_plane_sums(int isa, const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums);

/* Average over windows: for output (oh, ow) the in-bounds rows [h0[oh], h1[oh]) and columns
 * [w0[ow], w1[ow]); d = sum(x) - size * x_zero_point (x, zx in uint8 terms, size the number of
 * in-bounds taps). mult == NULL: acc[plane, oh, ow] = d (int32 out). Else the byte
 *     q = clamp(rne(f32(f32((float)d * mult[oh * out_w + ow]) + (float)y_zero_point)), 0, 255) ^ y_xor
 * (the zero point joins in float before the rounding, as torch's quantize step does)
 * (rne: round half to even, as lrintf / nearbyint in the default mode). */
void fq_avg_pool_nchw(const uint8_t *x, int64_t planes, int32_t in_h, int32_t in_w,
                      const int32_t *h0, const int32_t *h1, int32_t out_h,
                      const int32_t *w0, const int32_t *w1, int32_t out_w,
                      int32_t x_zero_point, const float *mult, int32_t y_zero_point, uint8_t y_xor,
                      void *out);
#endif
