/* Convolutions over the packed GEMM and the direct depthwise kernels.
 *
 *   layout.c        NCHW <-> NHWC: the input is copied once into a zero-point-padded NHWC
 *                   buffer (uint8 terms: int8 x is stored as x ^ 0x80, zero point + 128)
 *   im2col_body.h   rows of the GEMM's A matrix from that buffer, k ordered (kh, kw, c),
 *                   with fixed-size vector moves; compiled per ISA (im2col.c scalar, also the
 *                   exact 1x1 gather; im2col_avx2.c, im2col_avx512.c), the conv family's im2col
 *   conv.c          the driver: per group, 1x1 stride-1 straight to fq_gemm, else im2col in
 *                   row chunks then fq_gemm with the Linear layer's epilogues
 *   clip.c          the same GEMM over the taps inside the input only: windows of output
 *                   pixels keeping the same taps, runs of the packed K (fq_gemm_parts), the
 *                   padding's share moved into col_offset; a cost model per layer
 *   depthwise*.c    groups == in_channels: sum over taps of x * w per channel, scalar twin,
 *                   AVX2 and AVX-512, exact (vpmaddwd on int16 tap pairs) or FBGEMM's
 *                   saturating int16 tap pairs (vpmaddubsw), then the same epilogues
 *   the depthwise tile kernels of each ISA are the conv family of the backend table
 *   (runtime/backends.c): FASTQ_BACKEND / fq_set_backend pick them with every other family
 *
 * The padded value is the input zero point, so padded taps add (zx - zx) * w = 0 to acc,
 * as in torch. Arithmetic: docs/ARITHMETIC.md; the numpy oracle is tests/test_conv_kernels.py.
 */
#ifndef FASTQ_CONV_H
#define FASTQ_CONV_H

#include <stddef.h>
#include <stdint.h>
#include "fastq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2-D geometry (1-D: in_h = k_h = 1, stride_h = dil_h = 1, pad_h = 0). */
typedef struct {
    int32_t batch, in_c, in_h, in_w;
    int32_t out_c, groups;
    int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    int32_t out_h, out_w;           /* set by fq_conv_geometry_check */
} fq_conv_geometry;

/* A window of the output and the taps its pixels read: output pixels (n, oh, ow) for every
 * n, oh0 <= oh < oh1, ow0 <= ow < ow1, each reading only the taps kh0 <= kh < kh1,
 * kw0 <= kw < kw1 (pixel m of the window: n = m / (rows * cols), then oh, ow in row order).
 * The whole output with every tap is the plain im2col. */
typedef struct {
    int32_t oh0, oh1, ow0, ow1;
    int32_t kh0, kh1, kw0, kw1;
} fq_conv_window;

/* Checks the geometry (positive sizes, channels divisible by groups, an output of at least
 * one pixel, every buffer size below 2^31 elements) and sets out_h / out_w. 0 or -1. */
int fq_conv_geometry_check(fq_conv_geometry *g);

/* The padded NHWC buffer: [batch, in_h + 2 pad_h, in_w + 2 pad_w, in_c * replicate] bytes,
 * plus FQ_CONV_SLACK readable bytes after it (vector loads past the last channel). */
#define FQ_CONV_SLACK 128
size_t fq_conv_padded_bytes(const fq_conv_geometry *g, int32_t replicate);
/* xp[n, h + pad_h, w + pad_w, c * replicate + r] = x[n, c, h, w] ^ x_xor; the border and the
 * slack hold pad_value (the zero point in uint8 terms). x is NCHW bytes. */
void fq_conv_pad_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                      int32_t replicate, uint8_t *xp);
/* The same buffer from a channels-last input x [batch, in_h, in_w, in_c] (no layout copy:
 * row copies, the border filled, nothing zero-initialised first). */
void fq_conv_pad_from_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                           int32_t replicate, uint8_t *xp);
/* out[n, c, p] = in[n, p, c] for p < hw, c < channels; elem = 1 or 4 bytes */
void fq_nhwc_to_nchw(const void *in, int32_t batch, int64_t hw, int32_t channels, size_t elem, void *out);
/* out[n, p, c] = in[n, c, p] ^ x_xor (bytes) */
void fq_nchw_to_nhwc_u8(const uint8_t *in, int32_t batch, int64_t hw, int32_t channels, uint8_t x_xor,
                        uint8_t *out);

