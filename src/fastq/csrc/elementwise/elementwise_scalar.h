/* Element access and rounding shared by the scalar loops (elementwise_scalar.c). */
#ifndef FASTQ_ELEMENTWISE_SCALAR_H
#define FASTQ_ELEMENTWISE_SCALAR_H
#include <math.h>
#include <stdint.h>

static inline int32_t fq_ew_load(const void *p, int64_t i, int is_signed) {
    return is_signed ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline void fq_ew_store(void *p, int64_t i, int32_t v, int is_signed) {
    if (is_signed) ((int8_t *)p)[i] = (int8_t)v; else ((uint8_t *)p)[i] = (uint8_t)v;
}

/* float -> int32 like cvtps / lrintf after clipping into int32 range (NaN never reaches here:
 * the inputs are finite sums of dequantized values). */
static inline int32_t fq_ew_rne_clip(float t) {
    if (t > 2147483520.0f) t = 2147483520.0f;
    if (t < -2147483648.0f) t = -2147483648.0f;
    return (int32_t)nearbyintf(t);
}

static inline int32_t fq_ew_clamp(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}
#endif
