/* float32 -> uint8 / int8 quantization with torch's rounding (SPEC section 5):
 * one fused multiply-add, then round half to even, then clamp. */
#include <math.h>
#include "fastq.h"

static inline int32_t quantize_one(float x, float inv_scale, float zero_point,
                                   int32_t qmin, int32_t qmax) {
    float t = fmaf(x, inv_scale, zero_point);           /* one rounding */
    /* torch: min(t, 2147483520.0f); NaN compares false and becomes the cap, hence qmax */
    if (!(t <= 2147483520.0f)) t = 2147483520.0f;
    float r = nearbyintf(t);                             /* half to even */
    if (r < (float)qmin) return qmin;
    if (r > (float)qmax) return qmax;
    return (int32_t)r;
}

void fq_quantize_u8(const float *x, int64_t n, float inv_scale, float zero_point,
                    int32_t qmin, int32_t qmax, uint8_t *q) {
    for (int64_t i = 0; i < n; i++) q[i] = (uint8_t)quantize_one(x[i], inv_scale, zero_point, qmin, qmax);
}

void fq_quantize_s8(const float *x, int64_t n, float inv_scale, float zero_point,
                    int32_t qmin, int32_t qmax, int8_t *q) {
    for (int64_t i = 0; i < n; i++) q[i] = (int8_t)quantize_one(x[i], inv_scale, zero_point, qmin, qmax);
}
