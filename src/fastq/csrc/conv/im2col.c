/* The scalar im2col (the body in im2col_body.h, plain x86-64 / portable moves) and the
 * exact row gather of 1x1 unpadded convolutions. */
#include <string.h>
#include "conv/conv.h"

#define FQ_IM2COL_NAME fq_im2col_scalar
#include "conv/im2col_body.h"

/* 1x1 unpadded (strided) convolutions: A row m is the cg bytes of input pixel (n, oh*sh, ow*sw),
 * copied exactly (the input may be the caller's array, with nothing readable past its end);
 * the usual channel counts are fixed-size moves */
void fq_gather_1x1(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *x, int32_t group,
                   int64_t m0, int64_t m1, uint8_t *col) {
    (void)win;     /* a 1x1 unpadded layer has no padding to leave out: always the whole window */
    size_t cx = (size_t)g->in_c, cg = (size_t)(g->in_c / g->groups);
    size_t pix = (size_t)g->stride_w * cx, row = (size_t)g->stride_h * g->in_w * cx;
    int64_t ohw = (int64_t)g->out_h * g->out_w;
    int32_t n = (int32_t)(m0 / ohw), oh = (int32_t)(m0 % ohw / g->out_w), ow = (int32_t)(m0 % g->out_w);
    for (int64_t m = m0; m < m1;) {
        int64_t len = g->out_w - ow < m1 - m ? g->out_w - ow : m1 - m;
        const uint8_t *src = x + (size_t)n * g->in_h * g->in_w * cx + (size_t)oh * row + (size_t)ow * pix +
                             (size_t)group * cg;
        if (cg == 16)
            for (int64_t i = 0; i < len; i++, src += pix, col += 16) memcpy(col, src, 16);
        else if (cg == 32)
            for (int64_t i = 0; i < len; i++, src += pix, col += 32) memcpy(col, src, 32);
        else if (cg == 64)
            for (int64_t i = 0; i < len; i++, src += pix, col += 64) memcpy(col, src, 64);
        else
            for (int64_t i = 0; i < len; i++, src += pix, col += cg) memcpy(col, src, cg);
        m += len;
        ow = 0;
        if (++oh == g->out_h) {
            oh = 0;
            n++;
        }
    }
}

