/* AVX2 row kernel (conv.h fq_dw_rows_fn), exact: the tile kernel's int16 tap pairs, grouped
 * down each input column (taps (2p, 2p + 1) of kernel column kw), so one vpmaddwd gives
 * x[2p] wd[2p] + x[2p+1] wd[2p+1] per channel (exact: |.| <= 2 * 255 * 255) and the pairs of a
 * column, built once into the column buffer, serve every output pixel that reads the column.
 *
 * 16 channels per step: x widened to int16 and its 64-bit quarters reordered (0, 2, 1, 3) so
 * that vpunpck{l,h}wd (within 128-bit lanes) give channels 0..7 and 8..15 in order: the
 * weights are plain [channel][2] int16 and the sums are stored as they come. */
#include <string.h>
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#define COL_STRIDE 256      /* bytes per (column, pair): four 16-channel steps of 2 ymm */

/* 16 channels of input pixel iw of row kh (from channel c), as int16, reordered */
static inline __m256i load16(const fq_dw_rows_geom *rg, int32_t kh, int32_t iw, int32_t c, __m128i xor_,
                             __m256i pad) {
    if (kh >= rg->k_h) return _mm256_setzero_si256();
    if (!rg->rows[kh] || iw < 0 || iw >= rg->in_w) return pad;
    const uint8_t *p = rg->rows[kh] + (size_t)iw * rg->cx + c;
    __m128i v;
    if (c + 16 <= rg->cx) {
        v = _mm_loadu_si128((const __m128i *)p);
    } else {                     /* the last channels of a pixel: no read past the input */
        uint8_t b[16] = {0};
        memcpy(b, p, (size_t)(rg->cx - c));
        v = _mm_loadu_si128((const __m128i *)b);
    }
    return _mm256_permute4x64_epi64(_mm256_cvtepu8_epi16(_mm_xor_si128(v, xor_)), 0xD8);
}

void fq_dw_rows_exact_avx2(const fq_dw_rows_geom *rg, int32_t ow0, int32_t n_out, const fq_dw_weights *w,
                           int32_t c0, int32_t nc, int32_t *tile, uint8_t *colbuf) {
    int32_t hpn = w->col_pairs, steps = (nc + 15) / 16;
    int32_t cols = (n_out - 1) * rg->stride_w + (rg->k_w - 1) * rg->dil_w + 1;
    int32_t iw0 = ow0 * rg->stride_w - rg->pad_w;
    size_t cp = (size_t)w->c_pad;
    const __m128i xor_ = _mm_set1_epi8((char)rg->x_xor);
    const __m256i pad = _mm256_set1_epi16(rg->pad_value);
    for (int32_t ci = 0; ci < cols; ci++)
        for (int32_t p = 0; p < hpn; p++)
            for (int32_t q = 0; q < steps; q++) {
                __m256i xa = load16(rg, 2 * p, iw0 + ci, c0 + 16 * q, xor_, pad);
                __m256i xb = load16(rg, 2 * p + 1, iw0 + ci, c0 + 16 * q, xor_, pad);
                uint8_t *d = colbuf + ((size_t)ci * hpn + p) * COL_STRIDE + 64 * q;
                _mm256_store_si256((__m256i *)d, _mm256_unpacklo_epi16(xa, xb));
                _mm256_store_si256((__m256i *)(d + 32), _mm256_unpackhi_epi16(xa, xb));
            }
    size_t wstep = (size_t)hpn * cp * 2;                /* int16 between kernel columns of wd_colp */
    for (int32_t q = 0; q < steps; q++) {
        const int16_t *wq0 = w->wd_colp + (size_t)(c0 + 16 * q) * 2;
        for (int32_t i = 0; i < n_out; i++) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            for (int32_t kw = 0; kw < rg->k_w; kw++) {
                const uint8_t *c = colbuf + ((size_t)(i * rg->stride_w + kw * rg->dil_w) * hpn) * COL_STRIDE + 64 * q;
                const int16_t *wp = wq0 + (size_t)kw * wstep;
                for (int32_t p = 0; p < hpn; p++, c += COL_STRIDE, wp += cp * 2) {
                    lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)c),
                                                                _mm256_loadu_si256((const __m256i *)wp)));
                    hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_load_si256((const __m256i *)(c + 32)),
                                                                _mm256_loadu_si256((const __m256i *)(wp + 16))));
                }
            }
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q), lo);
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q + 8), hi);
        }
    }
}

#endif
