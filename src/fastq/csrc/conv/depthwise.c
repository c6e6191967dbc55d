/* Depthwise convolution, direct: weight packing, the scalar twin of the SIMD tiles, and the
 * driver that runs a tile kernel then the GEMM's epilogue on each (row of pixels x 64
 * channels) tile.
 *
 * The SIMD exact kernels widen x (uint8) and wd = w - zw (int16, |wd| <= 255) to int16 and
 * multiply two taps at once with vpmaddwd: lanes hold (x[t], x[t+1]) of one channel, so each
 * int32 lane gets x[t] wd[t] + x[t+1] wd[t+1], exact (<= 2 * 255 * 255). vpunpck{l,h}wd
 * interleave within 128-bit lanes, so a 32-channel block of wd_pairs is stored in that order:
 *     lo: wd_pairs[8L + 2j + s]      = wd[2p + s][32b + 8L + j]       L < 4, j < 4, s < 2
 *     hi: wd_pairs[32 + 8L + 2j + s] = wd[2p + s][32b + 8L + 4 + j]
 * and the kernels put the int32 sums back in channel order before the store. */
#include <stdlib.h>
#include <string.h>
#include "conv/conv.h"

static void *aligned64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

void fq_dw_free(fq_dw_weights *w) {
    free(w->wd_pairs);
    free(w->w_pairs);
    free(w->zw);
    free(w->wd);
    free(w->w);
    free(w->w_quads);
    free(w->w_pairs64);
    free(w->w_colq);
    free(w->wd_colp);
    memset(w, 0, sizeof(*w));
}

int fq_dw_pack(const int8_t *w, int32_t channels, int32_t k_h, int32_t k_w, const int32_t *zw, int zw_per_channel,
               fq_dw_weights *out) {
    memset(out, 0, sizeof(*out));
    int32_t taps = k_h * k_w;
    out->k_h = k_h;
    out->k_w = k_w;
    out->col_quads = (k_h + 3) / 4;
    out->col_pairs = (k_h + 1) / 2;
    out->taps = taps;
    out->channels = channels;
    out->pairs = (taps + 1) / 2;
    out->c_pad = (channels + 63) / 64 * 64;
    size_t cp = (size_t)out->c_pad, np = (size_t)out->pairs;
    out->wd_pairs = (int16_t *)aligned64(np * cp * 2 * sizeof(int16_t));
    out->w_pairs = (int8_t *)aligned64(np * cp * 2);
    out->zw = (int32_t *)aligned64(cp * sizeof(int32_t));
    out->wd = (int16_t *)aligned64((size_t)taps * cp * sizeof(int16_t));
    out->w = (int8_t *)aligned64((size_t)taps * cp);
    out->quads = (taps + 3) / 4;
    out->w_quads = (int8_t *)aligned64((size_t)out->quads * cp * 4);
    out->w_pairs64 = (int8_t *)aligned64(np * cp * 2);
    out->w_colq = (int8_t *)aligned64((size_t)k_w * out->col_quads * cp * 4);
    out->wd_colp = (int16_t *)aligned64((size_t)k_w * out->col_pairs * cp * 2 * sizeof(int16_t));
    if (!out->wd_pairs || !out->w_pairs || !out->zw || !out->wd || !out->w || !out->w_quads || !out->w_pairs64 ||
        !out->w_colq || !out->wd_colp) {
        fq_dw_free(out);
        return -1;
    }
    for (int32_t c = 0; c < channels; c++) {
        int32_t z = zw[zw_per_channel ? c : 0];
        out->zw[c] = z;
        for (int32_t t = 0; t < taps; t++) {
            int8_t v = w[(size_t)c * taps + t];
            out->w[(size_t)t * cp + c] = v;
            out->wd[(size_t)t * cp + c] = (int16_t)(v - z);
            out->w_pairs[((size_t)(t / 2) * cp + c) * 2 + (t & 1)] = v;
        }
    }
    out->zw_all_zero = 1;
    for (int32_t c = 0; c < channels; c++)
        if (out->zw[c]) out->zw_all_zero = 0;
    for (int32_t c = 0; c < channels; c++) {
        size_t blk = (size_t)c / 64;
        int32_t cc = c % 64, L = cc / 16, r = cc % 16;
        for (int32_t t = 0; t < taps; t++) {
            int8_t v = out->w[(size_t)t * cp + c];
            int32_t q = t / 4, k = r / 4, d = r % 4;
            out->w_quads[(((size_t)q * (cp / 64) + blk) * 4 + k) * 64 + 16 * L + 4 * d + t % 4] = v;
            int32_t pr = t / 2, h = r / 8, j = r % 8;
            out->w_pairs64[(((size_t)pr * (cp / 64) + blk) * 2 + h) * 64 + 16 * L + 2 * j + t % 2] = v;
        }
    }
    for (int32_t c = 0; c < channels; c++)
        for (int32_t kh = 0; kh < k_h; kh++)
            for (int32_t kw = 0; kw < k_w; kw++) {
                size_t t = (size_t)kh * k_w + kw;
                out->w_colq[(((size_t)kw * out->col_quads + kh / 4) * cp + c) * 4 + kh % 4] = out->w[t * cp + c];
                out->wd_colp[(((size_t)kw * out->col_pairs + kh / 2) * cp + c) * 2 + kh % 2] = out->wd[t * cp + c];
            }
    for (int32_t p = 0; p < out->pairs; p++)
        for (int32_t b = 0; b < out->c_pad / 32; b++) {
            int16_t *dst = out->wd_pairs + ((size_t)p * (cp / 32) + b) * 64;
            for (int L = 0; L < 4; L++)
                for (int j = 0; j < 4; j++)
                    for (int s = 0; s < 2; s++) {
                        int32_t t = 2 * p + s;
                        if (t >= taps) continue;
                        dst[8 * L + 2 * j + s] = out->wd[(size_t)t * cp + 32 * b + 8 * L + j];
                        dst[32 + 8 * L + 2 * j + s] = out->wd[(size_t)t * cp + 32 * b + 8 * L + 4 + j];
                    }
        }
    return 0;
}

