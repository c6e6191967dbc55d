/* The fixed-point steps of requant_fixedpoint.h, function for function, written once over
 * the lane primitives of fixedpoint_avx2.h or fixedpoint_avx512.h (include one of them first;
 * each epilogue file is its own translation unit, so both ISAs get their own copy). Every
 * step keeps the exact intermediate of the scalar code: the 32 x 32 -> 64-bit products are
 * two vpmuldq (even lanes, then the odd lanes moved down), the sums are 64-bit lanes.
 * Shifts must lie in [-31, 30] (fq_epilogue_prepare sends other tables to the scalar code).
 *
 * Each step that takes per-column constants comes in two parts: *_for(constants) derives what
 * depends on the constants alone (an epilogue does it once per column block, for all rows of
 * a tile), *_apply(x, derived) does the rest; fqv_<name>(x, ...) is the two together. */
#ifndef FASTQ_FIXEDPOINT_LANES_H
#define FASTQ_FIXEDPOINT_LANES_H

/* ---- fq_saturating_rounding_doubling_high_mul -------------------------------------------
 * trunc((p + nudge) / 2^31), nudge = p >= 0 ? 2^30 : 1 - 2^30 (gemmlowp), is
 * floor((p + 2^30) / 2^31) for every p: for p = -x < 0, trunc((1 - 2^30 - x) / 2^31) =
 * -floor((x + 2^30 - 1) / 2^31) = -ceil((x - 2^30) / 2^31) = floor((p + 2^30) / 2^31).
 * The result is bits 31..62 of t = p + 2^30; t + t puts them in the high half of the lane.
 * The exact result lies in [-2^31 + 1, 2^31]; its low 32 bits are INT32_MIN only for 2^31
 * (INT32_MIN * INT32_MIN, the one overflow), which saturates to INT32_MAX = INT32_MIN - 1. */
static inline fq_w fqv_high_mul_doubled(fq_w p) {
    fq_w t = fq_w_add(p, fq_w_dup(1LL << 30));
    return fq_w_add(t, t);
}

/* without the saturation: for b != INT32_MIN (every multiplier QuantizeMultiplier makes) */
static inline fq_v fqv_rounding_doubling_high_mul_apply(fq_v a, fq_v b, fq_v b_odd) {
    return fq_w_join_high32(fqv_high_mul_doubled(fq_w_mul_even(a, b)),
                            fqv_high_mul_doubled(fq_w_mul_even(fq_v_odd_down(a), b_odd)));
}

static inline fq_v fqv_saturating_rounding_doubling_high_mul_apply(fq_v a, fq_v b, fq_v b_odd) {
    fq_v r = fqv_rounding_doubling_high_mul_apply(a, b, b_odd);
    return fq_v_add_where(fq_v_eq(r, fq_v_dup(INT32_MIN)), r, fq_v_dup(-1));
}

static inline fq_v fqv_saturating_rounding_doubling_high_mul(fq_v a, fq_v b) {
    return fqv_saturating_rounding_doubling_high_mul_apply(a, b, fq_v_odd_down(b));
}

/* ---- fq_rounding_divide_by_pot: (x >> e) + ((x & mask) > (mask >> 1) + (x < 0)), 0 <= e <= 31 */
typedef struct { fq_v exponent, mask, half; } fqv_pot;

static inline fqv_pot fqv_rounding_divide_by_pot_for(fq_v e) {
    const fq_v one = fq_v_dup(1);
    fqv_pot d;
    d.exponent = e;
    d.mask = fq_v_sub(fq_v_sllv(one, e), one);
    d.half = fq_v_srav(d.mask, one);
    return d;
}

static inline fq_v fqv_rounding_divide_by_pot_apply(fq_v x, const fqv_pot *d) {
    const fq_v one = fq_v_dup(1);
    fq_v threshold = fq_v_add_where(fq_v_lt(x, fq_v_zero()), d->half, one);
    return fq_v_add_where(fq_v_gt(fq_v_and(x, d->mask), threshold), fq_v_srav(x, d->exponent), one);
}

static inline fq_v fqv_rounding_divide_by_pot(fq_v x, fq_v e) {
    fqv_pot d = fqv_rounding_divide_by_pot_for(e);
    return fqv_rounding_divide_by_pot_apply(x, &d);
}

/* ---- fq_rounding_shift_right: round(x / 2^e), ties up. The scalar forms x + 2^(e-1) in int64;
 * here floor(x / 2^e) + bit e-1 of x, the same value without the wider sum. */
typedef struct { fq_v exponent, below, has_half; } fqv_rshift;

static inline fqv_rshift fqv_rounding_shift_right_for(fq_v e) {
    const fq_v one = fq_v_dup(1);
    fqv_rshift d;
    d.exponent = e;
    d.below = fq_v_max(fq_v_sub(e, one), fq_v_zero());
    d.has_half = fq_v_select(fq_v_gt(e, fq_v_zero()), fq_v_zero(), one);     /* e = 0: no half */
    return d;
}

static inline fq_v fqv_rounding_shift_right_apply(fq_v x, const fqv_rshift *d) {
    return fq_v_add(fq_v_srav(x, d->exponent), fq_v_and(fq_v_srav(x, d->below), d->has_half));
}

static inline fq_v fqv_rounding_shift_right(fq_v x, fq_v e) {
    fqv_rshift d = fqv_rounding_shift_right_for(e);
    return fqv_rounding_shift_right_apply(x, &d);
}

/* ---- fq_multiply_by_quantized_multiplier ("double", the reference) and _double_up:
 * left = max(shift, 0), right = max(-shift, 0); x << left wraps, as the scalar */
