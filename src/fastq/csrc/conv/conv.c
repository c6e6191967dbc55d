/* One convolution call (fq_conv2d_run) and convolution as the packed GEMM.
 *
 * GEMM: per group, the A matrix is either the NHWC input itself (1x1, stride 1, no padding:
 * lda = in_c, no copy; an NHWC input is read in place, int8 through the GEMM's a_signed; a
 * strided 1x1 gathers its rows from the input in place, no padded copy) or
 * im2col rows built a chunk at a time (a chunk of A stays in L2 while the GEMM reads it). The
 * output columns of group g are out_c/groups consecutive channels of the NHWC output row, so
 * ldo = out_c. */
#include <pthread.h>
#include <stdlib.h>
#include "conv/conv.h"

/* A chunk of A stays in L2 while the GEMM reads it. L1-sized chunks (8-48 KB, one im2col block
 * then its GEMM) measured no faster on Zen 4 (the hardware prefetch hides L2 for the A rows)
 * and cost one fq_gemm call per block. */
#define IM2COL_CHUNK_BYTES (192 * 1024)
#define COL_SLACK 64     /* im2col's fixed-size moves write up to 32 bytes past a row */

/* ---- the per-thread scratch area ------------------------------------------------------- */
typedef struct {
    uint8_t *p;
    size_t n;
} scratch_area;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_release(void *v) {
    scratch_area *s = (scratch_area *)v;
    free(s->p);
    free(s);
}

static void scratch_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_release) == 0; }

/* Past this size a call's buffers are not kept for the next call (a batch-32 layer of a big
 * network would otherwise pin its padded input for the life of the thread). */
#define SCRATCH_KEEP_MAX ((size_t)64 << 20)

uint8_t *fq_conv_scratch(size_t bytes) {
    pthread_once(&scratch_once, scratch_init);
    if (!scratch_key_ok) return NULL;
    scratch_area *s = (scratch_area *)pthread_getspecific(scratch_key);
    if (!s) {
        s = (scratch_area *)calloc(1, sizeof(*s));
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->n < bytes) {
        free(s->p);
        s->p = NULL;
        s->n = 0;
        /* a quarter more: a model's layers of slightly different sizes settle on one area */
        size_t want = bytes + bytes / 4 + 64;
        void *p = NULL;
        if (posix_memalign(&p, 64, want)) return NULL;
        s->p = (uint8_t *)p;
        s->n = want;
    }
    return s->p;
}

static void scratch_trim(size_t bytes) {
    if (bytes <= SCRATCH_KEEP_MAX || !scratch_key_ok) return;
    scratch_area *s = (scratch_area *)pthread_getspecific(scratch_key);
    if (!s) return;
    free(s->p);
    s->p = NULL;
    s->n = 0;
}

/* ---- convolution as GEMM ----------------------------------------------------------------- */
int fq_conv_gemm_direct(const fq_conv_geometry *g) {
    return g->k_h == 1 && g->k_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 && g->pad_w == 0;
}

/* 1x1 without padding, any stride: the input is read where it lies (strided rows gathered) */
static int fq_conv_gemm_unpadded_1x1(const fq_conv_geometry *g) {
    return g->k_h == 1 && g->k_w == 1 && g->pad_h == 0 && g->pad_w == 0;
}

static int64_t col_chunk_rows(const fq_conv_geometry *g) {
    int64_t m = (int64_t)g->batch * g->out_h * g->out_w;
    size_t k = (size_t)g->k_h * g->k_w * (g->in_c / g->groups);
    /* multiples of 24 rows: whole tiles for every backend's mr (4, 6, 8) */
    int64_t chunk = (int64_t)(IM2COL_CHUNK_BYTES / (k ? k : 1)) / 24 * 24;
    if (chunk < 24) chunk = 24;
    if (chunk > m) chunk = m;
    return chunk;
}

size_t fq_conv_col_bytes(const fq_conv_geometry *g) {
    if (fq_conv_gemm_direct(g)) return 0;
    size_t k = (size_t)g->k_h * g->k_w * (g->in_c / g->groups);
    return (size_t)col_chunk_rows(g) * k + COL_SLACK;
}

fq_conv_window fq_conv_window_all(const fq_conv_geometry *g) {
    fq_conv_window w = {0, g->out_h, 0, g->out_w, 0, g->k_h, 0, g->k_w};
    return w;
}