/* ---- convolution as GEMM -------------------------------------------------------------
 * w[g] packs group g's weights as [out_c / groups, k_h * k_w * (in_c / groups)] with k
 * ordered (kh, kw, c); ep[g] is its epilogue (col_offset from fq_col_offsets with the zero
 * point in uint8 terms); xp is fq_conv_pad_nhwc's buffer (replicate 1); out is NHWC
 * [batch, out_h, out_w, out_c] of elem-byte elements. Returns 0, or -1 when out of memory. */
/* a_signed: xp holds int8 bytes (the 1x1 direct case reading the input in place); col: a
 * buffer of fq_conv_col_bytes(g) bytes for the im2col rows (NULL when direct). */
int fq_conv_gemm_direct(const fq_conv_geometry *g);
size_t fq_conv_col_bytes(const fq_conv_geometry *g);
int fq_conv2d_gemm(const fq_conv_geometry *g, const uint8_t *xp, int a_signed, const fq_packed_weights *w,
                   const fq_epilogue *ep, uint8_t *col, void *out, int num_threads);

/* ---- convolution as GEMM over the taps inside the input (clip.c) ---------------------
 * An output pixel whose window overlaps the padding reads pad_value (the zero point) there:
 * those taps add (zx - zx) * w = 0 to acc. The output splits into windows (conv.h
 * fq_conv_window) of pixels that keep the same taps inside the input; each window's GEMM
 * multiplies only those (runs of the packed K, fq_k_runs), its col_offset corrected by what
 * the padding's taps would have added in the padded sum:
 *   col_offset'[n] = col_offset[n] + pad * sum_{t left out} (tap_sums[t][n] - cg * zw[n])
 * (wrapping int32), so acc is the padded computation's, bit for bit. fq_conv_clip_plan_make
 * says whether a layer takes this path: the group's channels are a multiple of 4 (each tap
 * whole k-groups), the windows and runs fit their bounds, and (FQ_CONV_CLIP_AUTO) the cost
 * model in clip.c expects a gain. */
#define FQ_CONV_CLIP_BANDS_MAX 8
typedef struct {
    int32_t n_h, n_w;                                /* bands along h and w */
    fq_conv_window band_h[FQ_CONV_CLIP_BANDS_MAX];   /* oh0, oh1, kh0, kh1 used */
    fq_conv_window band_w[FQ_CONV_CLIP_BANDS_MAX];   /* ow0, ow1, kw0, kw1 used */
    double fraction;                                 /* products left out / all products */
} fq_conv_clip_plan;
/* 1 and the plan when the layer (w: group 0's weights) takes the clipped path, else 0. */
int fq_conv_clip_plan_make(const fq_conv_geometry *g, const fq_packed_weights *w, fq_conv_clip_plan *plan);
/* When: the cost model, every layer that qualifies, never (tests and benchmarks). Returns the
 * previous mode, or -1 for an unknown one (nothing changed). */
enum { FQ_CONV_CLIP_AUTO = 0, FQ_CONV_CLIP_ALWAYS = 1, FQ_CONV_CLIP_NEVER = 2 };
int fq_conv_set_clip(int mode);
long long fq_conv_clip_runs(void);   /* layers run on this path so far (tests) */
/* Bytes of scratch fq_conv2d_gemm_clipped needs beyond the column buffer. */
size_t fq_conv_clip_bytes(const fq_conv_geometry *g, const fq_packed_weights *w, size_t elem);
int fq_conv2d_gemm_clipped(const fq_conv_geometry *g, const fq_conv_clip_plan *plan, const uint8_t *xp,
                           uint8_t pad_value, const fq_packed_weights *w, const fq_epilogue *ep,
                           const int32_t *const *tap_sums, uint8_t *col, uint8_t *scratch, void *out,
                           int num_threads);


