/* AVX-512 epilogues: 16 columns per step, lane by lane the scalar primitives of requant.h
 * (scalar twin: epilogue_scalar.c).
 *   acc = raw + col_offset[n] - row_sum * zw[n]      vpaddd / vpmulld / vpsubd: wrapping
 *   (float)acc                                       vcvtdq2ps: round half to even
 *   rne(y), INT32_MIN when |y| >= 2^31 or NaN         vcvtps2dq: exactly fq_round_float_to_int32
 *   + zero point, saturating (FBGEMM and QNNPACK both pack to int16 with saturation and add
 *   the zero point with adds_epi16): for 0 <= zy, hi <= 255 that is clamp(r, lo - zy, hi - zy) + zy,
 *   computed without int32 overflow (fq_add_zero_point_clamp).
 *   float (dynamic quantization): vfmadd231ps when float_fma (one rounding, = fmaf), else
 *   vmulps then vaddps; ReLU replaces y < 0 by 0 (a compare, as the scalar `y < 0`).
 * Padded columns (n >= N) are computed from the zero-padded per-column arrays and masked
 * off at the store; the tflite mode uses epilogue_tflite_avx512.c. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>
#include "fastq.h"

extern void fq_epilogue_tflite_avx512(int32_t, int32_t, const int32_t *, const int32_t *, int32_t,
                                      const fq_epilogue *, void *, ptrdiff_t);

static inline __mmask16 cols_mask(int32_t nc, int32_t c) {
    int32_t left = nc - c;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

static inline __m512i corrected(const int32_t *t, const fq_epilogue *ep, int32_t n,
                                __m512i row_sum) {
    __m512i acc = _mm512_add_epi32(_mm512_load_si512((const void *)t),
                                   _mm512_loadu_si512((const void *)(ep->col_offset + n)));
    if (ep->w_zero_point)
        acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(
            row_sum, _mm512_loadu_si512((const void *)(ep->w_zero_point + n))));
    return acc;
}

void fq_epilogue_avx512(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,
                        int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {
    if (ep->kind == FQ_EPI_TFLITE) {
        fq_epilogue_tflite_avx512(mr, nc, tile, row_sums, n0, ep, out, ldo);
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
            const __mmask16 m = cols_mask(nc, c);
            const int32_t n = n0 + c;
            __m512i acc = corrected(t + c, ep, n, rs);
            switch (ep->kind) {
            case FQ_EPI_INT32:
                _mm512_mask_storeu_epi32((int32_t *)out + (ptrdiff_t)i * ldo + n, m, acc);
                break;
            case FQ_EPI_FLOAT: {
                __m512 f = _mm512_cvtepi32_ps(acc);
                __m512 s = _mm512_loadu_ps(ep->scale + n);
                __m512 y;
                if (!ep->bias) y = _mm512_mul_ps(f, s);
                else if (ep->float_fma) y = _mm512_fmadd_ps(f, s, _mm512_loadu_ps(ep->bias + n));
                else y = _mm512_add_ps(_mm512_mul_ps(f, s), _mm512_loadu_ps(ep->bias + n));
                if (ep->float_relu)
                    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ),
                                           _mm512_setzero_ps());
                _mm512_mask_storeu_ps((float *)out + (ptrdiff_t)i * ldo + n, m, y);
                break;
            }
            case FQ_EPI_FBGEMM: {
                __m512 f = _mm512_cvtepi32_ps(acc);
                if (ep->bias) f = _mm512_fmadd_ps(_mm512_loadu_ps(ep->bias + n), _mm512_set1_ps(ep->bias_mult), f);
                __m512 y = _mm512_mul_ps(f, _mm512_loadu_ps(ep->scale + n));
                __m512i r = _mm512_cvtps_epi32(y);
                r = _mm512_min_epi32(_mm512_max_epi32(r, lo_q), hi_q);
                __m512i q = _mm512_xor_si512(_mm512_add_epi32(r, zy), xor_);
                _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)out + (ptrdiff_t)i * ldo + n, m, q);
                break;
            }
            case FQ_EPI_QNNPACK: {
                __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(ep->scale + n));
                __m512i r = _mm512_cvtps_epi32(y);
                r = _mm512_min_epi32(_mm512_max_epi32(r, lo_q), hi_q);
                __m512i q = _mm512_xor_si512(_mm512_add_epi32(r, zy), xor_);
                _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)out + (ptrdiff_t)i * ldo + n, m, q);
                break;
            }
            default:
                break;
            }
        }
    }
}
#endif
