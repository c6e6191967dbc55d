/* Convolution as GEMM over the taps inside the input (conv.h, "clipped path").
 *
 * A 3x3 convolution with padding 1 on a 4x4 output (resnet18's last stage at 112x112) reads
 * the padding in 44 of every 144 products: the padded buffer holds the zero point there, so
 * they add nothing, but they cost as much as any other. Here the output is split into windows
 * whose pixels keep the same taps (per dimension, bands of outputs with the same first and
 * last tap inside the input: usually the first output, the middle, the last), and each
 * window's GEMM runs over only its taps: its im2col rows hold those taps' bytes, and the
 * packed weights are read as runs of k-groups (fq_k_runs), one run per kept kernel row, or
 * one for the window's whole rows of taps when every kw is kept.
 *
 * Worked example, 3x3 pad 1, 4x4 output, C = 64 channels (16 k-groups a tap): the top-left
 * window (oh = 0, ow = 0) keeps kh 1..2, kw 1..2: A rows of 4 * 64 bytes, runs
 * {first 4 * 16 = 64, 32 groups} (taps (1,1), (1,2)) and {7 * 16 = 112, 32 groups} (taps
 * (2,1), (2,2)); col_offset adds pad * (tap_sums of taps 0, 1, 2, 3, 6 - 5 * 64 * zw).
 *
 * Each window's rows go through the GEMM a chunk at a time into a compact output (the
 * window's pixels are not consecutive rows of the NHWC output), then are copied to their
 * rows; a window that is the whole output writes in place. When the whole output fits one
 * chunk (small batches), every window's rows are built first and one fq_gemm_parts call runs
 * them all, panel by panel, so each panel of weights is read once, not once per window. */
#include <stdatomic.h>
#include <string.h>
#include "conv/conv.h"

_Static_assert(FQ_CONV_CLIP_BANDS_MAX * FQ_CONV_CLIP_BANDS_MAX <= FQ_GEMM_PARTS_MAX,
               "every window of a group is one part of one GEMM call");

/* When a layer takes the clipped path (fq_conv_set_clip; FQ_CONV_CLIP_AUTO: the cost model
 * in fq_conv_clip_plan_make). */
static atomic_int clip_mode = FQ_CONV_CLIP_AUTO;

int fq_conv_set_clip(int mode) {
    if (mode < FQ_CONV_CLIP_AUTO || mode > FQ_CONV_CLIP_NEVER) return -1;
    return atomic_exchange(&clip_mode, mode);
}

/* layers run on the clipped path (tests: the path that should run did) */
static atomic_llong clip_runs;

long long fq_conv_clip_runs(void) { return atomic_load(&clip_runs); }

/* Bands of one dimension: outputs o0 <= o < o1 read taps k0 <= k < k1 inside the input
 * (position o * stride - pad + k * dil in 0..in - 1). An output none of whose taps is inside
 * keeps them all (it reads only padding: the padded computation, as without clipping).
 * Returns the band count, or -1 beyond FQ_CONV_CLIP_BANDS_MAX. */
static int32_t make_bands(int32_t out, int32_t in, int32_t k, int32_t stride, int32_t pad, int32_t dil,
                          int h, fq_conv_window *bands) {
    int32_t count = 0;
    for (int32_t o = 0; o < out; o++) {
        int64_t p = (int64_t)o * stride - pad;
        int64_t k0 = p >= 0 ? 0 : (-p + dil - 1) / dil;
        int64_t k1 = p > in - 1 ? 0 : (in - 1 - p) / dil + 1;
        if (k0 > k) k0 = k;
        if (k1 > k) k1 = k;
        if (k0 >= k1) {
            k0 = 0;
            k1 = k;
        }
        fq_conv_window *b = count ? &bands[count - 1] : NULL;
        int32_t *bk0 = b ? (h ? &b->kh0 : &b->kw0) : NULL, *bk1 = b ? (h ? &b->kh1 : &b->kw1) : NULL;
        if (b && *bk0 == k0 && *bk1 == k1) {
            if (h) b->oh1 = o + 1;
            else b->ow1 = o + 1;
            continue;
        }
        if (count == FQ_CONV_CLIP_BANDS_MAX) return -1;
        b = &bands[count++];
        memset(b, 0, sizeof(*b));
        if (h) {
            b->oh0 = o; b->oh1 = o + 1; b->kh0 = (int32_t)k0; b->kh1 = (int32_t)k1;
        } else {
            b->ow0 = o; b->ow1 = o + 1; b->kw0 = (int32_t)k0; b->kw1 = (int32_t)k1;
        }
    }
    return count;
}

