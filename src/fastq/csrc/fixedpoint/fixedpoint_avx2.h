/* AVX2 lane primitives of the fixed-point steps (fixedpoint_lanes.h is written over them,
 * gemmlowp-style: RoundingDivideByPOT and friends exist once, for every ISA).
 *   fq_v: 8 int32 lanes    fq_m: a 32-bit lane mask (all ones / zero)
 *   fq_w: 4 int64 lanes
 * Include after #pragma GCC target("avx2,fma") and <immintrin.h>. AVX2 has no 64-bit
 * arithmetic shift: fq_w_srav flips negative lanes around a logical one (exact). */
#ifndef FASTQ_FIXEDPOINT_AVX2_H
#define FASTQ_FIXEDPOINT_AVX2_H

typedef __m256i fq_v;
typedef __m256i fq_m;
typedef __m256i fq_w;

static inline fq_v fq_v_dup(int32_t x) { return _mm256_set1_epi32(x); }
static inline fq_v fq_v_zero(void) { return _mm256_setzero_si256(); }
static inline fq_v fq_v_add(fq_v a, fq_v b) { return _mm256_add_epi32(a, b); }
static inline fq_v fq_v_sub(fq_v a, fq_v b) { return _mm256_sub_epi32(a, b); }
static inline fq_v fq_v_and(fq_v a, fq_v b) { return _mm256_and_si256(a, b); }
static inline fq_v fq_v_max(fq_v a, fq_v b) { return _mm256_max_epi32(a, b); }
static inline fq_v fq_v_min(fq_v a, fq_v b) { return _mm256_min_epi32(a, b); }
static inline fq_v fq_v_sllv(fq_v a, fq_v count) { return _mm256_sllv_epi32(a, count); }
static inline fq_v fq_v_srav(fq_v a, fq_v count) { return _mm256_srav_epi32(a, count); }
static inline fq_m fq_v_lt(fq_v a, fq_v b) { return _mm256_cmpgt_epi32(b, a); }
static inline fq_m fq_v_gt(fq_v a, fq_v b) { return _mm256_cmpgt_epi32(a, b); }
static inline fq_m fq_v_eq(fq_v a, fq_v b) { return _mm256_cmpeq_epi32(a, b); }
/* m ? if_true : if_false, lane by lane */
static inline fq_v fq_v_select(fq_m m, fq_v if_false, fq_v if_true) {
    return _mm256_blendv_epi8(if_false, if_true, m);
}
/* a + (m ? b : 0) */
static inline fq_v fq_v_add_where(fq_m m, fq_v a, fq_v b) {
    return _mm256_add_epi32(a, _mm256_and_si256(m, b));
}

static inline fq_w fq_w_dup(int64_t x) { return _mm256_set1_epi64x(x); }
static inline fq_w fq_w_add(fq_w a, fq_w b) { return _mm256_add_epi64(a, b); }
static inline fq_w fq_w_sub(fq_w a, fq_w b) { return _mm256_sub_epi64(a, b); }
static inline fq_w fq_w_sllv(fq_w a, fq_w count) { return _mm256_sllv_epi64(a, count); }
static inline fq_w fq_w_srav(fq_w a, fq_w count) {
    fq_w sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), a);     /* -1 where a < 0 */
    return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(a, sign), count), sign);
}
/* the odd int32 lanes moved down into the even ones (vpshufd: port 5, not a shift) */
static inline fq_v fq_v_odd_down(fq_v a) { return _mm256_shuffle_epi32(a, 0xF5); }
/* exact 64-bit products of the even int32 lanes (0, 2, ..) */
static inline fq_w fq_w_mul_even(fq_v a, fq_v b) { return _mm256_mul_epi32(a, b); }
/* the even / odd int32 lanes of v, zero-extended to int64 (for counts >= 0) */
static inline fq_w fq_w_even_lanes(fq_v v) { return _mm256_and_si256(v, _mm256_set1_epi64x(0xFFFFFFFFLL)); }
static inline fq_w fq_w_odd_lanes(fq_v v) { return _mm256_srli_epi64(v, 32); }
/* the low / high 32 bits of each int64 lane, back into the even / odd int32 lanes */
static inline fq_v fq_w_join_low32(fq_w even, fq_w odd) {
    return _mm256_blend_epi32(even, _mm256_shuffle_epi32(odd, 0xA0), 0xAA);
}
static inline fq_v fq_w_join_high32(fq_w even, fq_w odd) {
    return _mm256_blend_epi32(_mm256_shuffle_epi32(even, 0xF5), odd, 0xAA);
}

#endif
