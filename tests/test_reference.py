"""The formulas reference.py adds for docs/ARITHMETIC.md, each held equal to what the library
or the compiled kernels compute: column offsets and the folded bias (§3), the int32 overflow
bound (§4), int8 = uint8 XOR 0x80 (§5), the dynamic float epilogue (§9), the panel layout (§11).
Random cases sit beside constructed ones (bounds hit exactly, int32 wrap, exact ties)."""
import numpy as np
import pytest

import fastq
from fastq import _kernels, reference
from fastq.qgemm import acc_bound_ok

INT32_MAX = 2**31 - 1


def rand_w(rng, n, k, lo=-128, hi=128):
    return rng.integers(lo, hi, (n, k), dtype=np.int8)


# ------------------------------------------------------------------ §3 column offsets, folded bias
@pytest.mark.parametrize("n,k", [(1, 1), (5, 7), (64, 4), (70, 129)])
def test_column_offsets_match_packed_weights(rng, n, k):
    w = rand_w(rng, n, k)
    zw = rng.integers(-128, 128, n).astype(np.int32)
    pw = _kernels.PackedWeights(w, zw)
    for za in (0, 1, 128, 255):
        for int_bias in (None, rng.integers(-2**31, 2**31, n).astype(np.int32),
                         np.full(n, INT32_MAX, np.int32)):     # wraps when za*colsum < 0
            got = pw.col_offsets(za, int_bias)[:n]
            expect = reference.column_offsets(k, za, pw.col_sums, zw, int_bias)
            assert np.array_equal(got, expect)
    # and the offsets turn raw dot products into the zero-point-corrected acc
    a = rng.integers(0, 256, (3, k), dtype=np.uint8)
    raw = a.astype(np.int64) @ w.astype(np.int64).T
    rows = a.astype(np.int64).sum(axis=1)
    col = reference.column_offsets(k, 37, w.astype(np.int64).sum(axis=1), zw)
    acc = reference.wrap_int32(raw + col[None, :] - rows[:, None] * zw.astype(np.int64)[None, :])
    assert np.array_equal(acc, reference.qgemm(a, 37, w, zw))


def _tflite_layer(rng, n, k, dtype, per_channel, bias_kind, x_scale=0.02):
    w = rand_w(rng, n, k, -127, 128)
    if per_channel:
        wq = fastq.QTensor(w, rng.uniform(0.005, 0.02, n), np.zeros(n, np.int64), axis=0)
    else:
        wq = fastq.QTensor(w, 0.01, 0)
    if bias_kind == "float":
        bias = rng.normal(0, 2, n).astype(np.float32)
    elif bias_kind == "int":
        bias = rng.integers(-2**31, 2**31, n).astype(np.int32)
        bias[0] = INT32_MAX                               # folding wraps for a negative zero point
    else:
        bias = None
    zy = -3 if dtype == "int8" else 120
    return fastq.QuantizedLinear(wq, bias, 0.07, zy, requant="tflite", dtype=dtype,
                                 input_scale=x_scale)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias_kind", ["none", "float", "int"])
def test_folded_bias_matches_fixed_point_params(rng, dtype, per_channel, bias_kind):
    n, k = 9, 33
    layer = _tflite_layer(rng, n, k, dtype, per_channel, bias_kind)
    w, zw = layer.weight.values, layer.weight.zero_point
    zx_range = (-128, 127) if dtype == "int8" else (0, 255)
    for zx in (zx_range[0], -1 if dtype == "int8" else 1, 0, zx_range[1]):
        p = layer.fixed_point_params(0.02, zx)
        expect = reference.folded_bias(p.bias, zx, w, zw)
        assert np.array_equal(p.folded_bias, expect)
        # folded[n] + sum_k x (w - zw) is the accumulator of the layer, bias included
        lo, hi = zx_range
        x = rng.integers(lo, hi + 1, (4, k)).astype(np.int64)
        dev = w.astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64).reshape(-1), (n,))[:, None]
        acc = reference.wrap_int32(reference.folded_bias(p.bias, zx, w, zw)[None, :] + x @ dev.T)
        assert np.array_equal(acc, reference.wrap_int32(reference.qgemm(x, zx, w, zw) + p.bias))


def test_folded_bias_wraps_like_int32():
    w = np.full((1, 4), 127, np.int8)
    # bias - zx * 508 with zx = -128: 2^31 - 1 + 65024 wraps to a negative int32
    got = reference.folded_bias(np.array([INT32_MAX]), -128, w, 0)
    assert got[0] == INT32_MAX + 128 * 508 - 2**32


# ------------------------------------------------------------------ §4 overflow bound
def _k_limit(a_dev, w_dev):
    return INT32_MAX // (a_dev * w_dev)


