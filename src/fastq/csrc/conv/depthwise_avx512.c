/* AVX-512 depthwise tiles (layouts: conv.h, depthwise.c), 64 channels (one zmm of bytes) per
 * step, no widening of x before the multiply:
 *   exact:      four taps of one channel per int32 lane: the byte vectors of taps 4q..4q+3 are
 *               interleaved (vpunpck{l,h}bw, then {l,h}wd) and vpdpbusd sums x * w over the
 *               four (u8 x s8, exact); acc = sum_t x w - zw * sum_t x (the second term only
 *               with weight zero points), the same tile value as sum_t x (w - zw)
 *   saturating: FBGEMM's (x[2p], x[2p+1]) byte pairs into vpmaddubsw (int16, saturated), each
 *               int16 widened and summed exactly by vpdpwssd against (1, 0) / (0, 1) selectors
 *               (even / odd channels), then - zw * sum_t x
 * The lane order of the interleave is undone once per pixel (store_lanes). */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

/* a, b, c, d hold channels 16L + 4k .. 16L + 4k + 3 in lane L (k = 0, 1, 2, 3 for a .. d):
 * a 4 x 4 transpose of 128-bit lanes puts channels 0..63 in order at t */
static inline void store_lanes(int32_t *t, __m512i a, __m512i b, __m512i c, __m512i d) {
    __m512i t0 = _mm512_shuffle_i32x4(a, b, 0x44), t1 = _mm512_shuffle_i32x4(a, b, 0xEE);
    __m512i t2 = _mm512_shuffle_i32x4(c, d, 0x44), t3 = _mm512_shuffle_i32x4(c, d, 0xEE);
    _mm512_store_si512((void *)(t + 0), _mm512_shuffle_i32x4(t0, t2, 0x88));
    _mm512_store_si512((void *)(t + 16), _mm512_shuffle_i32x4(t0, t2, 0xDD));
    _mm512_store_si512((void *)(t + 32), _mm512_shuffle_i32x4(t1, t3, 0x88));
    _mm512_store_si512((void *)(t + 48), _mm512_shuffle_i32x4(t1, t3, 0xDD));
}

/* tile[c] -= zw[c] * xsum[c] for the 64 channels */
static inline void subtract_zw(int32_t *tile, const int32_t *xsum, const int32_t *zw) {
    for (int v = 0; v < 4; v++) {
        __m512i a = _mm512_load_si512((const void *)(tile + 16 * v));
        __m512i m = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(zw + 16 * v)),
                                       _mm512_load_si512((const void *)(xsum + 16 * v)));
        _mm512_store_si512((void *)(tile + 16 * v), _mm512_sub_epi32(a, m));
    }
}

static inline __m512i load_tap(const uint8_t *xi, const fq_dw_tile_geom *tg, int32_t t, int32_t taps) {
    /* a missing tap reads as 0 (its weight is 0 too; the x sum must not count it) */
    return t < taps ? _mm512_loadu_si512((const void *)(xi + tg->off[t])) : _mm512_setzero_si512();
}

/* The same kernels on 32 channels (lanes 0 and 1 of the 64-channel layouts): layers or
 * blocks of at most 32 channels do not pay for 64. */
static inline __m256i load_tap32(const uint8_t *xi, const fq_dw_tile_geom *tg, int32_t t, int32_t taps) {
    return t < taps ? _mm256_loadu_si256((const __m256i *)(xi + tg->off[t])) : _mm256_setzero_si256();
}

static inline void store_lanes32(int32_t *t, __m256i a, __m256i b, __m256i c, __m256i d) {
    _mm256_store_si256((__m256i *)(t + 0), _mm256_permute2x128_si256(a, b, 0x20));
    _mm256_store_si256((__m256i *)(t + 8), _mm256_permute2x128_si256(c, d, 0x20));
    _mm256_store_si256((__m256i *)(t + 16), _mm256_permute2x128_si256(a, b, 0x31));
    _mm256_store_si256((__m256i *)(t + 24), _mm256_permute2x128_si256(c, d, 0x31));
}

