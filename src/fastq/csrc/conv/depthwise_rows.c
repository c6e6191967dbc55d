/* Depthwise convolution by rows (exact arithmetic, channel multiplier 1), straight from the
 * unpadded NHWC input: the driver of the row kernels (conv.h fq_dw_rows_fn; the scalar twin is
 * in depthwise.c, the SIMD ones in depthwise_rows_avx2.c / _avx512.c).
 *
 * Per output row, the k_h input rows it reads (NULL for a row in the padding), then segments
 * of up to seg_max pixels whose input columns fit the kernels' column buffer, per 64-channel
 * block the row kernel into an int32 tile and one epilogue call per segment (as dw_row in
 * depthwise.c). No padded copy of the input is made: the kernels read the zero point for the
 * taps outside it. */
#include <stdlib.h>
#include "conv/conv.h"

#define ROWS_SEG 64        /* pixels per segment at most: a 16 KB int32 tile on the stack */
#define ROWS_MAX_KH 64

/* output pixels per segment whose input columns fit FQ_DW_ROWS_COLBUF, 0 when not even one */
static int32_t rows_seg_max(const fq_conv_geometry *g) {
    int64_t cols = (int64_t)(FQ_DW_ROWS_COLBUF / FQ_DW_ROWS_COL_BYTES(g->k_h));
    int64_t span = (int64_t)(g->k_w - 1) * g->dil_w + 1;
    if (cols < span) return 0;
    int64_t n = (cols - span) / g->stride_w + 1;
    return n > ROWS_SEG ? ROWS_SEG : (int32_t)n;
}

int fq_depthwise_rows_ok(const fq_conv_geometry *g) {
    /* k_h = 1 (1-D layers) would fill one tap slot of four: the tile kernels group along w */
    return g->out_c == g->in_c && g->groups == g->in_c && g->k_h >= 2 && g->k_h <= ROWS_MAX_KH &&
           rows_seg_max(g) > 0;
}

typedef struct {
    const fq_conv_geometry *g;
    const uint8_t *x;
    uint8_t x_xor, pad_value;
    const fq_dw_weights *w;
    fq_dw_rows_fn rows_fn;
    fq_epilogue_fn epilogue;
    const fq_epilogue *ep;
    void *out;
    size_t elem;
    int32_t seg_max;
} rows_job;

static void rows_row(void *ctx, int64_t row) {
    const rows_job *j = (const rows_job *)ctx;
    const fq_conv_geometry *g = j->g;
    int32_t n = (int32_t)(row / g->out_h), oh = (int32_t)(row % g->out_h);
    int32_t cx = g->out_c;
    int32_t tile[ROWS_SEG * 64] __attribute__((aligned(64)));
    uint8_t colbuf[FQ_DW_ROWS_COLBUF] __attribute__((aligned(64)));
    const uint8_t *rows[ROWS_MAX_KH];
    for (int32_t kh = 0; kh < g->k_h; kh++) {
        int32_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
        rows[kh] = ih >= 0 && ih < g->in_h ? j->x + ((size_t)n * g->in_h + ih) * g->in_w * cx : NULL;
    }
    fq_dw_rows_geom rg = {g->k_h, g->k_w, g->stride_w, g->dil_w, g->pad_w, g->in_w, cx, j->x_xor, j->pad_value, rows};
    char *orow = (char *)j->out + (size_t)row * g->out_w * cx * j->elem;
    for (int32_t s0 = 0; s0 < g->out_w; s0 += j->seg_max) {
        int32_t seg = g->out_w - s0 < j->seg_max ? g->out_w - s0 : j->seg_max;
        for (int32_t c0 = 0; c0 < cx; c0 += 64) {
            int32_t nc = cx - c0 < 64 ? cx - c0 : 64;
            j->rows_fn(&rg, s0, seg, j->w, c0, nc, tile, colbuf);
            /* the epilogue adds the column offset n0 = c0 itself (as in gemm.c) */
            j->epilogue(seg, nc, tile, NULL, c0, j->ep, orow + (size_t)s0 * cx * j->elem, cx);
        }
    }
}

int fq_depthwise_rows(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                      const fq_dw_weights *w, const fq_epilogue *ep, void *out, int isa, int num_threads) {
    if (!fq_depthwise_rows_ok(g) || w->k_h != g->k_h || w->k_w != g->k_w) return -2;
    const fq_kernels *kern = fq_kernels_run(FQ_FAMILY_CONV, isa);
    const fq_kernels *epi_table = ep->scalar_only ? fq_kernels_for(FQ_BACKEND_SCALAR) : kern;
    fq_note_run(FQ_FAMILY_EPILOGUE, epi_table->epilogue_owner[ep->variant][ep->out_signed]);
    rows_job j = {g, x, x_xor, pad_value, w, kern->conv->dw_rows_exact,
                  epi_table->epilogue[ep->variant][ep->out_signed], ep, out,
                  ep->kind == FQ_EPI_INT32 || ep->kind == FQ_EPI_FLOAT ? 4 : 1, rows_seg_max(g)};
    double macs = (double)g->batch * g->out_h * g->out_w * g->out_c * g->k_h * g->k_w;
    int threads = macs < (1 << 20) ? 1 : num_threads <= 0 ? fq_get_num_threads() : num_threads;
    fq_parallel_for((int64_t)g->batch * g->out_h, rows_row, &j, threads);
    return 0;
}
