/* NCHW <-> NHWC and the zero-point-padded NHWC input of every convolution. */
#include <string.h>
#include "conv/conv.h"

int fq_conv_geometry_check(fq_conv_geometry *g) {
    if (g->batch < 0 || g->in_c <= 0 || g->in_h <= 0 || g->in_w <= 0 || g->out_c <= 0 || g->groups <= 0 ||
        g->k_h <= 0 || g->k_w <= 0 || g->stride_h <= 0 || g->stride_w <= 0 || g->pad_h < 0 ||
        g->pad_w < 0 || g->dil_h <= 0 || g->dil_w <= 0)
        return -1;
    if (g->in_c % g->groups || g->out_c % g->groups) return -1;
    int64_t span_h = (int64_t)g->dil_h * (g->k_h - 1) + 1, span_w = (int64_t)g->dil_w * (g->k_w - 1) + 1;
    int64_t hp = (int64_t)g->in_h + 2 * (int64_t)g->pad_h, wp = (int64_t)g->in_w + 2 * (int64_t)g->pad_w;
    if (hp < span_h || wp < span_w) return -1;
    int64_t oh = (hp - span_h) / g->stride_h + 1, ow = (wp - span_w) / g->stride_w + 1;
    const int64_t lim = (int64_t)1 << 31;
    int64_t cmax = g->in_c > g->out_c ? g->in_c : g->out_c;
    if ((int64_t)g->batch * hp * wp * cmax >= lim || (int64_t)g->batch * oh * ow * g->out_c >= lim ||
        (int64_t)g->k_h * g->k_w * (g->in_c / g->groups) >= lim)
        return -1;
    g->out_h = (int32_t)oh;
    g->out_w = (int32_t)ow;
    return 0;
}

size_t fq_conv_padded_bytes(const fq_conv_geometry *g, int32_t replicate) {
    size_t hp = (size_t)g->in_h + 2 * (size_t)g->pad_h, wp = (size_t)g->in_w + 2 * (size_t)g->pad_w;
    return (size_t)g->batch * hp * wp * (size_t)g->in_c * (size_t)replicate + FQ_CONV_SLACK;
}

void fq_nchw_to_nhwc_u8(const uint8_t *in, int32_t batch, int64_t hw, int32_t channels, uint8_t x_xor,
                        uint8_t *out) {
    /* blocks of 16 pixels x 16 channels keep both sides in cache lines */
    for (int32_t n = 0; n < batch; n++) {
        const uint8_t *src = in + (size_t)n * hw * channels;
        uint8_t *dst = out + (size_t)n * hw * channels;
        for (int64_t p0 = 0; p0 < hw; p0 += 16) {
            int64_t p1 = p0 + 16 < hw ? p0 + 16 : hw;
            for (int32_t c0 = 0; c0 < channels; c0 += 16) {
                int32_t c1 = c0 + 16 < channels ? c0 + 16 : channels;
                for (int64_t p = p0; p < p1; p++)
                    for (int32_t c = c0; c < c1; c++) dst[p * channels + c] = src[(size_t)c * hw + p] ^ x_xor;
            }
        }
    }
}

void fq_nhwc_to_nchw(const void *in, int32_t batch, int64_t hw, int32_t channels, size_t elem, void *out) {
    for (int32_t n = 0; n < batch; n++) {
        for (int32_t c0 = 0; c0 < channels; c0 += 16) {
            int32_t c1 = c0 + 16 < channels ? c0 + 16 : channels;
            for (int64_t p0 = 0; p0 < hw; p0 += 16) {
                int64_t p1 = p0 + 16 < hw ? p0 + 16 : hw;
                if (elem == 1) {
                    const uint8_t *s = (const uint8_t *)in + (size_t)n * hw * channels;
                    uint8_t *d = (uint8_t *)out + (size_t)n * hw * channels;
                    for (int32_t c = c0; c < c1; c++)
                        for (int64_t p = p0; p < p1; p++) d[(size_t)c * hw + p] = s[p * channels + c];
                } else {
                    const int32_t *s = (const int32_t *)in + (size_t)n * hw * channels;
                    int32_t *d = (int32_t *)out + (size_t)n * hw * channels;
                    for (int32_t c = c0; c < c1; c++)
                        for (int64_t p = p0; p < p1; p++) d[(size_t)c * hw + p] = s[p * channels + c];
                }
            }
        }
    }
}

/* The left and right border of one padded row (pad bytes each side) before its interior is
 * written: up to 64 bytes a fixed-size store, not a memset call (a stem writes 3-byte borders
 * on every row). What the store writes past a border is pad_value too and lands on this
 * row's interior (written next), on later rows (written later), on the bottom border (the
 * pad value already) or in the slack (FQ_CONV_SLACK >= 64): every byte it touches is written
 * again or is meant to hold pad_value. */
static inline void row_borders(uint8_t *left, uint8_t *right, size_t pad, uint8_t pad_value) {
    if (pad == 0) return;
    if (pad <= 16) {
        memset(left, pad_value, 16);
        memset(right, pad_value, 16);
    } else if (pad <= 64) {
        memset(left, pad_value, 64);
        memset(right, pad_value, 64);
    } else {
        memset(left, pad_value, pad);
        memset(right, pad_value, pad);
    }
}

/* One row of a few-channel NCHW input into NHWC (stems: 1 to 4 channels): with C a constant
 * the pixel loop has fixed strides and no channel loop (the general loop below costs over a
 * nanosecond per byte at C = 3). planes = the C input rows, hw apart. */