static inline void subtract_zw32(int32_t *tile, const int32_t *xsum, const int32_t *zw) {
    for (int v = 0; v < 2; v++) {
        __m512i a = _mm512_load_si512((const void *)(tile + 16 * v));
        __m512i m = _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(zw + 16 * v)),
                                       _mm512_load_si512((const void *)(xsum + 16 * v)));
        _mm512_store_si512((void *)(tile + 16 * v), _mm512_sub_epi32(a, m));
    }
}

static inline void dw_exact_avx512_32(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                            int32_t c0, int32_t nc, int32_t *tile) {
    (void)nc;
    int32_t taps = tg->k_h * tg->k_w;
    size_t blocks = (size_t)w->c_pad / 64, blk = (size_t)c0 / 64;
    int with_zw = !w->zw_all_zero;
    const __m256i ones = _mm256_set1_epi8(1);
    int32_t xsum[32] __attribute__((aligned(64)));
    for (int32_t i = 0; i < mr; i++) {
        const uint8_t *xi = x + i * tg->pix;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        __m256i s0 = a0, s1 = a0, s2 = a0, s3 = a0;
        for (int32_t q = 0; q < w->quads; q++) {
            int32_t t = 4 * q;
            __m256i x0 = load_tap32(xi, tg, t, taps), x1 = load_tap32(xi, tg, t + 1, taps);
            __m256i x2 = load_tap32(xi, tg, t + 2, taps), x3 = load_tap32(xi, tg, t + 3, taps);
            __m256i l01 = _mm256_unpacklo_epi8(x0, x1), h01 = _mm256_unpackhi_epi8(x0, x1);
            __m256i l23 = _mm256_unpacklo_epi8(x2, x3), h23 = _mm256_unpackhi_epi8(x2, x3);
            __m256i q0 = _mm256_unpacklo_epi16(l01, l23), q1 = _mm256_unpackhi_epi16(l01, l23);
            __m256i q2 = _mm256_unpacklo_epi16(h01, h23), q3 = _mm256_unpackhi_epi16(h01, h23);
            const int8_t *wq = w->w_quads + ((size_t)q * blocks + blk) * 256;
            a0 = _mm256_dpbusd_epi32(a0, q0, _mm256_load_si256((const __m256i *)(wq + 0)));
            a1 = _mm256_dpbusd_epi32(a1, q1, _mm256_load_si256((const __m256i *)(wq + 64)));
            a2 = _mm256_dpbusd_epi32(a2, q2, _mm256_load_si256((const __m256i *)(wq + 128)));
            a3 = _mm256_dpbusd_epi32(a3, q3, _mm256_load_si256((const __m256i *)(wq + 192)));
            if (with_zw) {
                s0 = _mm256_dpbusd_epi32(s0, q0, ones);
                s1 = _mm256_dpbusd_epi32(s1, q1, ones);
                s2 = _mm256_dpbusd_epi32(s2, q2, ones);
                s3 = _mm256_dpbusd_epi32(s3, q3, ones);
            }
        }
        store_lanes32(tile + i * 64, a0, a1, a2, a3);
        if (with_zw) {
            store_lanes32(xsum, s0, s1, s2, s3);
            subtract_zw32(tile + i * 64, xsum, w->zw + c0);
        }
    }
}