void fq_dw_col_offsets(const fq_dw_weights *w, int32_t x_zero_point, const int32_t *int_bias,
                       int saturate, int32_t *col_offset) {
    size_t cp = (size_t)w->c_pad;
    for (int32_t c = 0; c < w->c_pad; c++) {
        uint32_t s = 0;    /* wrapping: the final acc is exact when it fits (checked by callers) */
        for (int32_t t = 0; t < w->taps; t++)
            s += saturate ? (uint32_t)(int32_t)w->w[t * cp + c] : (uint32_t)(int32_t)w->wd[t * cp + c];
        uint32_t off = 0u - (uint32_t)x_zero_point * s;
        if (saturate) off += (uint32_t)w->taps * (uint32_t)x_zero_point * (uint32_t)w->zw[c];
        if (int_bias && c < w->channels) off += (uint32_t)int_bias[c];
        col_offset[c] = (int32_t)off;
    }
}

/* ---- the scalar twins ------------------------------------------------------------------ */
static void dw_exact_scalar(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                            int32_t c0, int32_t nc, int32_t *tile) {
    size_t cp = (size_t)w->c_pad;
    for (int32_t i = 0; i < mr; i++) {
        uint32_t acc[64] = {0};
        for (int32_t kh = 0; kh < tg->k_h; kh++)
            for (int32_t kw = 0; kw < tg->k_w; kw++) {
                const uint8_t *xt = x + i * tg->pix + tg->off[kh * tg->k_w + kw];
                const int16_t *wt = w->wd + (size_t)(kh * tg->k_w + kw) * cp + c0;
                for (int c = 0; c < nc; c++) acc[c] += (uint32_t)((int32_t)xt[c] * wt[c]);
            }
        for (int c = 0; c < 64; c++) tile[i * 64 + c] = (int32_t)acc[c];
    }
}

