/* The body of fq_im2col_scalar / _avx2 / _avx512 (im2col.c, im2col_avx2.c, im2col_avx512.c):
 * the same C compiled once per ISA, where each fixed-size memcpy below becomes that ISA's
 * widest moves (a 48-byte run: three SSE moves, or one AVX2 move of 32 and one of 16). The
 * including file defines FQ_IM2COL_NAME and, for a SIMD ISA, sets its target first.
 *
 * Rows of the GEMM's A matrix: row m = output pixel (n, oh, ow) of a window (conv.h), k =
 * (kh, kw, c) over the window's taps and the group's channels, read from the
 * zero-point-padded NHWC buffer (no bounds tests). The pixel
 * index advances by increments (no division per row), and with dil_w = 1 and one group the
 * k_w taps of one kh are one contiguous run of k_w * C bytes: small-channel stems (C = 1 or
 * 3) copy a whole kernel row per move instead of C bytes per tap. */
#include <string.h>
#include "conv/conv.h"

/* Runs are copied with fixed-size moves, never a memcpy call of variable length: a run of n
 * <= 64 bytes is one move of 16, 32 or 64 bytes, a longer one 64-byte moves with the last one
 * ending exactly at n. The bytes a short move writes past n land where the next run or row is
 * written next (the column buffer has COL_SLACK = 64 bytes after its last row), and what it
 * reads past n lies in the padded buffer (its FQ_CONV_SLACK of 128 bytes covers the end). */
/* Unaligned byte vectors: a copy through one is that ISA's widest moves (GCC splits a vector
 * wider than the target's registers; its inline memcpy would keep to 16-byte moves). */
typedef uint8_t im2col_v16 __attribute__((vector_size(16), aligned(1), may_alias));
typedef uint8_t im2col_v32 __attribute__((vector_size(32), aligned(1), may_alias));
typedef uint8_t im2col_v64 __attribute__((vector_size(64), aligned(1), may_alias));

static inline __attribute__((always_inline)) void move_fixed(uint8_t *dst, const uint8_t *src, size_t n,
                                                             size_t mv) {
    switch (mv) {
    case 16: *(im2col_v16 *)dst = *(const im2col_v16 *)src; return;
    case 32: *(im2col_v32 *)dst = *(const im2col_v32 *)src; return;
    case 48:
        *(im2col_v32 *)dst = *(const im2col_v32 *)src;
        *(im2col_v16 *)(dst + 32) = *(const im2col_v16 *)(src + 32);
        return;
    case 64: *(im2col_v64 *)dst = *(const im2col_v64 *)src; return;
    default: break;
    }
    size_t i = 0;
    for (; i + 64 < n; i += 64) *(im2col_v64 *)(dst + i) = *(const im2col_v64 *)(src + i);
    *(im2col_v64 *)(dst + n - 64) = *(const im2col_v64 *)(src + n - 64);
}

/* len pixels along one output row: per pixel k_h runs of run bytes (tap_h apart), each moved
 * with move size mv (a constant where inlined, so every move is a few vector instructions) */
static inline __attribute__((always_inline)) uint8_t *rows_of_runs(uint8_t *dst, const uint8_t *src, int64_t len,
                                                                   size_t pix, int32_t k_h, size_t tap_h,
                                                                   size_t run, size_t mv) {
    for (int64_t i = 0; i < len; i++, src += pix)
        for (int32_t kh = 0; kh < k_h; kh++, dst += run) move_fixed(dst, src + kh * tap_h, run, mv);
    return dst;
}

/* the same with k_w separate taps of cg bytes each (groups > 1 or dil_w > 1) */
static inline __attribute__((always_inline)) uint8_t *rows_of_taps(uint8_t *dst, const uint8_t *src, int64_t len,
                                                                   size_t pix, int32_t k_h, size_t tap_h,
                                                                   int32_t k_w, size_t tap_w, size_t cg,
                                                                   size_t mv) {
    for (int64_t i = 0; i < len; i++, src += pix)
        for (int32_t kh = 0; kh < k_h; kh++)
            for (int32_t kw = 0; kw < k_w; kw++, dst += cg) move_fixed(dst, src + kh * tap_h + kw * tap_w, cg, mv);
    return dst;
}