static inline void dw_saturate_avx512_32(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                               int32_t c0, int32_t nc, int32_t *tile) {
    (void)nc;
    int32_t taps = tg->k_h * tg->k_w;
    size_t blocks = (size_t)w->c_pad / 64, blk = (size_t)c0 / 64;
    int with_zw = !w->zw_all_zero;
    const __m256i even = _mm256_set1_epi32(1), odd = _mm256_set1_epi32(0x10000);
    const __m256i ones_even = _mm256_set1_epi32(0x0101), ones_odd = _mm256_set1_epi32(0x01010000);
    int32_t xsum[32] __attribute__((aligned(64)));
    for (int32_t i = 0; i < mr; i++) {
        const uint8_t *xi = x + i * tg->pix;
        __m256i el = _mm256_setzero_si256(), ol = el, eh = el, oh = el;
        __m256i sel = el, sol = el, seh = el, soh = el;
        for (int32_t p = 0; p < w->pairs; p++) {
            /* an odd last tap pairs with x = 0, as FBGEMM's kernels do */
            __m256i xa = load_tap32(xi, tg, 2 * p, taps), xb = load_tap32(xi, tg, 2 * p + 1, taps);
            __m256i lo = _mm256_unpacklo_epi8(xa, xb), hi = _mm256_unpackhi_epi8(xa, xb);
            const int8_t *wp = w->w_pairs64 + ((size_t)p * blocks + blk) * 128;
            __m256i plo = _mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)wp));
            __m256i phi = _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)(wp + 64)));
            el = _mm256_dpwssd_epi32(el, plo, even);
            ol = _mm256_dpwssd_epi32(ol, plo, odd);
            eh = _mm256_dpwssd_epi32(eh, phi, even);
            oh = _mm256_dpwssd_epi32(oh, phi, odd);
            if (with_zw) {
                sel = _mm256_dpbusd_epi32(sel, lo, ones_even);
                sol = _mm256_dpbusd_epi32(sol, lo, ones_odd);
                seh = _mm256_dpbusd_epi32(seh, hi, ones_even);
                soh = _mm256_dpbusd_epi32(soh, hi, ones_odd);
            }
        }
        /* el / ol: channels 16L + 2d / 16L + 2d + 1; eh / oh the same + 8 */
        store_lanes32(tile + i * 64, _mm256_unpacklo_epi32(el, ol), _mm256_unpackhi_epi32(el, ol),
                    _mm256_unpacklo_epi32(eh, oh), _mm256_unpackhi_epi32(eh, oh));
        if (with_zw) {
            store_lanes32(xsum, _mm256_unpacklo_epi32(sel, sol), _mm256_unpackhi_epi32(sel, sol),
                        _mm256_unpacklo_epi32(seh, soh), _mm256_unpackhi_epi32(seh, soh));
            subtract_zw32(tile + i * 64, xsum, w->zw + c0);
        }
    }
}

static void dw_exact_avx512(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                            int32_t c0, int32_t nc, int32_t *tile) {
    if (nc <= 32) {
        dw_exact_avx512_32(tg, mr, x, w, c0, nc, tile);
        return;
    }
    int32_t taps = tg->k_h * tg->k_w;
    size_t blocks = (size_t)w->c_pad / 64, blk = (size_t)c0 / 64;
    int with_zw = !w->zw_all_zero;
    const __m512i ones = _mm512_set1_epi8(1);
    int32_t xsum[64] __attribute__((aligned(64)));
    for (int32_t i = 0; i < mr; i++) {
        const uint8_t *xi = x + i * tg->pix;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        __m512i s0 = a0, s1 = a0, s2 = a0, s3 = a0;
        for (int32_t q = 0; q < w->quads; q++) {
            int32_t t = 4 * q;
            __m512i x0 = load_tap(xi, tg, t, taps), x1 = load_tap(xi, tg, t + 1, taps);
            __m512i x2 = load_tap(xi, tg, t + 2, taps), x3 = load_tap(xi, tg, t + 3, taps);
            __m512i l01 = _mm512_unpacklo_epi8(x0, x1), h01 = _mm512_unpackhi_epi8(x0, x1);
            __m512i l23 = _mm512_unpacklo_epi8(x2, x3), h23 = _mm512_unpackhi_epi8(x2, x3);
            __m512i q0 = _mm512_unpacklo_epi16(l01, l23), q1 = _mm512_unpackhi_epi16(l01, l23);
            __m512i q2 = _mm512_unpacklo_epi16(h01, h23), q3 = _mm512_unpackhi_epi16(h01, h23);
            const int8_t *wq = w->w_quads + ((size_t)q * blocks + blk) * 256;
            a0 = _mm512_dpbusd_epi32(a0, q0, _mm512_load_si512((const void *)(wq + 0)));
            a1 = _mm512_dpbusd_epi32(a1, q1, _mm512_load_si512((const void *)(wq + 64)));
            a2 = _mm512_dpbusd_epi32(a2, q2, _mm512_load_si512((const void *)(wq + 128)));
            a3 = _mm512_dpbusd_epi32(a3, q3, _mm512_load_si512((const void *)(wq + 192)));
            if (with_zw) {
                s0 = _mm512_dpbusd_epi32(s0, q0, ones);
                s1 = _mm512_dpbusd_epi32(s1, q1, ones);
                s2 = _mm512_dpbusd_epi32(s2, q2, ones);
                s3 = _mm512_dpbusd_epi32(s3, q3, ones);
            }
        }
        store_lanes(tile + i * 64, a0, a1, a2, a3);
        if (with_zw) {
            store_lanes(xsum, s0, s1, s2, s3);
            subtract_zw(tile + i * 64, xsum, w->zw + c0);
        }
    }
}

