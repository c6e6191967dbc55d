/* Elementwise quantized add / mul: the scalar loops (the scalar backend's kernels and the
 * tails of the SIMD bodies of elementwise_avx2.c). Compiled with -ffp-contract=off: the only
 * fused multiply-add is the explicit fmaf (a libm call, or one instruction, both exact). */
#include <math.h>
#include "elementwise/elementwise.h"
#include "elementwise/elementwise_scalar.h"

void fq_qadd_fbgemm_scalar(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                           float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                           float inv_scale, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    const float a_premul = a_scale * -(float)a_zero_point;
    const float b_premul = b_scale * -(float)b_zero_point;
    int64_t i = 0;
    if (n_vec > n) n_vec = n;
    for (; i < n_vec; i++) {     /* torch's vectorized body, one lane at a time */
        float c = fmaf(a_scale, (float)fq_ew_load(a, i, is_signed), a_premul)
                + fmaf(b_scale, (float)fq_ew_load(b, i, is_signed), b_premul);
        if (relu && !(c >= 0.0f)) c = 0.0f;
        fq_ew_store(y, i, fq_ew_clamp(fq_ew_add_body_q(c * inv_scale, zero_point), qmin, qmax), is_signed);
    }
    for (; i < n; i++) {         /* torch's scalar tail */
        float c = (float)(fq_ew_load(a, i, is_signed) - a_zero_point) * a_scale
                + (float)(fq_ew_load(b, i, is_signed) - b_zero_point) * b_scale;
        if (relu && !(c >= 0.0f)) c = 0.0f;
        fq_ew_store(y, i, fq_ew_clamp(fq_ew_rne_clip((float)zero_point + c * inv_scale), qmin, qmax), is_signed);
    }
}

void fq_qadd_qnnpack_scalar_split(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n, int64_t n_long,
                                  int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                                  uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    /* shift 32..35: QNNPACK's constants come from x86 shifts of count mod 32; the shift of acc
     * is psrad's (sign fill, = 31) on the first n_long elements, sar's (mod 32) after them */
    const int32_t remainder_mask = (int32_t)((UINT32_C(1) << (shift & 31)) - 1u);
    const int32_t remainder_threshold = (int32_t)((uint32_t)remainder_mask >> 1);
    const uint32_t long_shift = shift < 31 ? shift : 31, short_shift = shift & 31;
    for (int64_t i = 0; i < n; i++) {
        int32_t acc = (int32_t)((uint32_t)zero_point_product + (uint32_t)a[i] * a_multiplier
                                + (uint32_t)b[i] * b_multiplier);
        int32_t rem = (acc & remainder_mask) - (int32_t)(acc < 0);
        acc = (acc >> (i < n_long ? long_shift : short_shift)) + (int32_t)(rem > remainder_threshold);
        int32_t v = acc + zero_point;                                  /* >>: arithmetic (gcc) */
        if (v >= y_max) v = y_max;
        if (v <= y_min) v = y_min;
        y[i] = (uint8_t)v;
    }
}

void fq_qadd_qnnpack_scalar(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                            int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                            uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    fq_qadd_qnnpack_scalar_split(a, b, y, n, fq_qnnpack_long_end(n), zero_point_product, a_multiplier,
                                 b_multiplier, shift, zero_point, y_min, y_max);
}

void fq_qmul_scalar(const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
                    int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    const int32_t lo = relu && zero_point > qmin ? zero_point : qmin;
    int64_t i = 0;
    if (n_vec > n) n_vec = n;
    for (; i < n_vec; i++) {     /* torch's vectorized body (RequantizeAvx2: no cap), one lane at a time */
        int32_t c = (fq_ew_load(a, i, is_signed) - a_zero_point) * (fq_ew_load(b, i, is_signed) - b_zero_point);
        int32_t v = fq_ew_wrap_add(fq_ew_cvtps_i32((float)c * multiplier), zero_point);
        fq_ew_store(y, i, fq_ew_clamp(v, lo, qmax), is_signed);
    }
    for (; i < n; i++) {         /* torch's scalar tail: requantize_from_int, zero point + lrintf in int64 */
        int32_t c = (fq_ew_load(a, i, is_signed) - a_zero_point) * (fq_ew_load(b, i, is_signed) - b_zero_point);
        int64_t v = (int64_t)((uint64_t)fq_ew_lrintf_i64((float)c * multiplier) + (uint64_t)(int64_t)zero_point);
        fq_ew_store(y, i, fq_ew_clamp(v, lo, qmax), is_signed);
    }
}

void fq_qclamp_scalar(const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed) {
    for (int64_t i = 0; i < n; i++) {
        int32_t v = fq_ew_load(x, i, is_signed);
        fq_ew_store(y, i, v < lo ? lo : (v > hi ? hi : v), is_signed);
    }
}

static const fq_elementwise_kernels scalar_kernels = {
    "scalar", fq_qadd_fbgemm_scalar, fq_qadd_qnnpack_scalar, fq_qmul_scalar, fq_qclamp_scalar,
};

const fq_elementwise_kernels *fq_elementwise_scalar(void) { return &scalar_kernels; }
