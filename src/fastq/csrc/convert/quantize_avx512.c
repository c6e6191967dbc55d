/* AVX-512 conversions (backend avx512vnni): the vector twins of quantize.c's scalar kernels,
 * bit for bit. 16 floats per vector, masked tails (no scalar remainder). */
#include "convert/convert.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")
#include <immintrin.h>

/* fmaf, then clamp in float (vminps returns its second operand when either is NaN, so
 * min(t, qmax) sends NaN to qmax, as torch's min(t, 2147483520) does), then cvtps2dq
 * (round half to even in the default MXCSR mode, as nearbyint). */
static inline __m512i quantize16(__m512 x, __m512 inv, __m512 zp, __m512 lo, __m512 hi) {
    __m512 t = _mm512_fmadd_ps(x, inv, zp);            /* one rounding */
    t = _mm512_min_ps(t, hi);                          /* t NaN -> hi: operand order matters */
    t = _mm512_max_ps(t, lo);
    return _mm512_cvtps_epi32(t);
}

static void quantize_avx512(const float *x, int64_t n, float inv_scale, float zero_point,
                            int32_t qmin, int32_t qmax, uint8_t *q) {
    const __m512 inv = _mm512_set1_ps(inv_scale), zp = _mm512_set1_ps(zero_point);
    const __m512 lo = _mm512_set1_ps((float)qmin), hi = _mm512_set1_ps((float)qmax);
    /* each int32 lies in [qmin, qmax], so vpmovdb's truncation is the uint8 / int8 byte */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i a = quantize16(_mm512_loadu_ps(x + i), inv, zp, lo, hi);
        __m512i b = quantize16(_mm512_loadu_ps(x + i + 16), inv, zp, lo, hi);
        __m512i c = quantize16(_mm512_loadu_ps(x + i + 32), inv, zp, lo, hi);
        __m512i d = quantize16(_mm512_loadu_ps(x + i + 48), inv, zp, lo, hi);
        /* int32 -> int16 -> bytes within 128-bit lanes (no saturation: values fit), then
         * one dword permute puts the 16 four-byte groups back in order */
        __m512i ab = _mm512_packs_epi32(a, b), cd = _mm512_packs_epi32(c, d);
        __m512i bytes = qmin < 0 ? _mm512_packs_epi16(ab, cd) : _mm512_packus_epi16(ab, cd);
        _mm512_storeu_si512((void *)(q + i), _mm512_permutexvar_epi32(order, bytes));
    }
    for (; i < n; i += 16) {
        int64_t left = n - i;
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i v = quantize16(_mm512_maskz_loadu_ps(m, x + i), inv, zp, lo, hi);
        _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);
    }
}

static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* (float)(q - zp) is exact (|q - zp| <= 510), then one rounding multiply: scalar's twin */
static void dequantize_u8_avx512(const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    const __m512i zp = _mm512_set1_epi32(zero_point);
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, q + i));
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, zp)), s);
        _mm512_mask_storeu_ps(x + i, m, f);
    }
}

static void dequantize_s8_avx512(const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    const __m512i zp = _mm512_set1_epi32(zero_point);
    const __m512 s = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512i v = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, q + i));
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(v, zp)), s);
        _mm512_mask_storeu_ps(x + i, m, f);
    }
}

/* One pass: running min / max and a sticky "not finite" flag (|x| > FLT_MAX, unordered for
 * NaN). Tail lanes are filled with x[0], which changes neither min nor max. */
static int minmax_avx512(const float *x, int64_t n, float *min_out, float *max_out) {
    const __m512 fill = _mm512_set1_ps(x[0]);
    const __m512 big = _mm512_set1_ps(3.40282347e38f);
    __m512 mn0 = fill, mx0 = fill, mn1 = fill, mx1 = fill;
    __mmask16 bad = 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(a), big, _CMP_NLE_UQ);
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(b), big, _CMP_NLE_UQ);
        mn0 = _mm512_min_ps(mn0, a);
        mx0 = _mm512_max_ps(mx0, a);
        mn1 = _mm512_min_ps(mn1, b);
        mx1 = _mm512_max_ps(mx1, b);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 a = _mm512_mask_loadu_ps(fill, m, x + i);
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(a), big, _CMP_NLE_UQ);
        mn0 = _mm512_min_ps(mn0, a);
        mx0 = _mm512_max_ps(mx0, a);
    }
    *min_out = _mm512_reduce_min_ps(_mm512_min_ps(mn0, mn1));
    *max_out = _mm512_reduce_max_ps(_mm512_max_ps(mx0, mx1));
    return bad == 0;
}

static const fq_convert_kernels kernels_avx512 = {
    "avx512", quantize_avx512, dequantize_u8_avx512, dequantize_s8_avx512, minmax_avx512,
};

const fq_convert_kernels *fq_convert_avx512(void) { return &kernels_avx512; }

#else
const fq_convert_kernels *fq_convert_avx512(void) { return 0; }
#endif