static void dw_saturate_avx512(const fq_dw_tile_geom *tg, int32_t mr, const uint8_t *x, const fq_dw_weights *w,
                               int32_t c0, int32_t nc, int32_t *tile) {
    if (nc <= 32) {
        dw_saturate_avx512_32(tg, mr, x, w, c0, nc, tile);
        return;
    }
    int32_t taps = tg->k_h * tg->k_w;
    size_t blocks = (size_t)w->c_pad / 64, blk = (size_t)c0 / 64;
    int with_zw = !w->zw_all_zero;
    const __m512i even = _mm512_set1_epi32(1), odd = _mm512_set1_epi32(0x10000);
    const __m512i ones_even = _mm512_set1_epi32(0x0101), ones_odd = _mm512_set1_epi32(0x01010000);
    int32_t xsum[64] __attribute__((aligned(64)));
    for (int32_t i = 0; i < mr; i++) {
        const uint8_t *xi = x + i * tg->pix;
        __m512i el = _mm512_setzero_si512(), ol = el, eh = el, oh = el;
        __m512i sel = el, sol = el, seh = el, soh = el;
        for (int32_t p = 0; p < w->pairs; p++) {
            /* an odd last tap pairs with x = 0, as FBGEMM's kernels do */
            __m512i xa = load_tap(xi, tg, 2 * p, taps), xb = load_tap(xi, tg, 2 * p + 1, taps);
            __m512i lo = _mm512_unpacklo_epi8(xa, xb), hi = _mm512_unpackhi_epi8(xa, xb);
            const int8_t *wp = w->w_pairs64 + ((size_t)p * blocks + blk) * 128;
            __m512i plo = _mm512_maddubs_epi16(lo, _mm512_load_si512((const void *)wp));
            __m512i phi = _mm512_maddubs_epi16(hi, _mm512_load_si512((const void *)(wp + 64)));
            el = _mm512_dpwssd_epi32(el, plo, even);
            ol = _mm512_dpwssd_epi32(ol, plo, odd);
            eh = _mm512_dpwssd_epi32(eh, phi, even);
            oh = _mm512_dpwssd_epi32(oh, phi, odd);
            if (with_zw) {
                sel = _mm512_dpbusd_epi32(sel, lo, ones_even);
                sol = _mm512_dpbusd_epi32(sol, lo, ones_odd);
                seh = _mm512_dpbusd_epi32(seh, hi, ones_even);
                soh = _mm512_dpbusd_epi32(soh, hi, ones_odd);
            }
        }
        /* el / ol: channels 16L + 2d / 16L + 2d + 1; eh / oh the same + 8 */
        store_lanes(tile + i * 64, _mm512_unpacklo_epi32(el, ol), _mm512_unpackhi_epi32(el, ol),
                    _mm512_unpacklo_epi32(eh, oh), _mm512_unpackhi_epi32(eh, oh));
        if (with_zw) {
            store_lanes(xsum, _mm512_unpacklo_epi32(sel, sol), _mm512_unpackhi_epi32(sel, sol),
                        _mm512_unpacklo_epi32(seh, soh), _mm512_unpackhi_epi32(seh, soh));
            subtract_zw(tile + i * 64, xsum, w->zw + c0);
        }
    }
}

static const fq_conv_kernels avx512_kernels = {"avx512vnni", dw_exact_avx512, dw_saturate_avx512, fq_dw_rows_exact_avx512, fq_im2col_avx512};
const fq_conv_kernels *fq_conv_kernels_avx512vnni(void) { return &avx512_kernels; }
#endif
