/* fq_avg_pool_rounded (avg_round.h): window sums, then torch's rounding of the path. */
#include <math.h>
#include <stddef.h>
#include "pool/avg_round.h"

static int32_t round_one(const fq_avg_rule *r, int32_t d, size_t win, int32_t qmin, int32_t qmax) {
    float m = r->m[win], v;
    if (r->op == FQ_AVG_FMA) {
        /* the exact product of two 24-bit significands plus a small integer fits a double's
         * 53 bits, so this rounds once, as fmaf */
        v = (float)((double)(float)d * (double)m + (double)r->zp_before);
    } else {
        float t = r->op == FQ_AVG_DIV ? (float)d / m : (float)d * m;
        v = t + r->zp_before;
    }
    float q = nearbyintf(v);
    /* clamp in float first so the conversion is defined (a window of no taps: 0 * inf) */
    if (!(q >= -1e6f)) q = -1e6f;
    if (q > 1e6f) q = 1e6f;
    int32_t i = (int32_t)q + r->zp_after;
    return i < qmin ? qmin : i > qmax ? qmax : i;
}

#define CHANNEL_BLOCK 256

/* channels contiguous (x_stride_c == 1): each tap adds a row of channels into A (int16
 * while the window has at most 256 taps, where no sum of bytes leaves it: half the vector work) */
#define SUM_ROWS(T, A)                                                                           \
    for (int32_t h = p->h0[oh]; h < p->h1[oh]; h++)                                             \
        for (int32_t w = p->w0[ow]; w < p->w1[ow]; w++) {                                       \
            const T *s = (const T *)x + base + h * p->x_stride_h + w * p->x_stride_w;            \
            for (int32_t c = 0; c < nc; c++) A[c] += s[c];                                       \
        }

/* any strides: one window of one channel */
#define SUM_WINDOW(T)                                                                            \
    for (int32_t h = p->h0[oh]; h < p->h1[oh]; h++)                                             \
        for (int32_t w = p->w0[ow]; w < p->w1[ow]; w++)                                         \
            s += ((const T *)x)[base + h * p->x_stride_h + w * p->x_stride_w];

static void store(const fq_avg_pool_plan *p, void *y, int32_t n, int32_t c, int32_t oh, int32_t ow,
                  int32_t q) {
    size_t o = p->y_channels_last
        ? (((size_t)n * p->out_h + oh) * p->out_w + ow) * p->channels + c
        : (((size_t)n * p->channels + c) * p->out_h + oh) * p->out_w + ow;
    if (p->x_signed) ((int8_t *)y)[o] = (int8_t)q;
    else ((uint8_t *)y)[o] = (uint8_t)q;
}

void fq_avg_pool_rounded(const fq_avg_pool_plan *p, const void *x, void *y) {
    int32_t acc[CHANNEL_BLOCK];
    uint16_t acc_u16[CHANNEL_BLOCK];
    int16_t acc_i16[CHANNEL_BLOCK];
    for (int32_t n = 0; n < p->batch; n++)
        for (int32_t oh = 0; oh < p->out_h; oh++)
            for (int32_t ow = 0; ow < p->out_w; ow++) {
                size_t win = (size_t)oh * p->out_w + ow;
                int32_t rows = p->h1[oh] - p->h0[oh], cols = p->w1[ow] - p->w0[ow];
                int32_t taps = rows > 0 && cols > 0 ? rows * cols : 0;
                int32_t zsum = taps * p->x_zero_point;
                if (p->x_stride_c == 1) {
                    for (int32_t c0 = 0; c0 < p->channels; c0 += CHANNEL_BLOCK) {
                        int32_t nc = p->channels - c0 < CHANNEL_BLOCK ? p->channels - c0 : CHANNEL_BLOCK;
                        int64_t base = n * p->x_stride_n + c0;
                        if (taps <= 256 && p->x_signed) {
                            for (int32_t c = 0; c < nc; c++) acc_i16[c] = 0;
                            SUM_ROWS(int8_t, acc_i16)
                            for (int32_t c = 0; c < nc; c++) acc[c] = acc_i16[c];
                        } else if (taps <= 256) {
                            for (int32_t c = 0; c < nc; c++) acc_u16[c] = 0;
                            SUM_ROWS(uint8_t, acc_u16)
                            for (int32_t c = 0; c < nc; c++) acc[c] = acc_u16[c];
                        } else {
                            for (int32_t c = 0; c < nc; c++) acc[c] = 0;
                            if (p->x_signed) { SUM_ROWS(int8_t, acc) } else { SUM_ROWS(uint8_t, acc) }
                        }
                        for (int32_t c = 0; c < nc; c++) {
                            const fq_avg_rule *r = &p->rule[c0 + c < p->split ? 0 : 1];
                            store(p, y, n, c0 + c, oh, ow, round_one(r, acc[c] - zsum, win, p->qmin, p->qmax));
                        }
                    }
                } else {
                    for (int32_t c = 0; c < p->channels; c++) {
                        int64_t base = n * p->x_stride_n + c * p->x_stride_c;
                        int32_t s = 0;
                        if (p->x_signed) { SUM_WINDOW(int8_t) } else { SUM_WINDOW(uint8_t) }
                        const fq_avg_rule *r = &p->rule[c < p->split ? 0 : 1];
                        store(p, y, n, c, oh, ow, round_one(r, s - zsum, win, p->qmin, p->qmax));
                    }
                }
            }
}