/* rows of a window per GEMM call: the plain path's chunk (conv.c) */
static int64_t clip_chunk_rows(const fq_conv_geometry *g) {
    size_t col = fq_conv_col_bytes(g);
    size_t k = (size_t)g->k_h * g->k_w * (g->in_c / g->groups);
    return (int64_t)((col - 64) / k);
}

static size_t up64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t fq_conv_clip_bytes(const fq_conv_geometry *g, const fq_packed_weights *w, size_t elem) {
    int32_t og = g->out_c / g->groups;
    size_t windows = (size_t)FQ_CONV_CLIP_BANDS_MAX * FQ_CONV_CLIP_BANDS_MAX;
    return up64((size_t)clip_chunk_rows(g) * og * elem) + windows * up64((size_t)w->n_padded * sizeof(int32_t));
}

/* The whole output's rows fit one chunk: every window's A at once, one GEMM call for all. */
static int all_at_once(const fq_conv_geometry *g) {
    return (int64_t)g->batch * g->out_h * g->out_w <= clip_chunk_rows(g);
}

/* The cost model of FQ_CONV_CLIP_AUTO, in cycles of one core, fitted on Zen 4 to the bench's
 * padded convolutions (bench/test_bench_conv.py -k conv_clip, ResNet-8 and resnet18 at batch 1
 * and 32). The path saves the products it leaves out (64 a cycle: one vpdpbusd) and costs, per
 * output pixel, the copy of its row out of the window's compact output and the window
 * bookkeeping (about 8 cycles plus one per 16 output bytes), and per window its col_offset, its
 * im2col setup and its GEMM call with a partial last tile (about 600). ResNet-8's 32x32x16
 * layers leave out 95 products a pixel and ran 16 % slower clipped; its 8x8x64 layer at batch 1
 * (9 windows of 1-36 pixels) 6 % slower, at batch 32 15 % faster; resnet18's 28x28x64 layers
 * 1-2 % faster, 14x14x128 5-9 %, 7x7x256 7-20 %. */
#define CLIP_MACS_PER_CYCLE 64.0
#define CLIP_PIXEL_CYCLES 8.0
#define CLIP_WINDOW_CYCLES 600.0
/* Weights past the L2 cache (1 MB on Zen 4, 2 MB on Sapphire Rapids) are streamed from L3 once
 * per tile row of each window: resnet18's last stage at batch 1 (4x4 pixels, 2.4 MB of weights)
 * ran 12-18 % slower with 9 windows of 1-4 pixels than with the plain GEMM's 3 tile rows. There
 * the windows must not read more weight bytes than the plain GEMM does. */
#define CLIP_STREAMED_WEIGHTS ((size_t)1 << 20)
#define CLIP_TILE_ROWS 6     /* rows per tile of the widest AVX-512 panel: the model's unit */
/* A tile of fewer rows costs about as much as one of this many: its few vpdpbusd per k-group
 * wait for the panel's weights from L2 (resnet18's 4x4 stage at batch 1, whose windows are
 * 1-, 2- and 4-row tiles, ran 2-9 % slower clipped though it leaves out 31 % of the products;
 * its 7x7 stage, mostly 5- and 6-row tiles, 8 % faster). */
#define CLIP_MIN_TILE_ROWS 4

static double tile_rows(int64_t m) { return (double)((m + CLIP_TILE_ROWS - 1) / CLIP_TILE_ROWS); }

/* m rows in tiles, in rows of vpdpbusd work (a short last tile counted as CLIP_MIN_TILE_ROWS) */
static double tile_work(int64_t m) {
    int64_t last = m % CLIP_TILE_ROWS;
    return (double)(m - last) + (last == 0 ? 0 : last < CLIP_MIN_TILE_ROWS ? CLIP_MIN_TILE_ROWS : last);
}

