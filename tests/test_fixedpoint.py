"""Fixed-point requantization (docs/ARITHMETIC.md §8): fastq.quantize_multiplier and
fastq.multiply_by_quantized_multiplier against TensorFlow Lite's published test values,
exact tie cases worked out with Python integers, and the numpy reference over the whole
int32 range (hypothesis)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastq
from fastq import reference

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def mbqm(x, q, s, rounding="double"):
    return int(fastq.multiply_by_quantized_multiplier(np.int32(x), q, s, rounding=rounding))


# ------------------------------------------------------------------ published TFLite values
# tensorflow/lite/kernels/internal/quantization_util_test.cc (QuantizeMultiplierSmallerThanOneExp,
# QuantizeMultiplierGreaterThanOne, QuantizeMultiplierUnderflow, QuantizeMultiplierArray)
# and docs/ARITHMETIC.md §8.
QUANTIZE_MULTIPLIER_CASES = [
    (0.0, (0, 0)),
    (0.25, (1073741824, -1)),
    (0.50 - 5e-9, (2147483627, -1)),
    (0.50 - 1e-10, (1073741824, 0)),       # rounds up to 2^31: halved, shift + 1
    (0.50, (1073741824, 0)),
    (0.75, (1610612736, 0)),
    (1 - 1e-9, (2147483646, 0)),
    (1 + 1e-11, (1073741824, 1)),
    (1.25, (1342177280, 1)),
    (1.50, (1610612736, 1)),
    (1.75, (1879048192, 1)),
    (2 - 1e-9, (2147483647, 1)),
    (2 - 1e-11, (1073741824, 2)),
    (2.0, (1073741824, 2)),
    (-0.125, (-1073741824, -2)),
    (math.ldexp(1.0, -31), (1073741824, -30)),
    (math.ldexp(1.0, -32), (1073741824, -31)),
    (float(np.float32(0.99)) * 2.0**-32, (0, 0)),   # std::ldexp(0.99f, -32): flushed to zero
    (math.ldexp(1.0, -33), (0, 0)),
] + [(w, (-1073741824 if w < 0 else 1073741824, int(math.log2(abs(w))) + 1))
     for w in (-4, -2, -1, -0.5, -0.25, -0.125, 0.125, 0.25, 0.5, 1, 2, 4)]


@pytest.mark.parametrize("real, expected", QUANTIZE_MULTIPLIER_CASES)
def test_quantize_multiplier_published(real, expected):
    assert fastq.quantize_multiplier(real) == expected
    if expected[1] <= 30:   # single rounding differs only when it saturates the shift
        assert fastq.quantize_multiplier(real, rounding="single") == expected


def test_quantize_multiplier_shift_above_30():
    # PreprocessSoftmaxScaling's published double-rounding values quantize 2^31 - 1 and 2^30.
    assert fastq.quantize_multiplier(2.0**31 - 1) == (2147483647, 31)
    assert fastq.quantize_multiplier(2.0**30) == (1073741824, 31)
    # TFLITE_SINGLE_ROUNDING saturates any shift above 30 to (2^31 - 1, 30) (quantization_util.cc)
    assert fastq.quantize_multiplier(2.0**30, rounding="single") == (INT32_MAX, 30)
    assert fastq.quantize_multiplier(1e12, rounding="single") == (INT32_MAX, 30)
    assert fastq.quantize_multiplier(2.0**30 - 1, rounding="single") == (2147483646, 30)


def test_quantize_multiplier_int32_min():
    # a negative real just above -2^k rounds to -2^31, which fits int32 and is kept
    q, s = fastq.quantize_multiplier(-(1 - 2.0**-40))
    assert (q, s) == (INT32_MIN, 0)


def test_quantize_multiplier_represents_real(rng):
    reals = np.concatenate([rng.uniform(-4, 4, 500), 2.0 ** rng.uniform(-31, 20, 500)])
    for d in reals:
        q, s = fastq.quantize_multiplier(float(d))
        assert 2**30 <= abs(q) <= 2**31
        # |d - q 2^(s-31)| <= half an ulp of the 31-bit significand
        assert abs(d - q * 2.0 ** (s - 31)) <= 2.0 ** (s - 32)


# tensorflow/lite/kernels/internal/quantization_util_test.cc MultiplyByQuantizedMultiplierInt32
@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
@pytest.mark.parametrize("x, real, expected", [
    (0, 0.1, 0), (1, 0.0, 0), (10000, 0.00097656, 10), (-10000, 0.00097656, -10),
    (INT32_MIN, 0.00001, -21475), (INT32_MAX, 0.00001, 21475),
])
def test_mbqm_published(x, real, expected, rounding):
    q, s = fastq.quantize_multiplier(real, rounding=rounding)
    assert mbqm(x, q, s, rounding) == expected


@pytest.mark.parametrize("x, real, expected", [
    (10000, -0.00097656, -10), (-10000, -0.00097656, 10),
    (INT32_MIN, -0.00001, 21475), (INT32_MAX, -0.00001, -21475),
])
def test_mbqm_published_negative_multiplier(x, real, expected):
    q, s = fastq.quantize_multiplier(real)
    assert mbqm(x, q, s) == expected


@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
def test_mbqm_published_max_x_max_multiplier(rounding):
    x, q, s = INT32_MAX, INT32_MAX, -3
    expected = int(reference._round_half_away(x * q / float(2 ** (31 - s))))  # TfLiteRound in double
    assert mbqm(x, q, s, rounding) == expected
    assert mbqm(-x, q, s, rounding) == -expected


# ------------------------------------------------------------------ exact ties (XNNPACK style)
def _half_away(num, den):
    """round(num / den), ties away from zero, Python integers."""
    r = (abs(num) * 2 + den) // (2 * den)
    return r if num >= 0 else -r


@pytest.mark.parametrize("e", [2, 3, 7, 16, 25, 30])
def test_ties_double_rounding_away_from_zero(e):
    # multiplier 2^-e exactly: q = 2^30, shift = 1 - e; x = +-(k + 1/2) 2^e are exact ties
    q, s = fastq.quantize_multiplier(2.0**-e)
    assert (q, s) == (2**30, 1 - e)
    k = np.array([0, 1, 2, 3, 100, 2**(31 - e) // 2 - 1], np.int64)
    k = k[(2 * k + 1) * 2 ** (e - 1) <= INT32_MAX]
    x = np.concatenate([(2 * k + 1) << (e - 1), -((2 * k + 1) << (e - 1))])
    got = fastq.multiply_by_quantized_multiplier(x.astype(np.int32), q, s)
    assert np.array_equal(got, [_half_away(int(v), 2**e) for v in x])
    # two below and above a tie round to the nearer side (x + d stays even, so the high
    # multiply is exact; odd neighbours are where double rounding errs, see below)
    for d in (-2, 2):
        got = fastq.multiply_by_quantized_multiplier((x + d).astype(np.int32), q, s)
        assert np.array_equal(got, [_half_away(int(v) + d, 2**e) for v in x])


@pytest.mark.parametrize("e", [1, 2, 3, 7, 16, 25, 30])
def test_ties_single_rounding_up(e):
    q, s = fastq.quantize_multiplier(2.0**-e, rounding="single")
    k = np.array([0, 1, 2, 3, 100, 2**(31 - e) // 2 - 1], np.int64)
    k = k[(2 * k + 1) * 2 ** (e - 1) <= INT32_MAX]
    x = np.concatenate([(2 * k + 1) << (e - 1), -((2 * k + 1) << (e - 1))])
    got = fastq.multiply_by_quantized_multiplier(x.astype(np.int32), q, s, rounding="single")
    # one rounding, ties toward +infinity: floor(x / 2^e + 1/2)
    assert np.array_equal(got, [(int(v) + 2 ** (e - 1)) >> e for v in x])


@pytest.mark.parametrize("e", [2, 3, 7, 16, 25, 30])
def test_ties_double_up_rounding_up(e):
    # the high multiply is exact on these (x even), the final shift rounds ties up
    q, s = fastq.quantize_multiplier(2.0**-e, rounding="double_up")
    k = np.array([0, 1, 2, 3, 100, 2**(31 - e) // 2 - 1], np.int64)
    k = k[(2 * k + 1) * 2 ** (e - 1) <= INT32_MAX]
    x = np.concatenate([(2 * k + 1) << (e - 1), -((2 * k + 1) << (e - 1))])
    got = fastq.multiply_by_quantized_multiplier(x.astype(np.int32), q, s, rounding="double_up")
    assert np.array_equal(got, [(int(v) + 2 ** (e - 1)) >> e for v in x])


def test_double_rounding_differs_from_single():
    # 0.25 * 1: the high multiply rounds 0.5 up to 1, the shift rounds 1/2 away to 1 again
    q, s = fastq.quantize_multiplier(0.25)
    assert mbqm(1, q, s, "double") == 1
    assert mbqm(1, q, s, "double_up") == 1
    assert mbqm(1, q, s, "single") == 0
    assert mbqm(-2, q, s, "double") == -1      # -0.5: away from zero
    assert mbqm(-2, q, s, "double_up") == 0    # -0.5: up


def test_saturation_int32_min_squared():
    # SRDHM(INT32_MIN, INT32_MIN) is the one overflowing product: INT32_MAX
    assert mbqm(INT32_MIN, INT32_MIN, 0) == INT32_MAX
    assert mbqm(INT32_MIN, INT32_MIN, -1) == 2**30
    assert mbqm(INT32_MIN, INT32_MAX, 0) == -INT32_MAX
    # single rounding: 2^62 / 2^31 = 2^31 does not fit and truncates (TFLite's static_cast)
    assert mbqm(INT32_MIN, INT32_MIN, 0, "single") == INT32_MIN
    assert mbqm(INT32_MIN, INT32_MIN, -1, "single") == 2**30


def test_left_shift():
    q, s = fastq.quantize_multiplier(3.0)      # (3 * 2^29, 2)
    assert (q, s) == (3 * 2**29, 2)
    x = np.array([0, 1, -1, 7, -7, 1000, 2**28, -(2**28)], np.int32)
    for rounding in ("double", "single", "double_up"):
        got = fastq.multiply_by_quantized_multiplier(x, q, s, rounding=rounding)
        assert np.array_equal(got, reference.wrap_int32(3 * x.astype(np.int64)))


def test_left_shift_wraps_like_the_reference():
    # x * (1 << shift) in int32: 2^30 * 4 wraps to 0, so the double-rounding result is 0
    assert mbqm(2**30, 2**30, 2) == 0
    # (2^29 + 1) * 4 wraps to -2^31 + 4; times 2^30 / 2^31 halves it
    assert mbqm(2**29 + 1, 2**30, 2) == (-(2**31) + 4) // 2


def test_tiny_multiplier_flushes_to_zero():
    q, s = fastq.quantize_multiplier(1e-12)
    assert (q, s) == (0, 0)
    x = np.array([INT32_MIN, -1, 0, 1, INT32_MAX], np.int32)
    for rounding in ("double", "single", "double_up"):
        assert not fastq.multiply_by_quantized_multiplier(x, q, s, rounding=rounding).any()


def test_extreme_shifts():
    x = np.array([INT32_MIN, -(2**30) - 1, -(2**30), -1, 0, 1, 2**30, INT32_MAX], np.int32)
    # shift -31: divides by 2^31 twice over (2^30 multiplier): |x| / 2^32 rounds to 0 or +-1
    got = fastq.multiply_by_quantized_multiplier(x, 2**30, -31)
    assert np.array_equal(got, reference.multiply_by_quantized_multiplier(x, 2**30, -31))
    got = fastq.multiply_by_quantized_multiplier(x, INT32_MAX, 30, rounding="single")
    assert np.array_equal(got, reference.multiply_by_quantized_multiplier_single(x, INT32_MAX, 30))


# ------------------------------------------------------------------ the reference itself
int32s = st.integers(INT32_MIN, INT32_MAX)


@settings(max_examples=400, deadline=None)
@given(a=int32s, b=int32s)
def test_reference_srdhm_is_nearest_ties_up(a, b):
    # floor(a b / 2^31 + 1/2) in Python integers, except the saturating INT32_MIN^2
    expected = INT32_MAX if a == b == INT32_MIN else (a * b + 2**30) >> 31
    assert int(reference.saturating_rounding_doubling_high_mul(a, b)) == expected


@settings(max_examples=400, deadline=None)
@given(x=int32s, e=st.integers(0, 31))
def test_reference_rounding_divide_by_pot_is_half_away(x, e):
    assert int(reference.rounding_divide_by_pot(x, e)) == _half_away(x, 2**e)


@settings(max_examples=300, deadline=None)
@given(x=int32s, q=int32s, s=st.integers(-31, 30))
def test_reference_single_is_one_rounding(x, q, s):
    v = (x * q + 2 ** (30 - s)) >> (31 - s)
    expected = (v + 2**31) % 2**32 - 2**31
    assert int(reference.multiply_by_quantized_multiplier_single(x, q, s)) == expected


@settings(max_examples=300, deadline=None)
@given(x=int32s, q=int32s, s=st.integers(-31, 0))
def test_reference_double_up_is_srdhm_then_shift_up(x, q, s):
    h = INT32_MAX if x == q == INT32_MIN else (x * q + 2**30) >> 31
    assert int(reference.multiply_by_quantized_multiplier_double_up(x, q, s)) == (h + (2 ** -s >> 1)) >> -s


# ------------------------------------------------------------------ C kernel == reference
edge_int32s = st.one_of(int32s, st.sampled_from([INT32_MIN, INT32_MIN + 1, -(2**30), -1, 0, 1, 2**30, INT32_MAX]))


@settings(max_examples=300, deadline=None)
@given(x=st.lists(edge_int32s, min_size=1, max_size=40), q=edge_int32s, s=st.integers(-31, 30),
       rounding=st.sampled_from(["double", "single", "double_up"]))
def test_kernel_matches_reference_per_tensor(x, q, s, rounding):
    x = np.array(x, np.int32)
    got = fastq.multiply_by_quantized_multiplier(x, q, s, rounding=rounding)
    ref = reference.MBQM[rounding](x, q, s)
    assert got.dtype == np.int32 and got.shape == x.shape
    assert np.array_equal(got, ref)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 5), channels=st.integers(1, 9),
       rounding=st.sampled_from(["double", "single", "double_up"]))
def test_kernel_matches_reference_per_channel(seed, rows, channels, rounding):
    rng = np.random.default_rng(seed)
    x = rng.integers(INT32_MIN, INT32_MAX, (rows, channels), endpoint=True, dtype=np.int64).astype(np.int32)
    q = rng.integers(INT32_MIN, INT32_MAX, channels, endpoint=True, dtype=np.int64)
    s = rng.integers(-31, 30, channels, endpoint=True)
    got = fastq.multiply_by_quantized_multiplier(x, q, s, rounding=rounding)
    ref = reference.MBQM[rounding](x, q[None, :], s[None, :])
    assert np.array_equal(got, ref)


def test_kernel_realistic_multipliers(rng):
    # quantize_multiplier outputs and accumulators spread over the int32 range, 3-D input
    x = rng.integers(INT32_MIN, INT32_MAX, (3, 50, 8), endpoint=True, dtype=np.int64).astype(np.int32)
    reals = 2.0 ** rng.uniform(-30, 3, 8)
    qs = np.array([fastq.quantize_multiplier(r) for r in reals])
    for rounding, ref in reference.MBQM.items():
        got = fastq.multiply_by_quantized_multiplier(x, qs[:, 0], qs[:, 1], rounding=rounding)
        assert np.array_equal(got, ref(x, qs[:, 0], qs[:, 1]))


def test_scalar_and_list_inputs():
    assert fastq.multiply_by_quantized_multiplier(7, 2**30, 0) == 4
    assert fastq.multiply_by_quantized_multiplier([7, -7], [2**30, 2**30], [0, 0]).tolist() == [4, -3]
    # a scalar multiplier with per-channel shifts broadcasts
    got = fastq.multiply_by_quantized_multiplier(np.array([[8, 8]], np.int32), 2**30, [0, -1])
    assert got.tolist() == [[4, 2]]


def test_non_contiguous_and_int64_input(rng):
    x = rng.integers(-10**6, 10**6, (6, 8), dtype=np.int64)
    got = fastq.multiply_by_quantized_multiplier(x[:, ::2], 1518500250, -3)
    assert np.array_equal(got, reference.multiply_by_quantized_multiplier(x[:, ::2], 1518500250, -3))


# ------------------------------------------------------------------ input validation
@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(acc=np.zeros(3, np.float32)), TypeError, "acc"),
    (dict(acc=True), TypeError, "acc"),
    (dict(acc=np.array([2**31], np.int64)), ValueError, "acc"),
    (dict(multiplier=1.5), TypeError, "multiplier"),
    (dict(multiplier=2**31), ValueError, "multiplier"),
    (dict(multiplier=[1, 2]), ValueError, "multiplier"),
    (dict(multiplier=np.ones((1, 3), np.int32)), ValueError, "multiplier"),
    (dict(shift=31), ValueError, "shift"),
    (dict(shift=-32), ValueError, "shift"),
    (dict(shift=[0, 0, 0, 0]), ValueError, "shift"),
    (dict(shift=0.0), TypeError, "shift"),
    (dict(rounding="nearest"), ValueError, "rounding"),
    (dict(rounding=1), TypeError, "rounding"),
])
def test_validation(kwargs, exc, name):
    args = dict(acc=np.zeros((2, 3), np.int32), multiplier=2**30, shift=0)
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        fastq.multiply_by_quantized_multiplier(**args)


@pytest.mark.parametrize("real, exc", [("0.5", TypeError), (True, TypeError), (float("nan"), ValueError),
                                       (float("inf"), ValueError)])
def test_quantize_multiplier_validation(real, exc):
    with pytest.raises(exc, match="real"):
        fastq.quantize_multiplier(real)
    with pytest.raises(ValueError, match="rounding"):
        fastq.quantize_multiplier(0.5, rounding="half")