void FQ_IM2COL_NAME(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *xp, int32_t group,
                    int64_t m0, int64_t m1, uint8_t *col) {
    int32_t hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t cg = g->in_c / g->groups;
    int32_t rows = win->oh1 - win->oh0, cols = win->ow1 - win->ow0;
    int32_t k_h = win->kh1 - win->kh0, k_w = win->kw1 - win->kw0;   /* the taps each pixel reads */
    int64_t per_image = (int64_t)rows * cols;
    size_t cx = (size_t)g->in_c;
    size_t pix = (size_t)g->stride_w * cx;                  /* bytes between output pixels */
    size_t tap_h = (size_t)g->dil_h * wp * cx, tap_w = (size_t)g->dil_w * cx;
    size_t run = (size_t)k_w * cg;
    /* the window's first tap, relative to the full window's */
    size_t first_tap = (size_t)win->kh0 * tap_h + (size_t)win->kw0 * tap_w;
    int contiguous = g->dil_w == 1 && g->groups == 1;
    if (m0 >= m1 || per_image == 0) return;
    int32_t n = (int32_t)(m0 / per_image);
    int32_t oh = win->oh0 + (int32_t)(m0 % per_image / cols), ow = win->ow0 + (int32_t)(m0 % cols);
    uint8_t *dst = col;
    for (int64_t m = m0; m < m1;) {
        /* one stretch of pixels along an output row */
        int64_t len = win->ow1 - ow < m1 - m ? win->ow1 - ow : m1 - m;
        const uint8_t *src = xp + (((size_t)n * hp + (size_t)oh * g->stride_h) * wp + (size_t)ow * g->stride_w) * cx +
                             (size_t)group * cg + first_tap;
        if (contiguous && k_h == 3 && run <= 16) {
            /* 3x3 stems (C <= 5): the kernel rows unrolled, three moves a pixel */
            dst = rows_of_runs(dst, src, len, pix, 3, tap_h, run, 16);
        } else if (contiguous && k_h == 7 && run <= 32) {
            dst = rows_of_runs(dst, src, len, pix, 7, tap_h, run, 32);     /* 7x7 stems (C <= 4) */
        } else if (contiguous) {
            if (run <= 16) dst = rows_of_runs(dst, src, len, pix, k_h, tap_h, run, 16);
            else if (run <= 32) dst = rows_of_runs(dst, src, len, pix, k_h, tap_h, run, 32);
            else if (run <= 48) dst = rows_of_runs(dst, src, len, pix, k_h, tap_h, run, 48);
            else if (run <= 64) dst = rows_of_runs(dst, src, len, pix, k_h, tap_h, run, 64);
            else dst = rows_of_runs(dst, src, len, pix, k_h, tap_h, run, 65);
        } else if (cg <= 16) {
            dst = rows_of_taps(dst, src, len, pix, k_h, tap_h, k_w, tap_w, (size_t)cg, 16);
        } else if (cg <= 32) {
            dst = rows_of_taps(dst, src, len, pix, k_h, tap_h, k_w, tap_w, (size_t)cg, 32);
        } else if (cg <= 48) {
            dst = rows_of_taps(dst, src, len, pix, k_h, tap_h, k_w, tap_w, (size_t)cg, 48);
        } else if (cg <= 64) {
            dst = rows_of_taps(dst, src, len, pix, k_h, tap_h, k_w, tap_w, (size_t)cg, 64);
        } else {
            dst = rows_of_taps(dst, src, len, pix, k_h, tap_h, k_w, tap_w, (size_t)cg, 65);
        }
        m += len;
        ow = win->ow0;
        if (++oh == win->oh1) {
            oh = win->oh0;
            n++;
        }
    }
}
