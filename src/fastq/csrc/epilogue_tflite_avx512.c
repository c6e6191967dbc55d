/* AVX-512 fixed-point epilogue (requant "tflite", docs/ARITHMETIC.md §8), 16 columns per step,
 * lane by lane the primitives of requant_fixedpoint.h (scalar twin: epilogue_scalar.c).
 * The 32x32 -> 64-bit products are done as two vpmuldq (even lanes, then odd lanes shifted
 * down), so every step keeps the exact 64-bit intermediate of the scalar code:
 *   high_mul(a, b) = trunc((a*b + nudge) / 2^31), nudge = a*b >= 0 ? 2^30 : 1 - 2^30,
 *                    INT32_MIN * INT32_MIN -> INT32_MAX
 *   divide_by_pot(x, e) = (x >> e) + ((x & mask) > (mask >> 1) + (x < 0)),  mask = 2^e - 1
 *   single rounding: (x*m + 2^(30 - shift)) >> (31 - shift), low 32 bits (as TFLite's cast)
 * "double_up" (ruy's rounding shift) takes the scalar code.
 * then + zero point and clamp, done as clamp(y, lo - zy, hi - zy) + zy (no int32 overflow).
 * Shifts outside what QuantizeMultiplier produces for sane scales (|shift| > 30) take the
 * scalar code, whose C shifts define them. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>
#include "fastq.h"

extern void fq_epilogue_scalar(int32_t, int32_t, const int32_t *, const int32_t *, int32_t,
                               const fq_epilogue *, void *, ptrdiff_t);

/* 64-bit products of the even and the odd int32 lanes */
static inline void mul_even_odd(__m512i a, __m512i b, __m512i *even, __m512i *odd) {
    *even = _mm512_mul_epi32(a, b);
    *odd = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32));
}

/* low 32 bits of the even-lane and odd-lane int64 results, back into int32 lanes */
static inline __m512i join_even_odd(__m512i even, __m512i odd) {
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

static inline __m512i high_mul_half(__m512i p) {
    const __m512i pos_nudge = _mm512_set1_epi64(1LL << 30);
    const __m512i neg_nudge = _mm512_set1_epi64(1 - (1LL << 30));
    const __m512i zero = _mm512_setzero_si512();
    __mmask8 neg = _mm512_cmplt_epi64_mask(p, zero);
    __m512i q = _mm512_add_epi64(p, _mm512_mask_blend_epi64(neg, pos_nudge, neg_nudge));
    /* C division by 2^31 truncates toward zero: bias negative values by 2^31 - 1 */
    __mmask8 qneg = _mm512_cmplt_epi64_mask(q, zero);
    q = _mm512_mask_add_epi64(q, qneg, q, _mm512_set1_epi64((1LL << 31) - 1));
    return _mm512_srai_epi64(q, 31);
}

static inline __m512i saturating_rounding_doubling_high_mul(__m512i a, __m512i b) {
    __m512i pe, po;
    mul_even_odd(a, b, &pe, &po);
    __m512i r = join_even_odd(high_mul_half(pe), high_mul_half(po));
    const __m512i min = _mm512_set1_epi32(INT32_MIN);
    __mmask16 both_min = _mm512_cmpeq_epi32_mask(a, min) & _mm512_cmpeq_epi32_mask(b, min);
    return _mm512_mask_blend_epi32(both_min, r, _mm512_set1_epi32(INT32_MAX));
}

static inline __m512i rounding_divide_by_pot(__m512i x, __m512i e) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
    __m512i rem = _mm512_and_si512(x, mask);
    __m512i thr = _mm512_srai_epi32(mask, 1);
    __mmask16 neg = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
    thr = _mm512_mask_add_epi32(thr, neg, thr, one);
    __m512i r = _mm512_srav_epi32(x, e);
    __mmask16 up = _mm512_cmpgt_epi32_mask(rem, thr);
    return _mm512_mask_add_epi32(r, up, r, one);
}

static inline __m512i mbqm_double(__m512i x, __m512i mult, __m512i shift) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i left = _mm512_max_epi32(shift, zero);
    __m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    __m512i xs = _mm512_sllv_epi32(x, left);
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, mult), right);
}

static inline __m512i single_half(__m512i p, __m512i total_shift) {
    const __m512i one = _mm512_set1_epi64(1);
    __m512i round = _mm512_sllv_epi64(one, _mm512_sub_epi64(total_shift, one));
    __m512i r = _mm512_srav_epi64(_mm512_add_epi64(p, round), total_shift);
    return r;   /* join_even_odd keeps the low 32 bits: the wrap of the scalar cast */
}

static inline __m512i mbqm_single(__m512i x, __m512i mult, __m512i shift) {
    __m512i ts = _mm512_sub_epi32(_mm512_set1_epi32(31), shift);
    __m512i pe, po;
    mul_even_odd(x, mult, &pe, &po);
    __m512i ts_even = _mm512_srai_epi64(_mm512_slli_epi64(ts, 32), 32);  /* sign-extend low */
    __m512i ts_odd = _mm512_srai_epi64(ts, 32);
    return join_even_odd(single_half(pe, ts_even), single_half(po, ts_odd));
}

static int shifts_in_range(const int32_t *shift, int32_t n0, int32_t nc) {
    for (int32_t c = 0; c < nc; c++)
        if (shift[n0 + c] > 30 || shift[n0 + c] < -31) return 0;
    return 1;
}

void fq_epilogue_tflite_avx512(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,
                               int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {
    if (ep->rounding == FQ_ROUNDING_DOUBLE_UP || !shifts_in_range(ep->shift, n0, nc)) {
        fq_epilogue_scalar(mr, nc, tile, row_sums, n0, ep, out, ldo);
        return;
    }
    const __m512i zy = _mm512_set1_epi32(ep->out_zero_point);
    const __m512i lo_q = _mm512_set1_epi32(ep->out_min - ep->out_zero_point);
    const __m512i hi_q = _mm512_set1_epi32(ep->out_max - ep->out_zero_point);
    const __m512i xor_ = _mm512_set1_epi32(ep->out_xor);
    for (int32_t i = 0; i < mr; i++) {
        const int32_t *t = tile + (size_t)i * FQ_NR;
        const __m512i rs = _mm512_set1_epi32(row_sums ? row_sums[i] : 0);
        for (int32_t c = 0; c < nc; c += 16) {
            int32_t left = nc - c;
            __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
            int32_t n = n0 + c;
            __m512i acc = _mm512_add_epi32(_mm512_load_si512((const void *)(t + c)),
                                           _mm512_loadu_si512((const void *)(ep->col_offset + n)));
            if (ep->w_zero_point)
                acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(
                    rs, _mm512_loadu_si512((const void *)(ep->w_zero_point + n))));
            __m512i mult = _mm512_loadu_si512((const void *)(ep->multiplier + n));
            __m512i shift = _mm512_loadu_si512((const void *)(ep->shift + n));
            __m512i y = ep->rounding == FQ_ROUNDING_SINGLE ? mbqm_single(acc, mult, shift)
                                            : mbqm_double(acc, mult, shift);
            y = _mm512_min_epi32(_mm512_max_epi32(y, lo_q), hi_q);
            __m512i q = _mm512_xor_si512(_mm512_add_epi32(y, zy), xor_);
            _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)out + (ptrdiff_t)i * ldo + n, m, q);
        }
    }
}
#endif
