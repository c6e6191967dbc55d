/* AVX-512 VNNI row kernel (conv.h fq_dw_rows_fn), exact: each input column's k_h taps are
 * grouped in fours down the column (taps (4hq .. 4hq + 3, kw)), one int32 lane per channel,
 * so one vpdpbusd sums x * w over four taps (u8 x s8, exact), as the tile kernels do along the
 * taps. A column's interleaved quads depend on the column only, not on the output pixel, so
 * they are built once into the column buffer and every output pixel reading the column (three
 * at stride 1 for k_w = 3) takes them from there.
 *
 * Channel order: the interleave (vpunpck{l,h}bw, then {l,h}wd, within 128-bit lanes) would put
 * channel 16L + 4k + d in dword d of lane L of quad k; permuting each loaded row's dwords first
 * (vpermd: dword 4L + k <- 4k + L) makes quad k hold channels 16k .. 16k + 15 in order, so the
 * weights are plain [channel][4] bytes and the sums are stored without a transpose.
 * Weight zero points: acc = sum x w - zw * sum x (the second sum by vpdpbusd against ones). */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

/* the column (x[rows 4hq..4hq+3][iw]) of 64 channels from c0 as four interleaved quads */
static inline void build_col64(const fq_dw_rows_geom *rg, int32_t iw, int32_t hq, int32_t c0, __mmask64 m,
                               __m512i xor_, __m512i pad, __m512i idx, uint8_t *dst) {
    __m512i x[4];
    int inside_w = iw >= 0 && iw < rg->in_w;
    for (int r = 0; r < 4; r++) {
        int32_t kh = 4 * hq + r;
        if (kh >= rg->k_h) {
            x[r] = _mm512_setzero_si512();          /* no tap: weight 0, and x 0 for sum x */
            continue;
        }
        __m512i v = pad;
        if (inside_w && rg->rows[kh])
            v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, rg->rows[kh] + (size_t)iw * rg->cx + c0), xor_);
        x[r] = _mm512_permutexvar_epi32(idx, v);
    }
    __m512i l01 = _mm512_unpacklo_epi8(x[0], x[1]), h01 = _mm512_unpackhi_epi8(x[0], x[1]);
    __m512i l23 = _mm512_unpacklo_epi8(x[2], x[3]), h23 = _mm512_unpackhi_epi8(x[2], x[3]);
    _mm512_store_si512((void *)(dst + 0), _mm512_unpacklo_epi16(l01, l23));
    _mm512_store_si512((void *)(dst + 64), _mm512_unpackhi_epi16(l01, l23));
    _mm512_store_si512((void *)(dst + 128), _mm512_unpacklo_epi16(h01, h23));
    _mm512_store_si512((void *)(dst + 192), _mm512_unpackhi_epi16(h01, h23));
}

/* the same on 32 channels (ymm): dword 4L + k <- 2k + L puts channels 8k .. 8k + 7 in quad k */
static inline void build_col32(const fq_dw_rows_geom *rg, int32_t iw, int32_t hq, int32_t c0, __mmask32 m,
                               __m256i xor_, __m256i pad, __m256i idx, uint8_t *dst) {
    __m256i x[4];
    int inside_w = iw >= 0 && iw < rg->in_w;
    for (int r = 0; r < 4; r++) {
        int32_t kh = 4 * hq + r;
        if (kh >= rg->k_h) {
            x[r] = _mm256_setzero_si256();
            continue;
        }
        __m256i v = pad;
        if (inside_w && rg->rows[kh])
            v = _mm256_xor_si256(_mm256_maskz_loadu_epi8(m, rg->rows[kh] + (size_t)iw * rg->cx + c0), xor_);
        x[r] = _mm256_permutevar8x32_epi32(v, idx);
    }
    __m256i l01 = _mm256_unpacklo_epi8(x[0], x[1]), h01 = _mm256_unpackhi_epi8(x[0], x[1]);
    __m256i l23 = _mm256_unpacklo_epi8(x[2], x[3]), h23 = _mm256_unpackhi_epi8(x[2], x[3]);
    _mm256_store_si256((__m256i *)(dst + 0), _mm256_unpacklo_epi16(l01, l23));
    _mm256_store_si256((__m256i *)(dst + 64), _mm256_unpackhi_epi16(l01, l23));
    _mm256_store_si256((__m256i *)(dst + 128), _mm256_unpacklo_epi16(h01, h23));
    _mm256_store_si256((__m256i *)(dst + 192), _mm256_unpackhi_epi16(h01, h23));
}