int fq_conv_clip_plan_make(const fq_conv_geometry *g, const fq_packed_weights *w, fq_conv_clip_plan *plan) {
    int32_t cg = g->in_c / g->groups;
    int mode = atomic_load(&clip_mode);
    if (mode == FQ_CONV_CLIP_NEVER || (g->pad_h == 0 && g->pad_w == 0) || cg % FQ_KG) return 0;
    plan->n_h = make_bands(g->out_h, g->in_h, g->k_h, g->stride_h, g->pad_h, g->dil_h, 1, plan->band_h);
    plan->n_w = make_bands(g->out_w, g->in_w, g->k_w, g->stride_w, g->pad_w, g->dil_w, 0, plan->band_w);
    if (plan->n_h < 1 || plan->n_w < 1) return 0;
    int32_t taps = g->k_h * g->k_w;
    double kept = 0.0, all = (double)g->out_h * g->out_w * taps;
    double passes = 0.0;   /* weight bytes the windows read, in whole-panel passes */
    double work = 0.0;     /* the windows' tiles, in rows of whole-K vpdpbusd work */
    for (int32_t i = 0; i < plan->n_h; i++)
        for (int32_t j = 0; j < plan->n_w; j++) {
            const fq_conv_window *bh = &plan->band_h[i], *bw = &plan->band_w[j];
            int32_t nkh = bh->kh1 - bh->kh0, nkw = bw->kw1 - bw->kw0;
            /* a window keeping only some kw needs a run of K per kernel row */
            if (nkw != g->k_w && nkh > FQ_K_RUNS_MAX) return 0;
            int64_t pixels = (int64_t)(bh->oh1 - bh->oh0) * (bw->ow1 - bw->ow0);
            kept += (double)pixels * nkh * nkw;
            passes += tile_rows(pixels * g->batch) * nkh * nkw / taps;
            work += tile_work(pixels * g->batch) * nkh * nkw / taps;
        }
    plan->fraction = 1.0 - kept / all;
    if (plan->fraction <= 0.0) return 0;
    if (mode == FQ_CONV_CLIP_ALWAYS) return 1;
    int32_t og = g->out_c / g->groups;
    double pixels = (double)g->batch * g->out_h * g->out_w;
    /* the products the windows' tiles leave out, short tiles counted at their cost */
    double saved = (tile_work((int64_t)pixels) - work) * taps * cg * og / CLIP_MACS_PER_CYCLE;
    double cost = pixels * g->groups * (CLIP_PIXEL_CYCLES + og / 16.0) +
                  CLIP_WINDOW_CYCLES * plan->n_h * plan->n_w * g->groups;
    if (saved <= cost) return 0;
    size_t weight_bytes = (size_t)w->n_padded * w->k_groups * FQ_KG;
    if (weight_bytes > CLIP_STREAMED_WEIGHTS && !all_at_once(g) && passes > tile_rows((int64_t)pixels)) return 0;
    return 1;
}

/* Row q of the compact output (pixel m0 + q of the window) to its NHWC row; the usual row
 * sizes are fixed-size copies (a memcpy call per 64-byte row cost more than the copy). */
static inline __attribute__((always_inline)) void scatter_rows(const fq_conv_geometry *g, const fq_conv_window *win,
                                                               int64_t m0, int64_t m1, const uint8_t *src,
                                                               size_t row_bytes, char *out, size_t ldo) {
    int32_t rows = win->oh1 - win->oh0, cols = win->ow1 - win->ow0;
    int64_t per_image = (int64_t)rows * cols;
    int64_t n = m0 / per_image;
    int32_t oh = win->oh0 + (int32_t)(m0 % per_image / cols), ow = win->ow0 + (int32_t)(m0 % cols);
    for (int64_t m = m0; m < m1; m++, src += row_bytes) {
        memcpy(out + (((size_t)n * g->out_h + oh) * g->out_w + ow) * ldo, src, row_bytes);
        if (++ow == win->ow1) {
            ow = win->ow0;
            if (++oh == win->oh1) {
                oh = win->oh0;
                n++;
            }
        }
    }
}