static inline int32_t sat16(int32_t v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : v; }

static void dw_saturate_scalar(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                               int32_t c0, int32_t nc, int32_t *tile) {
    size_t cp = (size_t)w->c_pad;
    int32_t taps = tg->k_h * tg->k_w;
    for (int32_t i = 0; i < mr; i++) {
        uint32_t acc[64] = {0}, xsum[64] = {0};
        for (int32_t t = 0; t < taps; t += 2) {
            const uint8_t *xa = x + i * tg->pix + tg->off[t];
            int32_t u = t + 1;
            const uint8_t *xb = u < taps ? x + i * tg->pix + tg->off[u] : NULL;
            for (int c = 0; c < nc; c++) {
                int32_t a = xa[c], b = xb ? xb[c] : 0;
                int32_t pair = a * w->w[(size_t)t * cp + c0 + c] + (xb ? b * w->w[(size_t)u * cp + c0 + c] : 0);
                acc[c] += (uint32_t)sat16(pair);
                xsum[c] += (uint32_t)(a + b);
            }
        }
        for (int c = 0; c < 64; c++) tile[i * 64 + c] = (int32_t)(acc[c] - (uint32_t)w->zw[c0 + c] * xsum[c]);
    }
}

/* the row kernels' twin: tap by tap from the unpadded input, pad_value outside it */
static void dw_rows_exact_scalar(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                                 int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf) {
    (void)colbuf;
    size_t cp = (size_t)w->c_pad;
    for (int32_t i = 0; i < n_out; i++) {
        uint32_t acc[64] = {0};
        int32_t iw0 = (ow0 + i) * rg->stride_w - rg->pad_w;
        for (int32_t kh = 0; kh < rg->k_h; kh++)
            for (int32_t kw = 0; kw < rg->k_w; kw++) {
                int32_t iw = iw0 + kw * rg->dil_w;
                int inside = rg->rows[kh] && iw >= 0 && iw < rg->in_w;
                const uint8_t *xt = inside ? rg->rows[kh] + (size_t)iw * rg->cx + c0 : NULL;
                const int16_t *wt = w->wd + (size_t)(kh * rg->k_w + kw) * cp + c0;
                for (int c = 0; c < nc; c++) {
                    int32_t xv = inside ? (uint8_t)(xt[c] ^ rg->x_xor) : rg->pad_value;
                    acc[c] += (uint32_t)(xv * wt[c]);
                }
            }
        for (int c = 0; c < 64; c++) tile[i * 64 + c] = (int32_t)acc[c];
    }
}

static const fq_conv_kernels scalar_table = {"scalar", dw_exact_scalar, dw_saturate_scalar, dw_rows_exact_scalar, fq_im2col_scalar};
const fq_conv_kernels *fq_conv_kernels_scalar(void) { return &scalar_table; }

/* ---- the driver ------------------------------------------------------------------------- */
typedef struct {
    const fq_conv_geometry *g;
    const uint8_t *xp;
    const fq_dw_weights *w;
    fq_dw_tile_fn tile_fn;
    fq_epilogue_fn epilogue;
    const fq_epilogue *ep;
    fq_dw_tile_geom tg;
    void *out;
    size_t elem;
    ptrdiff_t off_small[64];        /* tg.off for up to 63 taps; larger kernels use off_heap */
    ptrdiff_t *off_heap;
} dw_job;

/* tg.off from the tap strides: 0, or -1 when out of memory */
static int dw_offsets(dw_job *j) {
    int32_t taps = j->tg.k_h * j->tg.k_w;
    ptrdiff_t *off = j->off_small;
    j->off_heap = NULL;
    if (taps + 1 > 64) {
        off = j->off_heap = (ptrdiff_t *)malloc((size_t)(taps + 1) * sizeof(ptrdiff_t));
        if (!off) return -1;
    }
    for (int32_t t = 0; t < taps; t++)
        off[t] = (ptrdiff_t)(t / j->tg.k_w) * j->tg.tap_h + (ptrdiff_t)(t % j->tg.k_w) * j->tg.tap_w;
    off[taps] = off[taps - 1];
    j->tg.off = off;
    return 0;
}