@pytest.mark.parametrize("za,a_lo,a_hi,w_lo,w_hi,zw", [
    (0, 0, 255, -127, 127, 0),           # a_dev 255, w_dev 127
    (0, 0, 255, -128, 127, 0),           # w_dev 128 (the one -128)
    (128, 0, 255, -128, 127, 0),         # a_dev 128: the cheap zero-point test decides
    (128, 100, 140, -128, 127, 0),       # narrow data: only the data test passes
    (255, 0, 255, -128, 127, -128),      # w_dev 255 through the weight zero point
])
def test_overflow_bound_matches_library_at_the_limit(za, a_lo, a_hi, w_lo, w_hi, zw):
    a_dev = max(za - a_lo, a_hi - za)
    w_dev = max(w_hi - zw, zw - w_lo)
    limit = _k_limit(a_dev, w_dev)
    for k in (limit, limit + 1):
        a = np.full((2, k), a_lo if za - a_lo >= a_hi - za else a_hi, np.uint8)
        a[1, 0] = a_hi if a[0, 0] == a_lo else a_lo
        w = np.full((1, k), w_lo if zw - w_lo >= w_hi - zw else w_hi, np.int8)
        pw = _kernels.PackedWeights(w, np.array([zw], np.int32))
        assert pw.max_abs_w_dev == reference.max_abs_w_dev(w, zw) == w_dev
        expect = reference.acc_bound_ok(a, za, w, zw)
        assert expect == (k == limit)
        assert acc_bound_ok(pw, a, za) == expect
        if expect:   # the bound is tight: the extreme row reaches it exactly, and it fits int32
            acc = reference.qgemm(a, za, w, zw)
            assert abs(int(acc[0, 0])) == reference.acc_bound(k, a_dev, w_dev) <= INT32_MAX
            assert np.array_equal(fastq.qgemm(a, za, w, zw), acc)
        else:
            with pytest.raises(ValueError, match="overflow"):
                fastq.qgemm(a, za, w, zw)


def test_overflow_bound_random_and_empty(rng):
    for _ in range(200):
        k = int(rng.integers(1, 80))
        za = int(rng.integers(0, 256))
        a = rng.integers(0, 256, (int(rng.integers(0, 3)), k), dtype=np.uint8)
        w = rand_w(rng, 3, k)
        zw = rng.integers(-128, 128, 3).astype(np.int32)
        pw = _kernels.PackedWeights(w, zw)
        assert pw.max_abs_w_dev == reference.max_abs_w_dev(w, zw)
        assert acc_bound_ok(pw, a, za) == reference.acc_bound_ok(a, za, w, zw) is True
    empty = np.zeros((0, 5), np.uint8)
    w = np.full((2, 5), -128, np.int8)
    assert reference.acc_bound_ok(empty, 0, w, 127) and acc_bound_ok(_kernels.PackedWeights(w, np.array([127], np.int32)), empty, 0)


# ------------------------------------------------------------------ §5 int8 = uint8 XOR 0x80
def test_int8_flip_is_plus_128_for_every_value():
    v = np.arange(-128, 128).astype(np.int8)
    u, z = reference.int8_as_uint8(v, -5)
    assert np.array_equal(u.astype(np.int64), v.astype(np.int64) + 128) and z == 123
    assert np.array_equal(u.astype(np.int64) - z, v.astype(np.int64) + 5)     # same q - z
    back, z0 = reference.uint8_as_int8(u, z)
    assert np.array_equal(back, v) and z0 == -5
    with pytest.raises(TypeError, match="values"):
        reference.int8_as_uint8(u, 0)


def test_int8_output_clamp_identity():
    # clamp(r + z, -128, 127) == clamp(r + z + 128, 0, 255) - 128 for every int8 z, r near the edges
    r = np.concatenate([np.arange(-600, 600), [-(2**31), 2**31 - 1 - 255, 2**31 - 1]]).astype(np.int64)
    for z in range(-128, 128):
        s8 = np.clip(r + z, -128, 127)
        u8 = np.clip(r + z + 128, 0, 255)
        assert np.array_equal(s8, u8 - 128)
        assert np.array_equal(np.maximum(s8, z), np.maximum(u8, z + 128) - 128)     # fused ReLU


def test_int8_qgemm_equals_flipped_uint8(rng):
    x = rng.integers(-128, 128, (5, 37)).astype(np.int8)
    w = rand_w(rng, 11, 37)
    zw = rng.integers(-128, 128, 11)
    for zx in (-128, -1, 0, 77, 127):
        u, zu = reference.int8_as_uint8(x, zx)
        direct = reference.qgemm(x, zx, w, zw)
        assert np.array_equal(direct, reference.qgemm(u, zu, w, zw))
        assert np.array_equal(direct, fastq.qgemm(u, zu, w, zw.astype(np.int32)))


