/* Rows of the GEMM's A matrix: row m = output pixel (n, oh, ow), k = (kh, kw, c) over the
 * group's channels, read from the zero-point-padded NHWC buffer (no bounds tests). */
#include <string.h>
#include "conv/conv.h"

/* A short run (e.g. 3 taps x 3 channels = 9 bytes) is a fixed 16- or 32-byte move rather than
 * a memcpy call per run: the bytes past n land where the next run or row is written next (the
 * column buffer has 64 bytes of slack), and the padded buffer's slack covers the over-read. */
static inline void copy_run(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n <= 16) memcpy(dst, src, 16);
    else if (n <= 32) memcpy(dst, src, 32);
    else memcpy(dst, src, n);
}

void fq_im2col(const fq_conv_geometry *g, const uint8_t *xp, int32_t group, int64_t m0, int64_t m1,
               uint8_t *col) {
    int32_t hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t cg = g->in_c / g->groups;
    size_t k = (size_t)g->k_h * g->k_w * cg;
    int64_t ohw = (int64_t)g->out_h * g->out_w;
    for (int64_t m = m0; m < m1; m++) {
        int32_t n = (int32_t)(m / ohw);
        int32_t oh = (int32_t)(m % ohw / g->out_w), ow = (int32_t)(m % g->out_w);
        uint8_t *dst = col + (size_t)(m - m0) * k;
        for (int32_t kh = 0; kh < g->k_h; kh++) {
            const uint8_t *src = xp + (((size_t)n * hp + (size_t)oh * g->stride_h + (size_t)kh * g->dil_h) * wp +
                                       (size_t)ow * g->stride_w) * g->in_c + (size_t)group * cg;
            if (g->dil_w == 1 && g->groups == 1) {
                /* the kw taps of one kh are contiguous in NHWC */
                copy_run(dst, src, (size_t)g->k_w * cg);
                dst += (size_t)g->k_w * cg;
                continue;
            }
            for (int32_t kw = 0; kw < g->k_w; kw++) {
                const uint8_t *s = src + (size_t)kw * g->dil_w * g->in_c;
                if (cg == 1) *dst = *s;
                else memcpy(dst, s, (size_t)cg);
                dst += cg;
            }
        }
    }
}