/* ---- depthwise ------------------------------------------------------------------------
 * Weights for one depthwise layer: T = k_h * k_w taps, C channels (the output channels;
 * with a channel multiplier m the input is replicated m times by fq_conv_pad_nhwc).
 *   exact:      tile = sum_t x[t, c] * wd[t, c],  wd = w - zw (int16)
 *   saturating: tile = sum_pairs sat16(x[2p] w[2p] + x[2p+1] w[2p+1]) - zw[c] * sum_t x[t, c]
 *               (FBGEMM's vpmaddubsw pairs over the taps in kh-major order; an odd last tap
 *               pairs with x = 0)
 * The packed arrays (fq_dw_pack) hold both layouts per the ISA's needs; the epilogue's
 * col_offset supplies the zero-point and bias terms. */
typedef struct {
    int32_t taps, channels;
    int32_t pairs;                  /* (taps + 1) / 2 */
    int32_t c_pad;                  /* channels rounded up to 64 */
    int16_t *wd_pairs;              /* [pairs][c_pad / 32][64]: tap pairs (2p, 2p+1) of 32
                                       channels in the lane order of vpunpck{l,h}wd (see
                                       depthwise.c); a missing tap is 0 */
    int8_t *w_pairs;                /* [pairs][c_pad][2]: raw w of taps 2p, 2p+1 per channel */
    int32_t *zw;                    /* [c_pad] weight zero points, 0 in padding */
    int16_t *wd;                    /* [taps][c_pad]: w - zw (the scalar twin's layout) */
    int8_t *w;                      /* [taps][c_pad]: raw w */
    /* AVX-512, 64 channels per step (depthwise_avx512.c), 0 for a missing tap:
     *   w_quads  [(taps + 3) / 4][c_pad / 64][4][64]: vector k, 128-bit lane L, dword d holds
     *            w of taps 4q..4q+3 of channel 16L + 4k + d (vpdpbusd on 4 taps of one channel)
     *   w_pairs64 [pairs][c_pad / 64][2][64]: vector h, lane L, word j holds w of taps 2p, 2p+1
     *            of channel 16L + 8h + j (vpunpck{l,h}bw order for vpmaddubsw) */
    int8_t *w_quads;
    int8_t *w_pairs64;
    int32_t quads;
    int32_t zw_all_zero;            /* no weight zero point: the kernels skip sum_t x */
    /* The row kernels (depthwise_rows*.c) group taps down a kernel column: k_w, k_h and
     * channels in natural order, 0 for kh >= k_h:
     *   w_colq  [k_w][col_quads][c_pad][4]: raw w of taps (4 hq + s, kw), s < 4 (vpdpbusd)
     *   wd_colp [k_w][col_pairs][c_pad][2]: w - zw of taps (2 hp + s, kw), s < 2 (vpmaddwd) */
    int8_t *w_colq;
    int16_t *wd_colp;
    int32_t k_h, k_w, col_quads, col_pairs;
} fq_dw_weights;

/* w: [channels, taps] int8 (torch's [C, 1, kh, kw] flattened, taps = k_h * k_w), zw per
 * channel (or one when zw_per_channel == 0). 0, or -1 when out of memory. */
int fq_dw_pack(const int8_t *w, int32_t channels, int32_t k_h, int32_t k_w, const int32_t *zw, int zw_per_channel,
               fq_dw_weights *out);
void fq_dw_free(fq_dw_weights *w);
/* col_offset[c] for the exact kernel: -zx * sum_t wd[t, c] + bias[c]; for the saturating one:
 * taps * zx * zw[c] - zx * sum_t w[t, c] + bias[c]; wrapping int32, c_pad entries */
void fq_dw_col_offsets(const fq_dw_weights *w, int32_t x_zero_point, const int32_t *int_bias,
                       int saturate, int32_t *col_offset);

/* One tile: mr (<= 8) output pixels along a row, 64 channels from c0 (nc valid).
 * x points at the padded buffer at the top-left tap of the first pixel, channel 0 of
 * the block (only the vectors covering nc channels are computed); pix = bytes between output pixels (stride_w * channels), tap_w / tap_h = bytes
 * between taps along w / h. tile[i*64 + c] is written for c < 64. */