def _layer(rng, requant, dtype, relu, per_channel, n, k, ties):
    w = rand_w(rng, n, k, -127, 128)
    if ties:       # power-of-two scales, no bias: y = acc / 2, every odd acc is an exact tie
        wq = fastq.QTensor(w, 1.0, 0)
        bias, scale, x_scale = None, 1.0, 0.5
    elif per_channel:
        wq = fastq.QTensor(w, rng.uniform(0.004, 0.02, n), np.zeros(n, np.int64), axis=0)
        bias, scale, x_scale = rng.normal(0, 1, n).astype(np.float32), 0.11, 0.03
    else:
        wq = fastq.QTensor(w, 0.013, 0)
        bias, scale, x_scale = rng.normal(0, 1, n).astype(np.float32), 0.09, 0.03
    zy = int(rng.integers(-20, 20)) if dtype == "int8" else int(rng.integers(100, 150))
    return fastq.QuantizedLinear(wq, bias, scale, zy, relu=relu, requant=requant, dtype=dtype), x_scale


@pytest.mark.parametrize("requant", ["fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("x_dtype,dtype", [("int8", "int8"), ("int8", "uint8"), ("uint8", "int8")])
@pytest.mark.parametrize("case", ["per_tensor", "per_channel", "ties", "relu"])
def test_int8_layers_equal_the_signed_reference(backend, rng, requant, x_dtype, dtype, case):
    n, k, m = 67, 45, 7
    layer, x_scale = _layer(rng, requant, dtype, case == "relu", case == "per_channel", n, k, case == "ties")
    lo, hi = (-128, 127) if x_dtype == "int8" else (0, 255)
    x = rng.integers(lo, hi + 1, (m, k)).astype(x_dtype)
    zx = -9 if x_dtype == "int8" else 119
    got = layer(fastq.QTensor(x, x_scale, zx))
    assert got.values.dtype == np.dtype(dtype) and got.zero_point == layer.zero_point
    w = layer.weight
    if requant == "tflite":   # TFLite computes int8 directly, no flip anywhere
        expect = reference.linear_tflite(x, x_scale, zx, w.values, w.scale, w.zero_point, layer.bias,
                                         layer.scale, layer.zero_point, layer.relu, layer.per_channel,
                                         dtype=dtype)
    else:
        expect = reference.linear_int8(x, zx, w.values, w.scale, w.zero_point, layer.bias, x_scale,
                                       layer.scale, layer.zero_point, layer.relu, requant, dtype,
                                       layer.per_channel)
    assert expect.dtype == np.dtype(dtype)
    assert np.array_equal(got.values, expect)


def test_int8_reference_equals_uint8_reference_shifted(rng):
    """linear_int8 with uint8 in and out is reference.linear itself (no flip)."""
    layer, x_scale = _layer(rng, "fbgemm", "uint8", False, True, 20, 30, False)
    x = rng.integers(0, 256, (4, 30)).astype(np.uint8)
    w = layer.weight
    a = reference.linear_int8(x, 3, w.values, w.scale, w.zero_point, layer.bias, x_scale, layer.scale,
                              layer.zero_point, False, "fbgemm", "uint8", True)
    b = reference.linear(x, x_scale, 3, w.values, w.scale, w.zero_point, layer.bias, layer.scale,
                         layer.zero_point, False, "fbgemm", True)
    assert np.array_equal(a, b)


# ------------------------------------------------------------------ §9 dynamic float epilogue
def _dynamic_case(rng, per_channel, n=70, k=40):
    w = rand_w(rng, n, k, -127, 128)
    if per_channel:
        return fastq.QTensor(w, rng.uniform(0.002, 0.02, n), np.zeros(n, np.int64), axis=0)
    return fastq.QTensor(w, 0.0123, 0)


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_dynamic_epilogue_matches_layer(backend, rng, mode, per_channel, bias, relu):
    wq = _dynamic_case(rng, per_channel)
    n, k = wq.values.shape
    b = rng.normal(0, 3, n).astype(np.float32) if bias else None
    layer = fastq.DynamicQuantizedLinear(wq, b, relu=relu, mode=mode)
    x = (rng.standard_normal((9, k)) * 2).astype(np.float32)
    sx, zx = layer.input_qparams(x)
    x_q = reference.quantize_per_tensor(x, sx, zx, "uint8")
    acc = reference.qgemm(x_q, zx, wq.values, wq.zero_point)
    expect = reference.requant_dynamic(acc, sx, wq.scale, b, relu, mode)
    got = layer(x)
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), expect.view(np.uint32))


