/* The fixed-point steps of requant_fixedpoint.h, function for function, written once over
 * the lane primitives of fixedpoint_avx2.h or fixedpoint_avx512.h (include one of them first;
 * each epilogue file is its own translation unit, so both ISAs get their own copy). Every
 * step keeps the exact intermediate of the scalar code: the 32 x 32 -> 64-bit products are
 * two vpmuldq (even lanes, then the odd lanes shifted down), the sums are 64-bit lanes.
 * Shifts must lie in [-31, 30] (fq_epilogue_prepare sends other tables to the scalar code). */
#ifndef FASTQ_FIXEDPOINT_LANES_H
#define FASTQ_FIXEDPOINT_LANES_H

/* trunc((p + nudge) / 2^31), nudge = p >= 0 ? 2^30 : 1 - 2^30, of 64-bit lanes; only the low
 * 32 bits are kept (the result fits except for INT32_MIN^2, patched by the caller), so the
 * logical shift serves: bits 31..62 are the quotient's low bits after the negative bias */
static inline fq_w fqv_high_mul_half(fq_w p) {
    fq_w q = fq_w_add(p, fq_w_select(fq_w_lt_zero(p), fq_w_dup(1LL << 30), fq_w_dup(1 - (1LL << 30))));
    q = fq_w_add_where(fq_w_lt_zero(q), q, fq_w_dup((1LL << 31) - 1));   /* C division truncates */
    return fq_w_srli31(q);
}

/* fq_saturating_rounding_doubling_high_mul */
static inline fq_v fqv_saturating_rounding_doubling_high_mul(fq_v a, fq_v b) {
    fq_v r = fq_w_join_low32(fqv_high_mul_half(fq_w_mul_even(a, b)), fqv_high_mul_half(fq_w_mul_odd(a, b)));
    const fq_v min = fq_v_dup(INT32_MIN);
    return fq_v_select(fq_m_and(fq_v_eq(a, min), fq_v_eq(b, min)), r, fq_v_dup(INT32_MAX));
}

/* fq_rounding_divide_by_pot: (x >> e) + ((x & mask) > (mask >> 1) + (x < 0)), 0 <= e <= 31 */
static inline fq_v fqv_rounding_divide_by_pot(fq_v x, fq_v e) {
    const fq_v one = fq_v_dup(1);
    fq_v mask = fq_v_sub(fq_v_sllv(one, e), one);
    fq_v threshold = fq_v_add_where(fq_v_lt(x, fq_v_zero()), fq_v_srav(mask, one), one);
    return fq_v_add_where(fq_v_gt(fq_v_and(x, mask), threshold), fq_v_srav(x, e), one);
}

/* left = max(shift, 0), right = max(-shift, 0) */
static inline fq_v fqv_left_shift(fq_v shift) { return fq_v_max(shift, fq_v_zero()); }
static inline fq_v fqv_right_shift(fq_v shift) { return fq_v_max(fq_v_sub(fq_v_zero(), shift), fq_v_zero()); }

/* fq_multiply_by_quantized_multiplier ("double": the reference) */
static inline fq_v fqv_multiply_by_quantized_multiplier(fq_v x, fq_v multiplier, fq_v shift) {
    fq_v xs = fq_v_sllv(x, fqv_left_shift(shift));                        /* wraps, as the scalar */
    return fqv_rounding_divide_by_pot(fqv_saturating_rounding_doubling_high_mul(xs, multiplier),
                                      fqv_right_shift(shift));
}

/* fq_rounding_shift_right: round(x / 2^e), ties up. The scalar forms x + 2^(e-1) in int64;
 * here floor(x / 2^e) + bit e-1 of x, the same value without the wider sum. */
static inline fq_v fqv_rounding_shift_right(fq_v x, fq_v e) {
    const fq_v one = fq_v_dup(1);
    fq_v below = fq_v_and(fq_v_srav(x, fq_v_max(fq_v_sub(e, one), fq_v_zero())), one);
    fq_v half_bit = fq_v_select(fq_v_gt(e, fq_v_zero()), fq_v_zero(), below);     /* e = 0: none */
    return fq_v_add(fq_v_srav(x, e), half_bit);
}

/* fq_multiply_by_quantized_multiplier_double_up */
static inline fq_v fqv_multiply_by_quantized_multiplier_double_up(fq_v x, fq_v multiplier, fq_v shift) {
    fq_v xs = fq_v_sllv(x, fqv_left_shift(shift));
    return fqv_rounding_shift_right(fqv_saturating_rounding_doubling_high_mul(xs, multiplier),
                                    fqv_right_shift(shift));
}

/* (p + 2^(ts - 1)) >> ts of 64-bit lanes, arithmetic, 1 <= ts <= 62 */
static inline fq_w fqv_single_half(fq_w p, fq_w total_shift) {
    const fq_w one = fq_w_dup(1);
    return fq_w_srav(fq_w_add(p, fq_w_sllv(one, fq_w_sub(total_shift, one))), total_shift);
}

/* fq_multiply_by_quantized_multiplier_single: one rounding of x * m / 2^(31 - shift), the low
 * 32 bits kept (TFLite's cast) */
static inline fq_v fqv_multiply_by_quantized_multiplier_single(fq_v x, fq_v multiplier, fq_v shift) {
    fq_v total_shift = fq_v_sub(fq_v_dup(31), shift);
    return fq_w_join_low32(fqv_single_half(fq_w_mul_even(x, multiplier), fq_w_even_lanes(total_shift)),
                           fqv_single_half(fq_w_mul_odd(x, multiplier), fq_w_odd_lanes(total_shift)));
}

/* fq_tflite_output: y + zero point clamped to [lo, hi], as clamp(y, lo - zy, hi - zy) + zy
 * (no int32 overflow; lo_q = lo - zy, hi_q = hi - zy) */
static inline fq_v fqv_tflite_output(fq_v y, fq_v zero_point, fq_v lo_q, fq_v hi_q) {
    return fq_v_add(fq_v_min(fq_v_max(y, lo_q), hi_q), zero_point);
}

#endif
