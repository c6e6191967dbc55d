/* AVX-512 lane primitives of the fixed-point steps (fixedpoint_lanes.h is written over them).
 *   fq_v: 16 int32 lanes   fq_m: __mmask16
 *   fq_w: 8 int64 lanes
 * Include after #pragma GCC target("avx512f,avx512bw,avx512vl,...") and <immintrin.h>. */
#ifndef FASTQ_FIXEDPOINT_AVX512_H
#define FASTQ_FIXEDPOINT_AVX512_H

typedef __m512i fq_v;
typedef __mmask16 fq_m;
typedef __m512i fq_w;

static inline fq_v fq_v_dup(int32_t x) { return _mm512_set1_epi32(x); }
static inline fq_v fq_v_zero(void) { return _mm512_setzero_si512(); }
static inline fq_v fq_v_add(fq_v a, fq_v b) { return _mm512_add_epi32(a, b); }
static inline fq_v fq_v_sub(fq_v a, fq_v b) { return _mm512_sub_epi32(a, b); }
static inline fq_v fq_v_and(fq_v a, fq_v b) { return _mm512_and_si512(a, b); }
static inline fq_v fq_v_max(fq_v a, fq_v b) { return _mm512_max_epi32(a, b); }
static inline fq_v fq_v_min(fq_v a, fq_v b) { return _mm512_min_epi32(a, b); }
static inline fq_v fq_v_sllv(fq_v a, fq_v count) { return _mm512_sllv_epi32(a, count); }
static inline fq_v fq_v_srav(fq_v a, fq_v count) { return _mm512_srav_epi32(a, count); }
static inline fq_m fq_v_lt(fq_v a, fq_v b) { return _mm512_cmplt_epi32_mask(a, b); }
static inline fq_m fq_v_gt(fq_v a, fq_v b) { return _mm512_cmpgt_epi32_mask(a, b); }
static inline fq_m fq_v_eq(fq_v a, fq_v b) { return _mm512_cmpeq_epi32_mask(a, b); }
static inline fq_v fq_v_select(fq_m m, fq_v if_false, fq_v if_true) {
    return _mm512_mask_blend_epi32(m, if_false, if_true);
}
static inline fq_v fq_v_add_where(fq_m m, fq_v a, fq_v b) { return _mm512_mask_add_epi32(a, m, a, b); }

static inline fq_w fq_w_dup(int64_t x) { return _mm512_set1_epi64(x); }
static inline fq_w fq_w_add(fq_w a, fq_w b) { return _mm512_add_epi64(a, b); }
static inline fq_w fq_w_sub(fq_w a, fq_w b) { return _mm512_sub_epi64(a, b); }
static inline fq_w fq_w_sllv(fq_w a, fq_w count) { return _mm512_sllv_epi64(a, count); }
static inline fq_w fq_w_srav(fq_w a, fq_w count) { return _mm512_srav_epi64(a, count); }
static inline fq_v fq_v_odd_down(fq_v a) { return _mm512_shuffle_epi32(a, (_MM_PERM_ENUM)0xF5); }
static inline fq_w fq_w_mul_even(fq_v a, fq_v b) { return _mm512_mul_epi32(a, b); }
static inline fq_w fq_w_even_lanes(fq_v v) { return _mm512_and_si512(v, _mm512_set1_epi64(0xFFFFFFFFLL)); }
static inline fq_w fq_w_odd_lanes(fq_v v) { return _mm512_srli_epi64(v, 32); }
static inline fq_v fq_w_join_low32(fq_w even, fq_w odd) {
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, even, _mm512_shuffle_epi32(odd, (_MM_PERM_ENUM)0xA0));
}
static inline fq_v fq_w_join_high32(fq_w even, fq_w odd) {
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_shuffle_epi32(even, (_MM_PERM_ENUM)0xF5), odd);
}

#endif
