/* Convolution as the packed GEMM: per group, the A matrix is either the NHWC input itself
 * (1x1, stride 1, no padding: lda = in_c, no copy) or im2col rows built a chunk at a time
 * (a chunk of A stays in L2 while the GEMM reads it). The output columns of group g are
 * out_c/groups consecutive channels of the NHWC output row, so ldo = out_c. */
#include <stdlib.h>
#include "conv/conv.h"

void fq_im2col(const fq_conv_geometry *g, const uint8_t *xp, int32_t group, int64_t m0, int64_t m1,
               uint8_t *col);

#define IM2COL_CHUNK_BYTES (192 * 1024)

int fq_conv2d_gemm(const fq_conv_geometry *g, const uint8_t *xp, const fq_packed_weights *w,
                   const fq_epilogue *ep, void *out, int num_threads) {
    int64_t m = (int64_t)g->batch * g->out_h * g->out_w;
    if (m == 0) return 0;
    int32_t cg = g->in_c / g->groups, og = g->out_c / g->groups;
    size_t elem = ep[0].kind == FQ_EPI_INT32 ? 4 : ep[0].kind == FQ_EPI_FLOAT ? 4 : 1;
    int direct = g->k_h == 1 && g->k_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
                 g->pad_w == 0;
    size_t k = (size_t)g->k_h * g->k_w * cg;
    uint8_t *col = NULL;
    int64_t chunk = m;
    if (!direct) {
        /* multiples of 24 rows: whole tiles for every backend's mr (4, 6, 8) */
        chunk = (int64_t)(IM2COL_CHUNK_BYTES / (k ? k : 1)) / 24 * 24;
        if (chunk < 24) chunk = 24;
        if (chunk > m) chunk = m;
        col = (uint8_t *)malloc((size_t)chunk * k + 64);
        if (!col) return -1;
    }
    for (int32_t gr = 0; gr < g->groups; gr++) {
        char *o = (char *)out + (size_t)gr * og * elem;
        if (direct) {
            if (fq_gemm(&w[gr], xp + (size_t)gr * cg, g->in_c, (int32_t)m, 0, &ep[gr], o, g->out_c, num_threads))
                return -1;
            continue;
        }
        for (int64_t m0 = 0; m0 < m; m0 += chunk) {
            int64_t m1 = m0 + chunk < m ? m0 + chunk : m;
            fq_im2col(g, xp, gr, m0, m1, col);
            if (fq_gemm(&w[gr], col, (ptrdiff_t)k, (int32_t)(m1 - m0), 0, &ep[gr],
                        o + (size_t)m0 * g->out_c * elem, g->out_c, num_threads)) {
                free(col);
                return -1;
            }
        }
    }
    free(col);
    return 0;
}
