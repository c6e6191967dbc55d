/* AVX2 epilogues: 8 columns per step, lane by lane the scalar primitives of requant.h
 * (scalar twin: epilogue_scalar.c; the AVX-512 version explains each instruction's rounding).
 * vcvtps2dq gives INT32_MIN on overflow / NaN exactly as fq_round_float_to_int32; the zero
 * point is added with saturation (fbgemm and qnnpack alike): clamp(r, lo - zy, hi - zy) + zy.
 * tflite, double rounding: the SIMD twin of requant_fixedpoint.h below (vpmuldq gives the exact
 * 64-bit products of the even lanes; the odd lanes are shifted down first). The single
 * rounding variants (single, double_up) need 64-bit arithmetic shifts by a per-lane count,
 * which AVX2 lacks: they run the scalar epilogue, as do shifts outside [-31, 30]. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX2)
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <string.h>
#include "fastq.h"

extern void fq_epilogue_scalar(int32_t, int32_t, const int32_t *, const int32_t *, int32_t,
                               const fq_epilogue *, void *, ptrdiff_t);

static inline __m256i lanes_mask(int32_t left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

/* low byte of each int32 lane (values already in 0..255 after the clamp) -> 8 bytes */
static inline void store_bytes(uint8_t *dst, __m256i q, int32_t count) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(q, pick);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    uint64_t v = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(b));
    if (count >= 8) memcpy(dst, &v, 8);
    else memcpy(dst, &v, (size_t)count);
}

/* trunc((p + nudge) / 2^31) of the 64-bit lanes, low 32 bits of each (the result fits in
 * int32 except for INT32_MIN * INT32_MIN, patched by the caller) */
static inline __m256i high_mul_half(__m256i p) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i neg = _mm256_cmpgt_epi64(zero, p);
    __m256i nudge = _mm256_blendv_epi8(_mm256_set1_epi64x(1LL << 30), _mm256_set1_epi64x(1 - (1LL << 30)), neg);
    __m256i q = _mm256_add_epi64(p, nudge);
    /* C division by 2^31 truncates toward zero: bias negative values by 2^31 - 1; then bits
     * 31..62 are the quotient's low 32 bits, so a logical shift serves */
    q = _mm256_add_epi64(q, _mm256_and_si256(_mm256_cmpgt_epi64(zero, q), _mm256_set1_epi64x((1LL << 31) - 1)));
    return _mm256_srli_epi64(q, 31);
}

static inline __m256i saturating_rounding_doubling_high_mul(__m256i a, __m256i b) {
    __m256i even = high_mul_half(_mm256_mul_epi32(a, b));
    __m256i odd = high_mul_half(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)));
    __m256i r = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    const __m256i min = _mm256_set1_epi32(INT32_MIN);
    __m256i both_min = _mm256_and_si256(_mm256_cmpeq_epi32(a, min), _mm256_cmpeq_epi32(b, min));
    return _mm256_blendv_epi8(r, _mm256_set1_epi32(INT32_MAX), both_min);
}

static inline __m256i rounding_divide_by_pot(__m256i x, __m256i e) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
    __m256i rem = _mm256_and_si256(x, mask);
    __m256i neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), x);           /* -1 where x < 0 */
    __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), neg);
    __m256i up = _mm256_cmpgt_epi32(rem, thr);                              /* -1 where rounding up */
    return _mm256_sub_epi32(_mm256_srav_epi32(x, e), up);
}

static int tflite_simd_ok(const fq_epilogue *ep, int32_t n0, int32_t nc) {
    if (ep->rounding != FQ_ROUNDING_DOUBLE) return 0;
    for (int32_t c = 0; c < nc; c++)
        if (ep->shift[n0 + c] > 30 || ep->shift[n0 + c] < -31) return 0;
    return 1;
}

