/* Elementwise quantized add / mul: the formulas of elementwise.h, one scalar loop each.
 * Compiled with -ffp-contract=off: the only fused multiply-add is the explicit fmaf. */
#include <math.h>
#include "elementwise.h"

static inline int32_t load_q(const void *p, int64_t i, int is_signed) {
    return is_signed ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline void store_q(void *p, int64_t i, int32_t v, int is_signed) {
    if (is_signed) ((int8_t *)p)[i] = (int8_t)v; else ((uint8_t *)p)[i] = (uint8_t)v;
}

/* float -> int32 like cvtps / lrintf after clipping into int32 range (NaN never reaches here:
 * the inputs are finite sums of dequantized values). */
static inline int32_t rne_clip(float t) {
    if (t > 2147483520.0f) t = 2147483520.0f;
    if (t < -2147483648.0f) t = -2147483648.0f;
    return (int32_t)nearbyintf(t);
}

static inline int32_t clamp_i32(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("fma")))
static float fma_hw(float x, float y, float z) { return __builtin_fmaf(x, y, z); }
#endif

void fastq_qadd_fbgemm(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                       float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                       float inv_scale, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    const float a_premul = a_scale * -(float)a_zero_point;
    const float b_premul = b_scale * -(float)b_zero_point;
    int64_t i = 0;
    if (n_vec > n) n_vec = n;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (__builtin_cpu_supports("fma")) {
        for (; i < n_vec; i++) {
            float c = fma_hw(a_scale, (float)load_q(a, i, is_signed), a_premul)
                    + fma_hw(b_scale, (float)load_q(b, i, is_signed), b_premul);
            if (relu && !(c >= 0.0f)) c = 0.0f;
            store_q(y, i, clamp_i32((int64_t)rne_clip(c * inv_scale) + zero_point, qmin, qmax), is_signed);
        }
    }
#endif
    for (; i < n_vec; i++) {
        float c = fmaf(a_scale, (float)load_q(a, i, is_signed), a_premul)
                + fmaf(b_scale, (float)load_q(b, i, is_signed), b_premul);
        if (relu && !(c >= 0.0f)) c = 0.0f;
        store_q(y, i, clamp_i32((int64_t)rne_clip(c * inv_scale) + zero_point, qmin, qmax), is_signed);
    }
    for (; i < n; i++) {
        float c = (float)(load_q(a, i, is_signed) - a_zero_point) * a_scale
                + (float)(load_q(b, i, is_signed) - b_zero_point) * b_scale;
        if (relu && !(c >= 0.0f)) c = 0.0f;
        store_q(y, i, clamp_i32(rne_clip((float)zero_point + c * inv_scale), qmin, qmax), is_signed);
    }
}

void fastq_qadd_qnnpack(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                        int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                        uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    const int32_t remainder_mask = (int32_t)((UINT32_C(1) << shift) - 1u);
    const int32_t remainder_threshold = (int32_t)((uint32_t)remainder_mask >> 1);
    for (int64_t i = 0; i < n; i++) {
        int32_t acc = (int32_t)((uint32_t)zero_point_product + (uint32_t)a[i] * a_multiplier
                                + (uint32_t)b[i] * b_multiplier);
        int32_t rem = (acc & remainder_mask) - (int32_t)(acc < 0);
        acc = (acc >> shift) + (int32_t)(rem > remainder_threshold);   /* arithmetic shift (gcc) */
        int32_t v = acc + zero_point;
        if (v >= y_max) v = y_max;
        if (v <= y_min) v = y_min;
        y[i] = (uint8_t)v;
    }
}

void fastq_qmul(const void *a, const void *b, void *y, int64_t n, int32_t a_zero_point,
                int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    const int32_t lo = relu && zero_point > qmin ? zero_point : qmin;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = (load_q(a, i, is_signed) - a_zero_point) * (load_q(b, i, is_signed) - b_zero_point);
        int64_t v = (int64_t)rne_clip((float)c * multiplier) + zero_point;
        store_q(y, i, clamp_i32(v, lo, qmax), is_signed);
    }
}