int fq_conv2d_gemm(const fq_conv_geometry *g, const uint8_t *xp, int a_signed, const fq_packed_weights *w,
                   const fq_epilogue *ep, uint8_t *col, void *out, int num_threads) {
    int64_t m = (int64_t)g->batch * g->out_h * g->out_w;
    if (m == 0) return 0;
    int32_t cg = g->in_c / g->groups, og = g->out_c / g->groups;
    size_t elem = ep[0].kind == FQ_EPI_INT32 ? 4 : ep[0].kind == FQ_EPI_FLOAT ? 4 : 1;
    int direct = fq_conv_gemm_direct(g);
    size_t k = (size_t)g->k_h * g->k_w * cg;
    int64_t chunk = direct ? m : col_chunk_rows(g);
    /* the backend's im2col (counted as a conv family run); 1x1 unpadded rows are exact gathers */
    fq_im2col_fn im2col = direct ? NULL
                        : fq_conv_gemm_unpadded_1x1(g) ? fq_gather_1x1 : fq_kernels_run(FQ_FAMILY_CONV, -1)->conv->im2col;
    fq_conv_window all = fq_conv_window_all(g);
    for (int32_t gr = 0; gr < g->groups; gr++) {
        char *o = (char *)out + (size_t)gr * og * elem;
        if (direct) {
            if (fq_gemm(&w[gr], xp + (size_t)gr * cg, g->in_c, (int32_t)m, a_signed, &ep[gr], o, g->out_c,
                        num_threads))
                return -1;
            continue;
        }
        for (int64_t m0 = 0; m0 < m; m0 += chunk) {
            int64_t m1 = m0 + chunk < m ? m0 + chunk : m;
            im2col(g, &all, xp, gr, m0, m1, col);
            /* a_signed: only a 1x1 layer reads the input in place, and its gathered rows are the
             * raw bytes */
            if (fq_gemm(&w[gr], col, (ptrdiff_t)k, (int32_t)(m1 - m0), a_signed, &ep[gr],
                        o + (size_t)m0 * g->out_c * elem, g->out_c, num_threads))
                return -1;
        }
    }
    return 0;
}

/* ---- one call ------------------------------------------------------------------------------ */
static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

int fq_conv2d_run(const fq_conv_call *c) {
    const fq_conv_geometry *g = c->g;
    if (g->batch == 0) return 0;
    const fq_epilogue *ep = &c->eps[0];
    size_t elem = ep->kind == FQ_EPI_INT32 || ep->kind == FQ_EPI_FLOAT ? 4 : 1;
    int dw = c->path != FQ_CONV_PATH_GEMM;
    int32_t replicate = dw ? g->out_c / g->in_c : 1;
    int sat = c->path == FQ_CONV_PATH_DW_SATURATE;
    int flat = dw && c->dw32 && c->ep32 && g->stride_w == 1 && g->dil_w == 1;
    /* exact depthwise by rows reads the unpadded NHWC input (an NCHW one is transposed first) */
    int dw_rows = dw && !sat && !flat && fq_depthwise_rows_ok(g);
    /* a 1x1 GEMM convolution reads an NHWC input where it lies */
    int in_place = (!dw && c->x_nhwc && fq_conv_gemm_unpadded_1x1(g)) || (dw_rows && c->x_nhwc);
    size_t xp_bytes = in_place ? 0
                    : dw_rows ? up64((size_t)g->batch * g->in_h * g->in_w * g->in_c)
                              : up64(fq_conv_padded_bytes(g, replicate));
    size_t col_bytes = dw ? 0 : up64(fq_conv_col_bytes(g));
    size_t y_bytes = c->y_nhwc ? 0 : up64((size_t)g->batch * g->out_h * g->out_w * g->out_c * elem);
    /* the GEMM over the taps inside the input where the padding holds enough of the products */
    fq_conv_clip_plan plan;
    int clip = !dw && !in_place && c->tap_sums && fq_conv_clip_plan_make(g, c->pw, &plan);
    size_t clip_bytes = clip ? up64(fq_conv_clip_bytes(g, c->pw, elem)) : 0;
    size_t total = xp_bytes + col_bytes + y_bytes + clip_bytes;
    uint8_t *s = total ? fq_conv_scratch(total) : NULL;
    if (total && !s) return -1;
    uint8_t *xp = in_place ? (uint8_t *)c->x : s;
    uint8_t *col = col_bytes ? s + xp_bytes : NULL;
    void *yn = c->y_nhwc ? c->y : (void *)(s + xp_bytes + col_bytes);
    uint8_t *clip_scratch = clip ? s + xp_bytes + col_bytes + y_bytes : NULL;
    uint8_t x_xor = c->x_xor;
    if (dw_rows && !in_place) {
        fq_nchw_to_nhwc_u8(c->x, g->batch, (int64_t)g->in_h * g->in_w, g->in_c, x_xor, xp);
        x_xor = 0;
    } else if (!in_place) {
        if (c->x_nhwc)
            fq_conv_pad_from_nhwc(g, c->x, c->x_xor, c->pad_value, replicate, xp);
        else
            fq_conv_pad_nhwc(g, c->x, c->x_xor, c->pad_value, replicate, xp);
    }
    int rc;
    if (dw_rows)
        rc = fq_depthwise_rows(g, xp, x_xor, c->pad_value, c->dw, ep, yn, -1, c->num_threads);
    else if (flat)
        rc = fq_depthwise_flat(g, xp, c->dw32, sat, c->ep32, yn, -1, c->num_threads);
    else if (dw)
        rc = fq_depthwise(g, xp, c->dw, sat, ep, yn, -1, c->num_threads);
    else if (clip)
        rc = fq_conv2d_gemm_clipped(g, &plan, xp, c->pad_value, c->pw, c->eps, c->tap_sums, col, clip_scratch, yn,
                                    c->num_threads);
    else
        rc = fq_conv2d_gemm(g, xp, in_place && c->x_xor, c->pw, c->eps, col, yn, c->num_threads);
    if (rc == 0 && !c->y_nhwc) fq_nhwc_to_nchw(yn, g->batch, (int64_t)g->out_h * g->out_w, g->out_c, elem, c->y);
    scratch_trim(total);
    return rc;
}