def test_dynamic_epilogue_modes_differ_on_constructed_cases(backend):
    """Where fmaf(f, s, b) and f32(f32(f*s) + b) differ, each layer follows its own mode."""
    rng = np.random.default_rng(5)
    k, n = 8, 64
    w = rand_w(rng, n, k, -127, 128)
    wq = fastq.QTensor(w, 0.0123, 0)
    x = rng.standard_normal((32, k)).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    sx, zx = reference.choose_qparams_dynamic(lo, hi, True)
    acc = reference.qgemm(reference.quantize_per_tensor(x, sx, zx), zx, w, 0)
    s = reference.dynamic_scales(sx, 0.0123)
    # a bias that nearly cancels f*s: the product's low bits decide the sum
    b = (-(acc[0].astype(np.float32) * s).astype(np.float32) + np.float32(1e-4)).astype(np.float32)
    fused = reference.requant_dynamic(acc, sx, 0.0123, b, False, "fbgemm")
    twice = reference.requant_dynamic(acc, sx, 0.0123, b, False, "qnnpack")
    assert np.count_nonzero(fused != twice) > 0
    for mode, expect in (("fbgemm", fused), ("qnnpack", twice)):
        layer = fastq.DynamicQuantizedLinear(wq, b, mode=mode, reduce_range=True)
        assert np.array_equal(layer(x).view(np.uint32), expect.view(np.uint32))


def test_requant_dynamic_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        reference.requant_dynamic(np.zeros((1, 1), np.int64), 0.1, 0.1, mode="onednn")


# ------------------------------------------------------------------ §11 panel layout
@pytest.mark.parametrize("n,k", [(1, 1), (3, 6), (16, 5), (33, 8), (48, 3), (64, 4), (65, 9), (80, 6), (130, 70)])
def test_pack_panels_matches_packed_bytes(backend, rng, n, k):
    w = rand_w(rng, n, k)
    pw = _kernels.PackedWeights(w, np.zeros(1, np.int32))
    assert np.array_equal(reference.pack_panels(w), pw.packed_bytes())
    assert pw.n_padded == reference.padded_columns(n)
    # the worked example of docs/ARITHMETIC.md §14: w[65, 9] sits in panel 1, group 2, lane 1, byte 1
    if (n, k) == (130, 70):
        assert reference.packed_offset(65, 9, 70, 130) == ((1 * 18 + 2) * 64 + 1) * 4 + 1
        assert pw.packed_bytes()[reference.packed_offset(65, 9, 70, 130)] == w[65, 9]
    # and the narrow last panel of fastq.h's example: N = 80, K = 6, w[70, 5] in panel 1 (16 wide)
    if (n, k) == (80, 6):
        assert reference.packed_offset(70, 5, 6, 80) == 64 * 4 * 2 + (1 * 16 + 6) * 4 + 1
        assert pw.packed_bytes()[reference.packed_offset(70, 5, 6, 80)] == w[70, 5]


# ------------------------------------------------------------------ the worked examples of docs/ARITHMETIC.md
def test_arithmetic_md_worked_examples():
    # §3: K = 4, w = (3, -1, 0, 2), z_x = 128, bias 1000
    w = np.array([[3, -1, 0, 2]], np.int8)
    x = np.array([[130, 128, 127, 129]], np.uint8)
    assert reference.column_offsets(4, 128, w.astype(np.int64).sum(axis=1), 0, [1000])[0] == 488
    assert reference.qgemm(x, 128, w, 0)[0, 0] + 1000 == 1008
    assert reference.folded_bias([1000], 128, w, 0)[0] + int(x[0].astype(np.int64) @ w[0].astype(np.int64)) == 1008
    # §4: the largest accepted K per row of the table
    for (a_dev, w_dev), k in {(255, 127): 66311, (255, 128): 65793, (128, 128): 131071, (28, 128): 599186,
                              (255, 255): 33025}.items():
        assert reference.acc_bound(k, a_dev, w_dev) <= INT32_MAX < reference.acc_bound(k + 1, a_dev, w_dev)
    # §8: QuantizeMultiplier and the three roundings of d = 0.375
    assert reference.quantize_multiplier(0.0123) == (1690499128, -6)
    q, shift = reference.quantize_multiplier(0.375)
    assert (q, shift) == (1610612736, -1)
    table = {6: (5, 3, 3, 2), -10: (-7, -4, -3, -4), -12: (-9, -5, -4, -4)}
    for x_, (h, d, u, s) in table.items():
        assert reference.saturating_rounding_doubling_high_mul(x_, q) == h
        assert reference.MBQM["double"](x_, q, shift) == d
        assert reference.MBQM["double_up"](x_, q, shift) == u
        assert reference.MBQM["single"](x_, q, shift) == s
        got = [int(fastq.multiply_by_quantized_multiplier(x_, q, shift, rounding=r))
               for r in ("double", "double_up", "single")]
        assert got == [d, u, s]
    # §11 example 5
    assert reference.pack_panels(np.zeros((130, 70), np.int8)).size == 10368
    assert reference.packed_offset(129, 69, 70, 130) == 10309 and reference.packed_offset(65, 9, 70, 130) == 5125