#define COL_STRIDE 256      /* bytes per (column, quad) in colbuf: four 64-byte vectors */

static inline __m512i ld(const uint8_t *p) { return _mm512_load_si512((const void *)p); }

/* k_w = 3, dil_w = 1, k_h <= 3, no weight zero point: no column buffer. Columns stream
 * through registers, each interleaved once and applied at once to the (up to three) output
 * pixels that read it, whose accumulators stay in registers; a pixel is stored when its last
 * column has passed. Stride 1: column ci is tap kw of pixel ci - kw. Stride 2: an even column
 * is tap 2 of pixel ci/2 - 1 and tap 0 of pixel ci/2, an odd one tap 1 of pixel (ci - 1)/2.
 * V / VW: the vector type and width (64 channels in zmm, 32 in ymm), Q(c): the column's quads. */
#define STREAM_3(V, VW, ZERO, LOADW, DPBUSD, STORE, BUILD)                                          \
    do {                                                                                            \
        V w0[4], w1[4], w2[4], q[4];                                                                \
        for (int k = 0; k < 4; k++) {                                                               \
            w0[k] = LOADW(wq + 0 * wstep + VW * k);                                                 \
            w1[k] = LOADW(wq + 1 * wstep + VW * k);                                                 \
            w2[k] = LOADW(wq + 2 * wstep + VW * k);                                                 \
        }                                                                                           \
        if (rg->stride_w == 1) {                                                                    \
            V old[4], mid[4];                                                                       \
            for (int k = 0; k < 4; k++) old[k] = mid[k] = ZERO;                                     \
            for (int32_t ci = 0; ci < n_out + 2; ci++) {                                            \
                BUILD(iw0 + ci, q);                                                                 \
                if (ci >= 2)                                                                        \
                    for (int k = 0; k < 4; k++) STORE(tile + (ci - 2) * 64 + (VW / 4) * k, DPBUSD(old[k], q[k], w2[k])); \
                for (int k = 0; k < 4; k++) {                                                       \
                    old[k] = DPBUSD(mid[k], q[k], w1[k]);                                           \
                    mid[k] = DPBUSD(ZERO, q[k], w0[k]);                                             \
                }                                                                                   \
            }                                                                                       \
        } else {                                                                                    \
            V cur[4];                                                                               \
            for (int k = 0; k < 4; k++) cur[k] = ZERO;                                              \
            for (int32_t ci = 0; ci < 2 * n_out + 1; ci++) {                                        \
                BUILD(iw0 + ci, q);                                                                 \
                if (ci & 1) {                                                                       \
                    for (int k = 0; k < 4; k++) cur[k] = DPBUSD(cur[k], q[k], w1[k]);               \
                } else {                                                                            \
                    if (ci >= 2)                                                                    \
                        for (int k = 0; k < 4; k++) STORE(tile + (ci / 2 - 1) * 64 + (VW / 4) * k, DPBUSD(cur[k], q[k], w2[k])); \
                    for (int k = 0; k < 4; k++) cur[k] = DPBUSD(ZERO, q[k], w0[k]);                 \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
    } while (0)

static inline void quads64(const fq_dw_rows_geom *rg, int32_t iw, int32_t c0, __mmask64 m, __m512i xor_,
                           __m512i pad, __m512i idx, __m512i *q) {
    __m512i x[3];
    int inside_w = iw >= 0 && iw < rg->in_w;
    for (int r = 0; r < 3; r++) {
        __m512i v = pad;
        if (r < rg->k_h && inside_w && rg->rows[r])
            v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, rg->rows[r] + (size_t)iw * rg->cx + c0), xor_);
        x[r] = _mm512_permutexvar_epi32(idx, v);
    }
    /* rows past k_h (k_h = 2, 3): their weights are 0; x = pad there is harmless then.
     * The fourth row of the quad is always past k_h here (k_h <= 3) */
    __m512i z = _mm512_setzero_si512();
    __m512i l01 = _mm512_unpacklo_epi8(x[0], x[1]), h01 = _mm512_unpackhi_epi8(x[0], x[1]);
    __m512i l23 = _mm512_unpacklo_epi8(x[2], z), h23 = _mm512_unpackhi_epi8(x[2], z);
    q[0] = _mm512_unpacklo_epi16(l01, l23);
    q[1] = _mm512_unpackhi_epi16(l01, l23);
    q[2] = _mm512_unpacklo_epi16(h01, h23);
    q[3] = _mm512_unpackhi_epi16(h01, h23);
}

static inline void quads32(const fq_dw_rows_geom *rg, int32_t iw, int32_t c0, __mmask32 m, __m256i xor_,
                           __m256i pad, __m256i idx, __m256i *q) {
    __m256i x[3];
    int inside_w = iw >= 0 && iw < rg->in_w;
    for (int r = 0; r < 3; r++) {
        __m256i v = pad;
        if (r < rg->k_h && inside_w && rg->rows[r])
            v = _mm256_xor_si256(_mm256_maskz_loadu_epi8(m, rg->rows[r] + (size_t)iw * rg->cx + c0), xor_);
        x[r] = _mm256_permutevar8x32_epi32(v, idx);
    }
    __m256i z = _mm256_setzero_si256();
    __m256i l01 = _mm256_unpacklo_epi8(x[0], x[1]), h01 = _mm256_unpackhi_epi8(x[0], x[1]);
    __m256i l23 = _mm256_unpacklo_epi8(x[2], z), h23 = _mm256_unpackhi_epi8(x[2], z);
    q[0] = _mm256_unpacklo_epi16(l01, l23);
    q[1] = _mm256_unpackhi_epi16(l01, l23);
    q[2] = _mm256_unpacklo_epi16(h01, h23);
    q[3] = _mm256_unpackhi_epi16(h01, h23);
}

#define LOADW64(p) _mm512_loadu_si512((const void *)(p))
#define STORE64(p, v) _mm512_store_si512((void *)(p), v)
#define LOADW32(p) _mm256_loadu_si256((const __m256i *)(p))
#define STORE32(p, v) _mm256_store_si256((__m256i *)(p), v)
#define BUILD64(iw, q) quads64(rg, iw, c0, m, xor_, pad, idx, q)
#define BUILD32(iw, q) quads32(rg, iw, c0, m, xor_, pad, idx, q)

static void stream3_64(const fq_dw_rows_geom *rg, int32_t iw0, int32_t n_out, const int8_t *wq, size_t wstep,
                       int32_t c0, int32_t nc, int32_t *tile) {
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i xor_ = _mm512_set1_epi8((char)rg->x_xor), pad = _mm512_set1_epi8((char)rg->pad_value);
    __mmask64 m = nc >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nc) - 1);
    STREAM_3(__m512i, 64, _mm512_setzero_si512(), LOADW64, _mm512_dpbusd_epi32, STORE64, BUILD64);
}