#define DW_MR 8
#define DW_SEG 128      /* pixels per epilogue call: a 32 KB int32 buffer on the stack */

/* One output row: per 64-channel block, the tiles of up to DW_SEG pixels fill one buffer laid
 * out as an epilogue tile ([pixel][64]), then a single epilogue call requantizes the segment
 * (not one call per 8-pixel tile: the per-call constants are set up once per segment). */
static void dw_row(void *ctx, int64_t row) {
    const dw_job *j = (const dw_job *)ctx;
    const fq_conv_geometry *g = j->g;
    int32_t n = (int32_t)(row / g->out_h), oh = (int32_t)(row % g->out_h);
    int32_t cx = g->out_c, hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t buf[DW_SEG * 64] __attribute__((aligned(64)));
    const uint8_t *xrow = j->xp + ((size_t)n * hp + (size_t)oh * g->stride_h) * wp * cx;
    char *orow = (char *)j->out + (size_t)row * g->out_w * cx * j->elem;
    for (int32_t s0 = 0; s0 < g->out_w; s0 += DW_SEG) {
        int32_t seg = g->out_w - s0 < DW_SEG ? g->out_w - s0 : DW_SEG;
        for (int32_t c0 = 0; c0 < cx; c0 += 64) {
            int32_t nc = cx - c0 < 64 ? cx - c0 : 64;
            for (int32_t i0 = 0; i0 < seg; i0 += DW_MR) {
                int32_t mr = seg - i0 < DW_MR ? seg - i0 : DW_MR;
                j->tile_fn(&j->tg, mr, xrow + (size_t)(s0 + i0) * j->tg.pix + c0, j->w, c0, nc, buf + i0 * 64);
            }
            /* the epilogue adds the column offset n0 = c0 itself (as in gemm.c) */
            j->epilogue(seg, nc, buf, NULL, c0, j->ep, orow + (size_t)s0 * cx * j->elem, cx);
        }
    }
}

/* The job both entry points share: the backend's tile kernel and epilogue (from the table,
 * counted as run), the geometry, the buffers. The caller sets the tile strides. */
static void dw_job_init(dw_job *j, const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w,
                        int saturate, const fq_epilogue *ep, void *out, int isa) {
    const fq_kernels *kern = fq_kernels_run(FQ_FAMILY_CONV, isa);
    const fq_kernels *epi_table = ep->scalar_only ? fq_kernels_for(FQ_BACKEND_SCALAR) : kern;
    fq_note_run(FQ_FAMILY_EPILOGUE, epi_table->epilogue_owner[ep->variant][ep->out_signed]);
    j->g = g;
    j->xp = xp;
    j->w = w;
    j->tile_fn = saturate ? kern->conv->dw_saturate : kern->conv->dw_exact;
    j->epilogue = epi_table->epilogue[ep->variant][ep->out_signed];
    j->ep = ep;
    j->tg.k_h = g->k_h;
    j->tg.k_w = g->k_w;
    j->out = out;
    j->elem = ep->kind == FQ_EPI_INT32 || ep->kind == FQ_EPI_FLOAT ? 4 : 1;
}

/* Threads only for layers big enough to pay for them. */
static int dw_threads(const fq_conv_geometry *g, int num_threads) {
    double macs = (double)g->batch * g->out_h * g->out_w * g->out_c * g->k_h * g->k_w;
    if (macs < (1 << 20)) return 1;
    return num_threads <= 0 ? fq_get_num_threads() : num_threads;
}