static inline __attribute__((always_inline)) void row_small_c(uint8_t *dst, const uint8_t *src, size_t hw,
                                                              int32_t in_w, uint8_t x_xor, int32_t C) {
    for (int32_t w = 0; w < in_w; w++)
        for (int32_t c = 0; c < C; c++) dst[(size_t)w * C + c] = src[(size_t)c * hw + w] ^ x_xor;
}

void fq_conv_pad_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                      int32_t replicate, uint8_t *xp) {
    int32_t hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t cx = g->in_c * replicate;
    size_t total = fq_conv_padded_bytes(g, replicate);
    int64_t hw = (int64_t)g->in_h * g->in_w;
    if (g->pad_h == 0 && g->pad_w == 0 && replicate == 1) {
        fq_nchw_to_nhwc_u8(x, g->batch, hw, g->in_c, x_xor, xp);
        memset(xp + total - FQ_CONV_SLACK, pad_value, FQ_CONV_SLACK);
        return;
    }
    memset(xp + total - FQ_CONV_SLACK, pad_value, FQ_CONV_SLACK);
    for (int32_t n = 0; n < g->batch; n++) {
        const uint8_t *src = x + (size_t)n * g->in_c * hw;
        uint8_t *img = xp + (size_t)n * hp * wp * cx;
        /* the border only: the interior is written below */
        memset(img, pad_value, (size_t)g->pad_h * wp * cx);
        memset(img + (size_t)(g->pad_h + g->in_h) * wp * cx, pad_value, (size_t)g->pad_h * wp * cx);
        for (int32_t h = 0; h < g->in_h; h++) {
            uint8_t *row = xp + (((size_t)n * hp + h + g->pad_h) * wp + g->pad_w) * cx;
            row_borders(row - (size_t)g->pad_w * cx, row + (size_t)g->in_w * cx, (size_t)g->pad_w * cx, pad_value);
            if (replicate == 1 && g->in_c <= 4) {
                const uint8_t *plane = src + (size_t)h * g->in_w;
                switch (g->in_c) {
                case 1: row_small_c(row, plane, (size_t)hw, g->in_w, x_xor, 1); break;
                case 2: row_small_c(row, plane, (size_t)hw, g->in_w, x_xor, 2); break;
                case 3: row_small_c(row, plane, (size_t)hw, g->in_w, x_xor, 3); break;
                default: row_small_c(row, plane, (size_t)hw, g->in_w, x_xor, 4); break;
                }
                continue;
            }
            for (int32_t c0 = 0; c0 < g->in_c; c0 += 16) {
                int32_t c1 = c0 + 16 < g->in_c ? c0 + 16 : g->in_c;
                if (replicate == 1) {      /* the common case, without the replica loop */
                    for (int32_t w = 0; w < g->in_w; w++)
                        for (int32_t c = c0; c < c1; c++)
                            row[(size_t)w * cx + c] = src[(size_t)c * hw + (size_t)h * g->in_w + w] ^ x_xor;
                    continue;
                }
                for (int32_t w = 0; w < g->in_w; w++)
                    for (int32_t c = c0; c < c1; c++) {
                        uint8_t v = src[(size_t)c * hw + (size_t)h * g->in_w + w] ^ x_xor;
                        for (int32_t r = 0; r < replicate; r++) row[(size_t)w * cx + c * replicate + r] = v;
                    }
            }
        }
    }
}

void fq_conv_pad_from_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                           int32_t replicate, uint8_t *xp) {
    int32_t hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t cx = g->in_c * replicate;
    size_t total = fq_conv_padded_bytes(g, replicate), row = (size_t)g->in_w * g->in_c;
    if (g->pad_h == 0 && g->pad_w == 0 && replicate == 1 && x_xor == 0) {
        /* the channels-last input is already the buffer's interior: one copy, then the slack */
        memcpy(xp, x, total - FQ_CONV_SLACK);
        memset(xp + total - FQ_CONV_SLACK, pad_value, FQ_CONV_SLACK);
        return;
    }
    /* only the border rows / columns and the slack get the pad value (the interior is written) */
    for (int32_t n = 0; n < g->batch; n++) {
        uint8_t *img = xp + (size_t)n * hp * wp * cx;
        memset(img, pad_value, (size_t)g->pad_h * wp * cx);
        memset(img + (size_t)(g->pad_h + g->in_h) * wp * cx, pad_value, (size_t)g->pad_h * wp * cx);
        for (int32_t h = 0; h < g->in_h; h++) {
            uint8_t *dst = img + ((size_t)(h + g->pad_h) * wp) * cx;
            const uint8_t *src = x + ((size_t)n * g->in_h + h) * row;
            row_borders(dst, dst + (size_t)(g->pad_w + g->in_w) * cx, (size_t)g->pad_w * cx, pad_value);
            dst += (size_t)g->pad_w * cx;
            if (replicate == 1 && x_xor == 0) {
                memcpy(dst, src, row);
            } else if (replicate == 1) {
                for (size_t i = 0; i < row; i++) dst[i] = src[i] ^ x_xor;
            } else {
                for (size_t i = 0; i < row; i++)
                    for (int32_t r = 0; r < replicate; r++) dst[i * replicate + r] = src[i] ^ x_xor;
            }
        }
    }
    memset(xp + total - FQ_CONV_SLACK, pad_value, FQ_CONV_SLACK);
}