static void scatter(const fq_conv_geometry *g, const fq_conv_window *win, int64_t m0, int64_t m1,
                    const uint8_t *src, size_t row_bytes, char *out, size_t ldo) {
    switch (row_bytes) {
    case 64: scatter_rows(g, win, m0, m1, src, 64, out, ldo); break;
    case 128: scatter_rows(g, win, m0, m1, src, 128, out, ldo); break;
    case 256: scatter_rows(g, win, m0, m1, src, 256, out, ldo); break;
    case 512: scatter_rows(g, win, m0, m1, src, 512, out, ldo); break;
    default: scatter_rows(g, win, m0, m1, src, row_bytes, out, ldo); break;
    }
}

/* One window of a group: its pixels and taps, its runs of K, its epilogue (col_offset for its
 * taps, in col_offset when some are left out). */
typedef struct {
    fq_conv_window win;
    fq_k_runs runs;
    fq_epilogue ep;
    int64_t m;           /* pixels over the batch */
    ptrdiff_t k;         /* bytes of one A row */
    int whole;           /* the whole output: written in place */
} clip_window;

static void window_make(const fq_conv_geometry *g, const fq_conv_clip_plan *plan, int32_t i, int32_t j,
                        uint8_t pad_value, const fq_packed_weights *wg, const fq_epilogue *ep, const int32_t *ts,
                        int32_t *col_offset, clip_window *cw) {
    int32_t cg = g->in_c / g->groups, taps = g->k_h * g->k_w, tap_groups = cg / FQ_KG;
    fq_conv_window win = plan->band_h[i];
    const fq_conv_window *bw = &plan->band_w[j];
    win.ow0 = bw->ow0;
    win.ow1 = bw->ow1;
    win.kw0 = bw->kw0;
    win.kw1 = bw->kw1;
    int32_t nkh = win.kh1 - win.kh0, nkw = win.kw1 - win.kw0;
    cw->win = win;
    /* the runs of K: whole kernel rows are one run */
    if (nkw == g->k_w) {
        cw->runs.count = 1;
        cw->runs.first[0] = win.kh0 * g->k_w * tap_groups;
        cw->runs.groups[0] = nkh * g->k_w * tap_groups;
    } else {
        cw->runs.count = nkh;
        for (int32_t r = 0; r < nkh; r++) {
            cw->runs.first[r] = ((win.kh0 + r) * g->k_w + win.kw0) * tap_groups;
            cw->runs.groups[r] = nkw * tap_groups;
        }
    }
    /* the window's col_offset: what the padding's taps add in the padded sum */
    cw->ep = *ep;
    if (nkh * nkw != taps) {
        const int32_t *zw = ep->w_zero_point;
        uint32_t left_out = (uint32_t)(taps - nkh * nkw) * (uint32_t)cg;
        uint32_t *sum = (uint32_t *)col_offset;
        for (int32_t n = 0; n < wg->n_padded; n++) sum[n] = zw ? 0u - left_out * (uint32_t)zw[n] : 0u;
        for (int32_t kh = 0; kh < g->k_h; kh++)
            for (int32_t kw = 0; kw < g->k_w; kw++) {
                if (kh >= win.kh0 && kh < win.kh1 && kw >= win.kw0 && kw < win.kw1) continue;
                const int32_t *t = ts + (size_t)(kh * g->k_w + kw) * wg->n_padded;
                for (int32_t n = 0; n < wg->n_padded; n++) sum[n] += (uint32_t)t[n];
            }
        for (int32_t n = 0; n < wg->n_padded; n++)
            col_offset[n] = (int32_t)((uint32_t)ep->col_offset[n] + (uint32_t)pad_value * sum[n]);
        cw->ep.col_offset = col_offset;
    }
    int64_t rows = (int64_t)(win.oh1 - win.oh0) * (win.ow1 - win.ow0);
    cw->m = (int64_t)g->batch * rows;
    cw->k = (ptrdiff_t)nkh * nkw * cg;
    cw->whole = rows == (int64_t)g->out_h * g->out_w;
}