typedef struct {
    int32_t k_h, k_w;
    ptrdiff_t pix, tap_w, tap_h;
    /* off[t] = (t / k_w) * tap_h + (t % k_w) * tap_w for t < taps, and off[taps] = off[taps - 1]
     * (the partner of an odd last tap: weight 0, any readable address); set by the driver so
     * no kernel divides per tap */
    const ptrdiff_t *off;
} fq_dw_tile_geom;
typedef void (*fq_dw_tile_fn)(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x,
                              const fq_dw_weights *w, int32_t c0, int32_t nc, int32_t *tile);

/* The row kernels (exact arithmetic, channel multiplier 1): n_out output pixels of one output
 * row from ow0, 64 channels from c0 (nc valid), read from the unpadded NHWC input. Each input
 * column the pixels need is loaded once, its k_h taps interleaved per channel into a column
 * buffer (colbuf, FQ_DW_ROWS_COLBUF bytes, 64-byte aligned), and every output pixel that reads
 * the column takes it from there (a 3x3 stride-1 row loads and interleaves each column once,
 * not three times). Taps outside the input (a NULL row, a column < 0 or >= in_w) read
 * pad_value, the zero point, as the padded buffer would: the tile equals the tile kernels'
 * tile[i*64 + c] = sum_t x[t, c] * (w - zw)[t, c] for c < nc. */
typedef struct {
    int32_t k_h, k_w, stride_w, dil_w, pad_w, in_w;
    int32_t cx;                     /* channels: bytes between input pixels */
    uint8_t x_xor, pad_value;       /* x ^ x_xor is the uint8 value */
    const uint8_t *const *rows;     /* k_h input rows (pixel 0, channel 0), NULL in the padding */
} fq_dw_rows_geom;
#define FQ_DW_ROWS_COLBUF 16384
/* bytes of colbuf one input column takes (the largest over the ISAs: AVX2's int16 pairs) */
#define FQ_DW_ROWS_COL_BYTES(k_h) ((size_t)(((k_h) + 1) / 2) * 256)
typedef void (*fq_dw_rows_fn)(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                              int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf);

/* The window's whole-output, all-taps value for g. */
fq_conv_window fq_conv_window_all(const fq_conv_geometry *g);

/* Rows m0 <= m < m1 of group `group`'s im2col matrix over the window's pixels and taps (k =
 * kh, kw, c over the window's taps: (kh1 - kh0) * (kw1 - kw0) * cg bytes a row, written from
 * col on) from the padded buffer xp. The moves may write up to 63 bytes past the last row (the
 * column buffer's COL_SLACK) and read up to 63 past a run (the padded buffer's FQ_CONV_SLACK):
 * the same bytes whatever the ISA. Not for 1x1 unpadded layers (fq_gather_1x1 reads their
 * input in place, exactly; it takes the whole window only). */
typedef void (*fq_im2col_fn)(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *xp,
                             int32_t group, int64_t m0, int64_t m1, uint8_t *col);
void fq_im2col_scalar(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *xp, int32_t group,
                      int64_t m0, int64_t m1, uint8_t *col);
void fq_im2col_avx2(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *xp, int32_t group,
                    int64_t m0, int64_t m1, uint8_t *col);
void fq_im2col_avx512(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *xp, int32_t group,
                      int64_t m0, int64_t m1, uint8_t *col);
/* 1x1 unpadded (any stride): row m = the cg bytes of input pixel (n, oh * sh, ow * sw) of the
 * NHWC input x, copied exactly (nothing read past x's end) */
void fq_gather_1x1(const fq_conv_geometry *g, const fq_conv_window *win, const uint8_t *x, int32_t group,
                   int64_t m0, int64_t m1, uint8_t *col);

/* The conv family's kernels of one ISA (a field of fq_kernels, runtime/backends.c). */
typedef struct fq_conv_kernels {
    const char *name;
    fq_dw_tile_fn dw_exact;
    fq_dw_tile_fn dw_saturate;
    fq_dw_rows_fn dw_rows_exact;
    fq_im2col_fn im2col;
} fq_conv_kernels;
const fq_conv_kernels *fq_conv_kernels_scalar(void);
/* the SIMD row kernels, each defined where its ISA is compiled (depthwise_rows_avx2.c,
 * depthwise_rows_avx512.c) and named in that ISA's table */