static void stream3_32(const fq_dw_rows_geom *rg, int32_t iw0, int32_t n_out, const int8_t *wq, size_t wstep,
                       int32_t c0, int32_t nc, int32_t *tile) {
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i xor_ = _mm256_set1_epi8((char)rg->x_xor), pad = _mm256_set1_epi8((char)rg->pad_value);
    __mmask32 m = nc >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << nc) - 1);
    STREAM_3(__m256i, 32, _mm256_setzero_si256(), LOADW32, _mm256_dpbusd_epi32, STORE32, BUILD32);
}

void fq_dw_rows_exact_avx512(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                             int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf) {
    int32_t hqn = w->col_quads;
    int32_t cols = (n_out - 1) * rg->stride_w + (rg->k_w - 1) * rg->dil_w + 1;
    int32_t iw0 = ow0 * rg->stride_w - rg->pad_w;
    size_t cp = (size_t)w->c_pad;
    size_t wstep = (size_t)hqn * cp * 4;               /* bytes between kernel columns of w_colq */
    const int8_t *wq0 = w->w_colq + (size_t)c0 * 4;
    int with_zw = !w->zw_all_zero;
    if (rg->k_w == 3 && rg->dil_w == 1 && rg->k_h <= 3 && rg->stride_w <= 2 && !with_zw) {
        if (nc > 32)
            stream3_64(rg, iw0, n_out, wq0, wstep, c0, nc, tile);
        else
            stream3_32(rg, iw0, n_out, wq0, wstep, c0, nc, tile);
        return;
    }
    if (nc > 32) {
        const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m512i xor_ = _mm512_set1_epi8((char)rg->x_xor), pad = _mm512_set1_epi8((char)rg->pad_value);
        __mmask64 m = nc >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nc) - 1);
        for (int32_t ci = 0; ci < cols; ci++)
            for (int32_t hq = 0; hq < hqn; hq++)
                build_col64(rg, iw0 + ci, hq, c0, m, xor_, pad, idx, colbuf + ((size_t)ci * hqn + hq) * COL_STRIDE);
        const __m512i ones = _mm512_set1_epi8(1);
        for (int32_t i = 0; i < n_out; i++) {
            __m512i a[4], s[4];
            for (int k = 0; k < 4; k++) a[k] = s[k] = _mm512_setzero_si512();
            for (int32_t kw = 0; kw < rg->k_w; kw++) {
                const uint8_t *c = colbuf + ((size_t)(i * rg->stride_w + kw * rg->dil_w) * hqn) * COL_STRIDE;
                for (int32_t hq = 0; hq < hqn; hq++, c += COL_STRIDE) {
                    const int8_t *wq = wq0 + (size_t)kw * wstep + (size_t)hq * cp * 4;
                    for (int k = 0; k < 4; k++) {
                        __m512i q = ld(c + 64 * k);
                        a[k] = _mm512_dpbusd_epi32(a[k], q, _mm512_loadu_si512((const void *)(wq + 64 * k)));
                        if (with_zw) s[k] = _mm512_dpbusd_epi32(s[k], q, ones);
                    }
                }
            }
            for (int k = 0; k < 4; k++) {
                if (with_zw)
                    a[k] = _mm512_sub_epi32(a[k], _mm512_mullo_epi32(s[k], _mm512_loadu_si512(
                                                                             (const void *)(w->zw + c0 + 16 * k))));
                _mm512_store_si512((void *)(tile + i * 64 + 16 * k), a[k]);
            }
        }
        return;
    }
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256i xor_ = _mm256_set1_epi8((char)rg->x_xor), pad = _mm256_set1_epi8((char)rg->pad_value);
    __mmask32 m = nc >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << nc) - 1);
    for (int32_t ci = 0; ci < cols; ci++)
        for (int32_t hq = 0; hq < hqn; hq++)
            build_col32(rg, iw0 + ci, hq, c0, m, xor_, pad, idx, colbuf + ((size_t)ci * hqn + hq) * COL_STRIDE);
    const __m256i ones = _mm256_set1_epi8(1);
    for (int32_t i = 0; i < n_out; i++) {
        __m256i a[4], s[4];
        for (int k = 0; k < 4; k++) a[k] = s[k] = _mm256_setzero_si256();
        for (int32_t kw = 0; kw < rg->k_w; kw++) {
            const uint8_t *c = colbuf + ((size_t)(i * rg->stride_w + kw * rg->dil_w) * hqn) * COL_STRIDE;
            for (int32_t hq = 0; hq < hqn; hq++, c += COL_STRIDE) {
                const int8_t *wq = wq0 + (size_t)kw * wstep + (size_t)hq * cp * 4;
                for (int k = 0; k < 4; k++) {
                    __m256i q = _mm256_load_si256((const __m256i *)(c + 64 * k));
                    a[k] = _mm256_dpbusd_epi32(a[k], q, _mm256_loadu_si256((const __m256i *)(wq + 32 * k)));
                    if (with_zw) s[k] = _mm256_dpbusd_epi32(s[k], q, ones);
                }
            }
        }
        for (int k = 0; k < 4; k++) {
            if (with_zw)
                a[k] = _mm256_sub_epi32(a[k], _mm256_mullo_epi32(s[k], _mm256_loadu_si256(
                                                                         (const __m256i *)(w->zw + c0 + 8 * k))));
            _mm256_store_si256((__m256i *)(tile + i * 64 + 8 * k), a[k]);
        }
    }
}

#endif
