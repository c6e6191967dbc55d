/* AVX2 depthwise tiles (layouts: depthwise.c): 16 channels per ymm pair. Exact: two taps per
 * vpmaddwd on int16 (x, wd) pairs. Saturating: FBGEMM's vpmaddubsw byte pairs. */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2,fma")
#include <immintrin.h>

static inline ptrdiff_t tap_offset(const fq_dw_tile_geom *tg, int32_t t) { return tg->off[t]; }

static void dw_exact_avx2(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                          int32_t c0, int32_t nc, int32_t *tile) {
    int32_t taps = tg->k_h * tg->k_w, pairs = (taps + 1) / 2;
    size_t blocks = (size_t)w->c_pad / 32;
    for (int32_t q = 0; q < (nc + 15) / 16; q++) {            /* 16-channel quarter of the 64 */
        const int16_t *wb = w->wd_pairs + ((size_t)c0 / 32 + q / 2) * 64 + 16 * (q & 1);
        for (int32_t i = 0; i < mr; i++) {
            const uint8_t *xi = x + i * tg->pix + 16 * q;
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            for (int32_t p = 0; p < pairs; p++) {
                int32_t tb = 2 * p + 1 < taps ? 2 * p + 1 : 2 * p;
                __m256i xa = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xi + tap_offset(tg, 2 * p))));
                __m256i xb = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xi + tap_offset(tg, tb))));
                const int16_t *wp = wb + (size_t)p * blocks * 64;
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb),
                                                            _mm256_load_si256((const __m256i *)wp)));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb),
                                                            _mm256_load_si256((const __m256i *)(wp + 32))));
            }
            /* lo = channels 0-3, 8-11; hi = 4-7, 12-15 */
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    }
}

static void dw_saturate_avx2(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                             int32_t c0, int32_t nc, int32_t *tile) {
    int32_t taps = tg->k_h * tg->k_w, pairs = (taps + 1) / 2;
    size_t cp = (size_t)w->c_pad;
    const __m256i ones = _mm256_set1_epi8(1);
    for (int32_t q = 0; q < (nc + 15) / 16; q++) {
        int32_t cb = c0 + 16 * q;
        __m256i zw0 = _mm256_loadu_si256((const __m256i *)(w->zw + cb));
        __m256i zw1 = _mm256_loadu_si256((const __m256i *)(w->zw + cb + 8));
        for (int32_t i = 0; i < mr; i++) {
            const uint8_t *xi = x + i * tg->pix + 16 * q;
            __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
            for (int32_t p = 0; p < pairs; p++) {
                __m128i xa = _mm_loadu_si128((const __m128i *)(xi + tap_offset(tg, 2 * p)));
                __m128i xb = 2 * p + 1 < taps ? _mm_loadu_si128((const __m128i *)(xi + tap_offset(tg, 2 * p + 1)))
                                              : _mm_setzero_si128();
                __m256i xab = _mm256_set_m128i(_mm_unpackhi_epi8(xa, xb), _mm_unpacklo_epi8(xa, xb));
                __m256i wab = _mm256_load_si256((const __m256i *)(w->w_pairs + ((size_t)p * cp + cb) * 2));
                __m256i prod = _mm256_maddubs_epi16(xab, wab);
                __m256i xs = _mm256_maddubs_epi16(xab, ones);
                acc0 = _mm256_add_epi32(acc0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(prod)));
                acc1 = _mm256_add_epi32(acc1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(prod, 1)));
                s0 = _mm256_add_epi32(s0, _mm256_cvtepi16_epi32(_mm256_castsi256_si128(xs)));
                s1 = _mm256_add_epi32(s1, _mm256_cvtepi16_epi32(_mm256_extracti128_si256(xs, 1)));
            }
            acc0 = _mm256_sub_epi32(acc0, _mm256_mullo_epi32(zw0, s0));
            acc1 = _mm256_sub_epi32(acc1, _mm256_mullo_epi32(zw1, s1));
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q), acc0);
            _mm256_store_si256((__m256i *)(tile + i * 64 + 16 * q + 8), acc1);
        }
    }
}

static const fq_conv_kernels avx2_kernels = {"avx2", dw_exact_avx2, dw_saturate_avx2, fq_dw_rows_exact_avx2, fq_im2col_avx2};
const fq_conv_kernels *fq_conv_kernels_avx2(void) { return &avx2_kernels; }
#endif