void fq_dw_rows_exact_avx2(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                           int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf);
void fq_dw_rows_exact_avx512(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                             int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf);
const fq_conv_kernels *fq_conv_kernels_avx2(void);         /* defined where FQ_COMPILE_AVX2 */
const fq_conv_kernels *fq_conv_kernels_avx512vnni(void);   /* defined where FQ_COMPILE_AVX512 */

/* The driver: out NHWC [batch, out_h, out_w, channels] (elem per ep->kind) from the padded
 * buffer xp (replicate = out_c / in_c). isa: -1 the current backend, or a backend id to force
 * its conv kernels and epilogues (tests; scalar when they cannot run here). The run counts
 * under the conv and epilogue families (fq_family_runs). */
int fq_depthwise(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w, int saturate,
                 const fq_epilogue *ep, void *out, int isa, int num_threads);

/* The same for out_c in {1, 2, 4, 8, 16} with stride_w = dil_w = 1 (depthwise.c: each row as a
 * flat vector of 32-value "pixels"): w32 packs 32 virtual channels, w[l mod out_c]; ep's
 * per-column arrays follow the same 32 virtual channels. -2 when the geometry does not qualify. */
int fq_depthwise_flat(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w32, int saturate,
                      const fq_epilogue *ep, void *out, int isa, int num_threads);

/* The row kernels' driver (depthwise_rows.c): exact arithmetic, out_c == in_c, x the
 * unpadded NHWC input (x ^ x_xor in uint8 terms; no padded copy). -2 when the geometry does
 * not qualify (k_h < 2, a kernel too wide for the column buffer), -1 when out of memory. */
int fq_depthwise_rows(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                      const fq_dw_weights *w, const fq_epilogue *ep, void *out, int isa, int num_threads);
int fq_depthwise_rows_ok(const fq_conv_geometry *g);

/* ---- one convolution call -------------------------------------------------------------
 * Everything conv2d does between its argument checks and its return, in C: the padded
 * buffer (skipped where the kernel can read the input itself), the kernel, the NCHW
 * transpose. Temporary buffers come from a per-thread scratch area that grows as needed and
 * is reused by the next call on that thread (no allocation, no page faults in steady state;
 * two threads never share one). */
enum { FQ_CONV_PATH_GEMM = 0, FQ_CONV_PATH_DW = 1, FQ_CONV_PATH_DW_SATURATE = 2 };
typedef struct {
    const fq_conv_geometry *g;      /* checked by fq_conv_geometry_check */
    const uint8_t *x;               /* NCHW or NHWC bytes of the input */
    int x_nhwc;
    uint8_t x_xor;                  /* 0x80 for int8 input (uint8 terms inside) */
    uint8_t pad_value;              /* the input zero point in uint8 terms */
    int path;                       /* FQ_CONV_PATH_* */
    const fq_packed_weights *pw;    /* GEMM: one per group */
    const fq_epilogue *eps;         /* GEMM: one per group; depthwise: eps[0] */
    /* GEMM: per group, tap_sums[g][t * n_padded + n] = sum over the group's channels c of
     * w[n, (t, c)] for tap t = kh * k_w + kw (fq_conv_tap_sums), or tap_sums NULL: what a
     * window that leaves taps out needs to correct col_offset (see fq_conv2d_gemm) */
    const int32_t *const *tap_sums;
    const fq_dw_weights *dw;        /* depthwise */
    const fq_dw_weights *dw32;      /* depthwise, out_c in {1, 2, 4, 8, 16}, or NULL */
    const fq_epilogue *ep32;        /* its epilogue over the 32 virtual channels, or NULL */
    void *y;                        /* the output */
    int y_nhwc;                     /* y is NHWC (else NCHW) */
    int num_threads;
} fq_conv_call;
/* 0, or -1 when out of memory. */
int fq_conv2d_run(const fq_conv_call *c);
/* The calling thread's scratch area of at least bytes (64-byte aligned), or NULL when out of
 * memory. Valid until this thread's next call; freed when the thread exits. */
uint8_t *fq_conv_scratch(size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