int fq_depthwise(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w, int saturate,
                 const fq_epilogue *ep, void *out, int isa, int num_threads) {
    dw_job j;
    dw_job_init(&j, g, xp, w, saturate, ep, out, isa);
    int32_t cx = g->out_c, wp = g->in_w + 2 * g->pad_w;
    j.tg.pix = (ptrdiff_t)g->stride_w * cx;
    j.tg.tap_w = (ptrdiff_t)g->dil_w * cx;
    j.tg.tap_h = (ptrdiff_t)g->dil_h * wp * cx;
    if (dw_offsets(&j)) return -1;
    fq_parallel_for((int64_t)g->batch * g->out_h, dw_row, &j, dw_threads(g, num_threads));
    free(j.off_heap);
    return 0;
}

/* ---- few channels, stride 1 along w: the row as one flat vector --------------------------
 * With out_c = C dividing 32 and stride_w = dil_w = 1, the NHWC output row is a 1-D sequence of
 * out_w * C values in which value f reads the taps at f + kw * C (+ kh rows) and the weights of
 * channel f mod C. Viewing 32 consecutive values as one "pixel" of 32 virtual channels (weights
 * w[l mod C], packed once as a 32-channel layer), the tile kernels above run unchanged with a
 * 32-byte pixel step, every lane useful (a C = 8 layer otherwise fills 8 of 32), and the output
 * lands in NHWC order directly. */
static void dw_flat_row(void *ctx, int64_t row) {
    const dw_job *j = (const dw_job *)ctx;
    const fq_conv_geometry *g = j->g;
    int32_t n = (int32_t)(row / g->out_h), oh = (int32_t)(row % g->out_h);
    int32_t cx = g->out_c, hp = g->in_h + 2 * g->pad_h, wp = g->in_w + 2 * g->pad_w;
    int32_t buf[DW_SEG * 64] __attribute__((aligned(64)));
    const uint8_t *xrow = j->xp + ((size_t)n * hp + (size_t)oh * g->stride_h) * wp * cx;
    char *orow = (char *)j->out + (size_t)row * g->out_w * cx * j->elem;
    int64_t len = (int64_t)g->out_w * cx, nvec = len / 32;
    int32_t tail = (int32_t)(len % 32);
    for (int64_t v0 = 0; v0 < nvec; v0 += DW_SEG) {
        int32_t seg = nvec - v0 < DW_SEG ? (int32_t)(nvec - v0) : DW_SEG;
        for (int32_t i0 = 0; i0 < seg; i0 += DW_MR) {
            int32_t mr = seg - i0 < DW_MR ? seg - i0 : DW_MR;
            j->tile_fn(&j->tg, mr, xrow + (size_t)(v0 + i0) * 32, j->w, 0, 32, buf + i0 * 64);
        }
        j->epilogue(seg, 32, buf, NULL, 0, j->ep, orow + (size_t)v0 * 32 * j->elem, 32);
    }
    if (tail) {   /* the lanes past the row read the next row or the slack; not stored */
        j->tile_fn(&j->tg, 1, xrow + (size_t)nvec * 32, j->w, 0, 32, buf);
        j->epilogue(1, tail, buf, NULL, 0, j->ep, orow + (size_t)nvec * 32 * j->elem, 32);
    }
}

int fq_depthwise_flat(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w32, int saturate,
                      const fq_epilogue *ep, void *out, int isa, int num_threads) {
    int32_t cx = g->out_c;
    if (g->stride_w != 1 || g->dil_w != 1 || cx > 16 || 32 % cx || w32->channels != 32) return -2;
    dw_job j;
    dw_job_init(&j, g, xp, w32, saturate, ep, out, isa);
    int32_t wp = g->in_w + 2 * g->pad_w;
    j.tg.pix = 32;
    j.tg.tap_w = cx;
    j.tg.tap_h = (ptrdiff_t)g->dil_h * wp * cx;
    if (dw_offsets(&j)) return -1;
    fq_parallel_for((int64_t)g->batch * g->out_h, dw_flat_row, &j, dw_threads(g, num_threads));
    free(j.off_heap);
    return 0;
}
