/* AVX-512 depthwise tiles (layouts: depthwise.c). Exact: 32 channels per zmm pair, two
 * taps per vpdpwssd (int16 x int16 pairs summed into int32, no saturation). Saturating:
 * FBGEMM's vpmaddubsw on (x[2p], x[2p+1]) x (w[2p], w[2p+1]) byte pairs, int16 saturated,
 * then widened and summed exactly, 32 channels per step. */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

static inline ptrdiff_t tap_offset(const fq_dw_tile_geom *tg, int32_t t) { return tg->off[t]; }

static void dw_exact_avx512(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                            int32_t c0, int32_t nc, int32_t *tile) {
    int32_t taps = tg->k_h * tg->k_w, pairs = (taps + 1) / 2;
    size_t blocks = (size_t)w->c_pad / 32;
    /* lane order of vpunpck{l,h}wd back to channel order (depthwise.c) */
    const __m512i idx0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i idx1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int32_t h = 0; h < (nc + 31) / 32; h++) {
        const int16_t *wb = w->wd_pairs + ((size_t)c0 / 32 + h) * 64;
        for (int32_t i = 0; i < mr; i++) {
            const uint8_t *xi = x + i * tg->pix + 32 * h;
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (int32_t p = 0; p < pairs; p++) {
                int32_t tb = 2 * p + 1 < taps ? 2 * p + 1 : 2 * p;   /* the missing tap has weight 0 */
                __m512i xa = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(xi + tap_offset(tg, 2 * p))));
                __m512i xb = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(xi + tap_offset(tg, tb))));
                const int16_t *wp = wb + (size_t)p * blocks * 64;
                lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(xa, xb), _mm512_load_si512((const void *)wp));
                hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(xa, xb), _mm512_load_si512((const void *)(wp + 32)));
            }
            _mm512_store_si512((void *)(tile + i * 64 + 32 * h), _mm512_permutex2var_epi32(lo, idx0, hi));
            _mm512_store_si512((void *)(tile + i * 64 + 32 * h + 16), _mm512_permutex2var_epi32(lo, idx1, hi));
        }
    }
}

static void dw_saturate_avx512(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                               int32_t c0, int32_t nc, int32_t *tile) {
    int32_t taps = tg->k_h * tg->k_w, pairs = (taps + 1) / 2;
    size_t cp = (size_t)w->c_pad;
    const __m512i ones = _mm512_set1_epi8(1);
    for (int32_t h = 0; h < (nc + 31) / 32; h++) {
        int32_t cb = c0 + 32 * h;
        __m512i zw0 = _mm512_loadu_si512((const void *)(w->zw + cb));
        __m512i zw1 = _mm512_loadu_si512((const void *)(w->zw + cb + 16));
        for (int32_t i = 0; i < mr; i++) {
            const uint8_t *xi = x + i * tg->pix + 32 * h;
            __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
            for (int32_t p = 0; p < pairs; p++) {
                __m256i xa = _mm256_loadu_si256((const __m256i *)(xi + tap_offset(tg, 2 * p)));
                /* an odd last tap pairs with x = 0, as FBGEMM's kernels do */
                __m256i xb = 2 * p + 1 < taps ? _mm256_loadu_si256((const __m256i *)(xi + tap_offset(tg, 2 * p + 1)))
                                              : _mm256_setzero_si256();
                __m256i l = _mm256_unpacklo_epi8(xa, xb), u = _mm256_unpackhi_epi8(xa, xb);
                /* byte pairs of channels 0..15 | 16..31 in channel order */
                __m512i xab = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_permute2x128_si256(l, u, 0x20)),
                                                 _mm256_permute2x128_si256(l, u, 0x31), 1);
                __m512i wab = _mm512_load_si512((const void *)(w->w_pairs + ((size_t)p * cp + cb) * 2));
                __m512i prod = _mm512_maddubs_epi16(xab, wab);
                __m512i xs = _mm512_maddubs_epi16(xab, ones);
                acc0 = _mm512_add_epi32(acc0, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(prod)));
                acc1 = _mm512_add_epi32(acc1, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(prod, 1)));
                s0 = _mm512_add_epi32(s0, _mm512_cvtepi16_epi32(_mm512_castsi512_si256(xs)));
                s1 = _mm512_add_epi32(s1, _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(xs, 1)));
            }
            acc0 = _mm512_sub_epi32(acc0, _mm512_mullo_epi32(zw0, s0));
            acc1 = _mm512_sub_epi32(acc1, _mm512_mullo_epi32(zw1, s1));
            _mm512_store_si512((void *)(tile + i * 64 + 32 * h), acc0);
            _mm512_store_si512((void *)(tile + i * 64 + 32 * h + 16), acc1);
        }
    }
}

static const fq_conv_kernels avx512_kernels = {"avx512vnni", dw_exact_avx512, dw_saturate_avx512};
const fq_conv_kernels *fq_conv_kernels_avx512vnni(void) { return &avx512_kernels; }
#endif