void fq_epilogue_avx2(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,
                      int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {
    if (ep->kind == FQ_EPI_TFLITE && !tflite_simd_ok(ep, n0, nc)) {
        fq_epilogue_scalar(mr, nc, tile, row_sums, n0, ep, out, ldo);
        return;
    }
    const __m256i zy = _mm256_set1_epi32(ep->out_zero_point);
    const __m256i lo_q = _mm256_set1_epi32(ep->out_min - ep->out_zero_point);
    const __m256i hi_q = _mm256_set1_epi32(ep->out_max - ep->out_zero_point);
    const __m256i xor_ = _mm256_set1_epi32(ep->out_xor);
    for (int32_t i = 0; i < mr; i++) {
        const int32_t *t = tile + (size_t)i * FQ_NR;
        const __m256i rs = _mm256_set1_epi32(row_sums ? row_sums[i] : 0);
        for (int32_t c = 0; c < nc; c += 8) {
            const int32_t n = n0 + c;
            const int32_t left_n = nc - c;
            __m256i acc = _mm256_add_epi32(_mm256_load_si256((const __m256i *)(t + c)),
                                           _mm256_loadu_si256((const __m256i *)(ep->col_offset + n)));
            if (ep->w_zero_point)
                acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(
                    rs, _mm256_loadu_si256((const __m256i *)(ep->w_zero_point + n))));
            switch (ep->kind) {
            case FQ_EPI_INT32: {
                int32_t *o = (int32_t *)out + (ptrdiff_t)i * ldo + n;
                if (left_n >= 8) _mm256_storeu_si256((__m256i *)o, acc);
                else _mm256_maskstore_epi32(o, lanes_mask(left_n), acc);
                break;
            }
            case FQ_EPI_FLOAT: {
                __m256 f = _mm256_cvtepi32_ps(acc);
                __m256 s = _mm256_loadu_ps(ep->scale + n);
                __m256 y;
                if (!ep->bias) y = _mm256_mul_ps(f, s);
                else if (ep->float_fma) y = _mm256_fmadd_ps(f, s, _mm256_loadu_ps(ep->bias + n));
                else y = _mm256_add_ps(_mm256_mul_ps(f, s), _mm256_loadu_ps(ep->bias + n));
                if (ep->float_relu)   /* y < 0 -> 0, as the scalar compare */
                    y = _mm256_andnot_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), y);
                float *o = (float *)out + (ptrdiff_t)i * ldo + n;
                if (left_n >= 8) _mm256_storeu_ps(o, y);
                else _mm256_maskstore_ps(o, lanes_mask(left_n), y);
                break;
            }
            case FQ_EPI_FBGEMM: {
                __m256 f = _mm256_cvtepi32_ps(acc);
                if (ep->bias) f = _mm256_fmadd_ps(_mm256_loadu_ps(ep->bias + n), _mm256_set1_ps(ep->bias_mult), f);
                __m256 y = _mm256_mul_ps(f, _mm256_loadu_ps(ep->scale + n));
                __m256i r = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(y), lo_q), hi_q);
                __m256i q = _mm256_xor_si256(_mm256_add_epi32(r, zy), xor_);
                store_bytes((uint8_t *)out + (ptrdiff_t)i * ldo + n, q, left_n);
                break;
            }
            case FQ_EPI_QNNPACK: {
                __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(ep->scale + n));
                __m256i r = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(y), lo_q), hi_q);
                __m256i q = _mm256_xor_si256(_mm256_add_epi32(r, zy), xor_);
                store_bytes((uint8_t *)out + (ptrdiff_t)i * ldo + n, q, left_n);
                break;
            }
            case FQ_EPI_TFLITE: {
                const __m256i zero = _mm256_setzero_si256();
                __m256i shift = _mm256_loadu_si256((const __m256i *)(ep->shift + n));
                __m256i left = _mm256_max_epi32(shift, zero);
                __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
                __m256i y = rounding_divide_by_pot(
                    saturating_rounding_doubling_high_mul(
                        _mm256_sllv_epi32(acc, left),
                        _mm256_loadu_si256((const __m256i *)(ep->multiplier + n))),
                    right);
                y = _mm256_min_epi32(_mm256_max_epi32(y, lo_q), hi_q);
                __m256i q = _mm256_xor_si256(_mm256_add_epi32(y, zy), xor_);
                store_bytes((uint8_t *)out + (ptrdiff_t)i * ldo + n, q, left_n);
                break;
            }
            default:
                break;
            }
        }
    }
}
#endif
