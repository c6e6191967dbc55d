/* Internal: one table of float <-> uint8 / int8 conversion kernels per ISA (quantize.c picks
 * one from the current backend). Formulas: fastq.h, docs/ARITHMETIC.md §10. */
#ifndef FASTQ_CONVERT_H
#define FASTQ_CONVERT_H

#include "fastq.h"

typedef struct fq_convert_kernels {
    const char *name;
    /* q = clamp(rne(fmaf(x, inv_scale, zero_point)), qmin, qmax), NaN -> qmax; one byte
     * store serves both signs (q is in range, so its low byte is the uint8 / int8 value) */
    void (*quantize)(const float *x, int64_t n, float inv_scale, float zero_point,
                     int32_t qmin, int32_t qmax, uint8_t *q);
    /* x = f32((float)(q - zero_point) * scale) */
    void (*dequantize_u8)(const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x);
    void (*dequantize_s8)(const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x);
    /* min and max of x[0..n) (n >= 1); returns 0 when some x is NaN or inf (min / max are
     * then unspecified), 1 otherwise */
    int (*minmax)(const float *x, int64_t n, float *min_out, float *max_out);
} fq_convert_kernels;

const fq_convert_kernels *fq_convert_scalar(void);
const fq_convert_kernels *fq_convert_avx2(void);      /* NULL when not compiled in */
const fq_convert_kernels *fq_convert_avx512(void);

#endif
