/* Scalar pooling kernels (the twins of pool_avx2.c) and the average-pooling kernel. */
#include <math.h>
#include <string.h>
#include "pool/pool.h"

static void max_pool_scalar(const fq_pool_geometry *g, const uint8_t *x, uint8_t *y) {
    int32_t c = g->channels;
    for (int32_t n = 0; n < g->batch; n++)
        for (int32_t oh = 0; oh < g->out_h; oh++)
            for (int32_t ow = 0; ow < g->out_w; ow++) {
                uint8_t *o = y + (((size_t)n * g->out_h + oh) * g->out_w + ow) * c;
                memset(o, 0, (size_t)c);
                for (int32_t i = 0; i < g->k_h; i++) {
                    int32_t h = oh * g->stride_h - g->pad_h + i * g->dil_h;
                    if (h < 0 || h >= g->in_h) continue;
                    for (int32_t j = 0; j < g->k_w; j++) {
                        int32_t w = ow * g->stride_w - g->pad_w + j * g->dil_w;
                        if (w < 0 || w >= g->in_w) continue;
                        const uint8_t *s = x + (((size_t)n * g->in_h + h) * g->in_w + w) * c;
                        for (int32_t k = 0; k < c; k++) o[k] = s[k] > o[k] ? s[k] : o[k];
                    }
                }
            }
}

static void plane_sums_scalar(const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums) {
    for (int64_t p = 0; p < planes; p++) {
        uint32_t s = 0;
        for (int64_t i = 0; i < hw; i++) s += x[p * hw + i];
        sums[p] = (int32_t)s;
    }
}

static const fq_pool_kernels scalar_pool = {"scalar", max_pool_scalar, plane_sums_scalar};
const fq_pool_kernels *fq_pool_kernels_scalar(void) { return &scalar_pool; }

void fq_avg_pool_nchw(const uint8_t *x, int64_t planes, int32_t in_h, int32_t in_w,
                      const int32_t *h0, const int32_t *h1, int32_t out_h,
                      const int32_t *w0, const int32_t *w1, int32_t out_w,
                      int32_t x_zero_point, const float *mult, int32_t y_zero_point, uint8_t y_xor,
                      void *out) {
    for (int64_t p = 0; p < planes; p++) {
        const uint8_t *xp = x + p * (int64_t)in_h * in_w;
        for (int32_t oh = 0; oh < out_h; oh++)
            for (int32_t ow = 0; ow < out_w; ow++) {
                int32_t s = 0;
                for (int32_t h = h0[oh]; h < h1[oh]; h++)
                    for (int32_t w = w0[ow]; w < w1[ow]; w++) s += xp[(size_t)h * in_w + w];
                int32_t size = (h1[oh] - h0[oh]) * (w1[ow] - w0[ow]);
                int32_t d = s - size * x_zero_point;
                size_t o = (size_t)p * out_h * out_w + (size_t)oh * out_w + ow;
                if (!mult) {
                    ((int32_t *)out)[o] = d;
                    continue;
                }
                /* torch's quantize step adds the zero point in float before rounding, so an
                 * exact .5 mean rounds to even in zy + mean, not in the mean alone */
                float r = nearbyintf((float)d * mult[(size_t)oh * out_w + ow] + (float)y_zero_point);
                /* clamp in float first so the int conversion is defined */
                if (!(r >= -1e6f)) r = -1e6f;
                if (r > 1e6f) r = 1e6f;
                int32_t q = (int32_t)r;
                q = q < 0 ? 0 : q > 255 ? 255 : q;
                ((uint8_t *)out)[o] = (uint8_t)q ^ y_xor;
            }
    }
}