typedef struct { fq_v multiplier, multiplier_odd, left; fqv_pot right; } fqv_mbqm;
typedef struct { fq_v multiplier, multiplier_odd, left; fqv_rshift right; } fqv_mbqm_up;

static inline fq_v fqv_left_shift(fq_v shift) { return fq_v_max(shift, fq_v_zero()); }
static inline fq_v fqv_right_shift(fq_v shift) { return fq_v_max(fq_v_sub(fq_v_zero(), shift), fq_v_zero()); }

static inline fqv_mbqm fqv_multiply_by_quantized_multiplier_for(fq_v multiplier, fq_v shift) {
    fqv_mbqm q;
    q.multiplier = multiplier;
    q.multiplier_odd = fq_v_odd_down(multiplier);
    q.left = fqv_left_shift(shift);
    q.right = fqv_rounding_divide_by_pot_for(fqv_right_shift(shift));
    return q;
}

static inline fq_v fqv_multiply_by_quantized_multiplier_apply(fq_v x, const fqv_mbqm *q) {
    fq_v h = fqv_saturating_rounding_doubling_high_mul_apply(fq_v_sllv(x, q->left), q->multiplier,
                                                              q->multiplier_odd);
    return fqv_rounding_divide_by_pot_apply(h, &q->right);
}

/* the same for tables whose shifts are all <= 0 and whose multipliers are never INT32_MIN
 * (fq_epilogue_prepare checks; the usual case, a real multiplier below 1): no left shift, and
 * the high multiply cannot saturate */
static inline fq_v fqv_multiply_by_quantized_multiplier_right_apply(fq_v x, const fqv_mbqm *q) {
    return fqv_rounding_divide_by_pot_apply(fqv_rounding_doubling_high_mul_apply(x, q->multiplier, q->multiplier_odd),
                                            &q->right);
}
#define fqv_multiply_by_quantized_multiplier_right_for fqv_multiply_by_quantized_multiplier_for

static inline fq_v fqv_multiply_by_quantized_multiplier(fq_v x, fq_v multiplier, fq_v shift) {
    fqv_mbqm q = fqv_multiply_by_quantized_multiplier_for(multiplier, shift);
    return fqv_multiply_by_quantized_multiplier_apply(x, &q);
}

static inline fqv_mbqm_up fqv_multiply_by_quantized_multiplier_double_up_for(fq_v multiplier, fq_v shift) {
    fqv_mbqm_up q;
    q.multiplier = multiplier;
    q.multiplier_odd = fq_v_odd_down(multiplier);
    q.left = fqv_left_shift(shift);
    q.right = fqv_rounding_shift_right_for(fqv_right_shift(shift));
    return q;
}

static inline fq_v fqv_multiply_by_quantized_multiplier_double_up_apply(fq_v x, const fqv_mbqm_up *q) {
    fq_v h = fqv_saturating_rounding_doubling_high_mul_apply(fq_v_sllv(x, q->left), q->multiplier,
                                                              q->multiplier_odd);
    return fqv_rounding_shift_right_apply(h, &q->right);
}

static inline fq_v fqv_multiply_by_quantized_multiplier_double_up(fq_v x, fq_v multiplier, fq_v shift) {
    fqv_mbqm_up q = fqv_multiply_by_quantized_multiplier_double_up_for(multiplier, shift);
    return fqv_multiply_by_quantized_multiplier_double_up_apply(x, &q);
}

/* ---- fq_multiply_by_quantized_multiplier_single: (x * m + 2^(ts - 1)) >> ts, ts = 31 - shift
 * in [1, 62], in 64-bit lanes (arithmetic shift), the low 32 bits kept (TFLite's cast) */
typedef struct { fq_v multiplier, multiplier_odd; fq_w ts_even, ts_odd, round_even, round_odd; } fqv_single;

static inline fqv_single fqv_multiply_by_quantized_multiplier_single_for(fq_v multiplier, fq_v shift) {
    const fq_w one = fq_w_dup(1);
    fq_v total_shift = fq_v_sub(fq_v_dup(31), shift);
    fqv_single q;
    q.multiplier = multiplier;
    q.multiplier_odd = fq_v_odd_down(multiplier);
    q.ts_even = fq_w_even_lanes(total_shift);
    q.ts_odd = fq_w_odd_lanes(total_shift);
    q.round_even = fq_w_sllv(one, fq_w_sub(q.ts_even, one));
    q.round_odd = fq_w_sllv(one, fq_w_sub(q.ts_odd, one));
    return q;
}

static inline fq_v fqv_multiply_by_quantized_multiplier_single_apply(fq_v x, const fqv_single *q) {
    fq_w even = fq_w_srav(fq_w_add(fq_w_mul_even(x, q->multiplier), q->round_even), q->ts_even);
    fq_w odd = fq_w_srav(fq_w_add(fq_w_mul_even(fq_v_odd_down(x), q->multiplier_odd), q->round_odd), q->ts_odd);
    return fq_w_join_low32(even, odd);
}

static inline fq_v fqv_multiply_by_quantized_multiplier_single(fq_v x, fq_v multiplier, fq_v shift) {
    fqv_single q = fqv_multiply_by_quantized_multiplier_single_for(multiplier, shift);
    return fqv_multiply_by_quantized_multiplier_single_apply(x, &q);
}

/* ---- fq_tflite_output: y + zero point clamped to [lo, hi], as clamp(y, lo - zy, hi - zy) + zy
 * (no int32 overflow; lo_q = lo - zy, hi_q = hi - zy) */
static inline fq_v fqv_tflite_output(fq_v y, fq_v zero_point, fq_v lo_q, fq_v hi_q) {
    return fq_v_add(fq_v_min(fq_v_max(y, lo_q), hi_q), zero_point);
}

#endif