int fq_conv2d_gemm_clipped(const fq_conv_geometry *g, const fq_conv_clip_plan *plan, const uint8_t *xp,
                           uint8_t pad_value, const fq_packed_weights *w, const fq_epilogue *ep,
                           const int32_t *const *tap_sums, uint8_t *col, uint8_t *scratch, void *out,
                           int num_threads) {
    int32_t og = g->out_c / g->groups;
    size_t elem = ep[0].kind == FQ_EPI_INT32 ? 4 : ep[0].kind == FQ_EPI_FLOAT ? 4 : 1;
    size_t row_bytes = (size_t)og * elem, ldo = (size_t)g->out_c * elem;
    int64_t chunk = clip_chunk_rows(g);
    uint8_t *compact = scratch;
    int32_t *col_offsets = (int32_t *)(scratch + up64((size_t)chunk * row_bytes));
    size_t offsets_stride = up64((size_t)w[0].n_padded * sizeof(int32_t)) / sizeof(int32_t);
    fq_im2col_fn im2col = fq_kernels_run(FQ_FAMILY_CONV, -1)->conv->im2col;
    int32_t n_windows = plan->n_h * plan->n_w;
    clip_window windows[FQ_CONV_CLIP_BANDS_MAX * FQ_CONV_CLIP_BANDS_MAX];
    fq_gemm_part parts[FQ_CONV_CLIP_BANDS_MAX * FQ_CONV_CLIP_BANDS_MAX];
    int once = all_at_once(g);
    atomic_fetch_add(&clip_runs, 1);
    for (int32_t gr = 0; gr < g->groups; gr++) {
        char *out_g = (char *)out + (size_t)gr * og * elem;
        for (int32_t v = 0; v < n_windows; v++)
            window_make(g, plan, v / plan->n_w, v % plan->n_w, pad_value, &w[gr], &ep[gr], tap_sums[gr],
                        col_offsets + (size_t)v * offsets_stride, &windows[v]);
        if (once) {
            /* every window's rows at once (they fit one chunk), one GEMM call: each panel of
             * weights is read once for all the windows */
            uint8_t *a = col, *o = compact;
            for (int32_t v = 0; v < n_windows; v++) {
                clip_window *cw = &windows[v];
                im2col(g, &cw->win, xp, gr, 0, cw->m, a);
                fq_gemm_part pt = {&cw->runs, a, cw->k, (int32_t)cw->m, &cw->ep,
                                   cw->whole ? (void *)out_g : (void *)o, cw->whole ? g->out_c : og};
                parts[v] = pt;
                a += (size_t)cw->m * cw->k;
                if (!cw->whole) o += (size_t)cw->m * row_bytes;
            }
            if (fq_gemm_parts(&w[gr], parts, n_windows, 0, num_threads)) return -1;
            for (int32_t v = 0, off = 0; v < n_windows; v++) {
                if (windows[v].whole) continue;
                scatter(g, &windows[v].win, 0, windows[v].m, compact + (size_t)off * row_bytes, row_bytes, out_g, ldo);
                off += (int32_t)windows[v].m;
            }
            continue;
        }
        for (int32_t v = 0; v < n_windows; v++) {
            clip_window *cw = &windows[v];
            for (int64_t m0 = 0; m0 < cw->m; m0 += chunk) {
                int64_t m1 = m0 + chunk < cw->m ? m0 + chunk : cw->m;
                im2col(g, &cw->win, xp, gr, m0, m1, col);
                fq_gemm_part pt = {&cw->runs, col, cw->k, (int32_t)(m1 - m0), &cw->ep,
                                   cw->whole ? (void *)(out_g + (size_t)m0 * ldo) : (void *)compact,
                                   cw->whole ? g->out_c : og};
                if (fq_gemm_parts(&w[gr], &pt, 1, 0, num_threads)) return -1;
                /* the window's rows to their places in the NHWC output */
                if (!cw->whole) scatter(g, &cw->win, m0, m1, compact, row_bytes, out_g, ldo);
            }
        }
    }
    return 0;
}
