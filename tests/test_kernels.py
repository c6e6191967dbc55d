"""Every kernel backend against fastq.reference, bit for bit (XNNPACK-style tester).

One tester drives each backend of fastq.backends() over the tails of the tiling (M rows of a
tile, N columns of a 64-column panel, K % 4 of a k-group), a few large shapes, extreme values
and every epilogue mode. Oracle: fastq.reference (numpy, int64 / float32 step by step)."""
import itertools

import numpy as np
import pytest

import fastq
from fastq import _kernels, reference

BACKEND_OWNERS = {row["name"]: row["kernels"] for row in _kernels.backend_table()}


# the `backend` fixture (tests/conftest.py) runs a test once per ISA backend


def rand_u8(rng, shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def rand_s8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


# ------------------------------------------------------------------ int32 core (fastq.qgemm)
def check_qgemm(rng, m, n, k, per_channel_zp=None):
    a = rand_u8(rng, (m, k))
    w = rand_s8(rng, (n, k))
    za = int(rng.integers(0, 256))
    if per_channel_zp is None:
        per_channel_zp = bool(rng.integers(0, 2))
    zw = rng.integers(-128, 128, n).astype(np.int32) if per_channel_zp else int(rng.integers(-128, 128))
    got = fastq.qgemm(a, za, w, zw)
    assert got.dtype == np.int32 and got.shape == (m, n)
    expect = reference.qgemm(a, za, w, zw)
    assert np.array_equal(got, expect), (m, n, k)


def test_qgemm_every_m(backend):
    rng = np.random.default_rng(1)
    for m in range(1, 14):
        for n, k in ((70, 37), (64, 8), (5, 3)):
            check_qgemm(rng, m, n, k)


def test_qgemm_every_n(backend):
    rng = np.random.default_rng(2)
    for n in range(1, 131):
        for m, k in ((1, 13), (7, 64)):
            check_qgemm(rng, m, n, k)


def test_qgemm_every_k(backend):
    rng = np.random.default_rng(3)
    for k in range(1, 71):
        for m, n in ((1, 67), (6, 3), (11, 64)):
            check_qgemm(rng, m, n, k)


def test_qgemm_random_shapes(backend):
    rng = np.random.default_rng(4)
    for _ in range(40):
        check_qgemm(rng, int(rng.integers(1, 14)), int(rng.integers(1, 131)), int(rng.integers(1, 71)))


@pytest.mark.parametrize("m,n,k", [(64, 300, 4096), (1, 300, 4097), (13, 129, 1030), (2, 1000, 1)])
def test_qgemm_large(backend, m, n, k):
    check_qgemm(np.random.default_rng(m * 7 + n + k), m, n, k)


def test_qgemm_rows_end_at_buffer_end(backend):
    """The K tail must not be read past the end of the last activation row: a view that
    ends exactly at the end of its buffer (a guard page would catch an over-read)."""
    rng = np.random.default_rng(5)
    for k in (1, 2, 3, 5, 6, 7, 66, 67):
        buf = rand_u8(rng, 3 * k)
        a = buf.reshape(3, k)
        w = rand_s8(rng, (65, k))
        assert np.array_equal(fastq.qgemm(a, 7, w, -3), reference.qgemm(a, 7, w, -3))


def test_qgemm_extremes_near_int32_bound(backend):
    """All-255 activations times -128 weights with zero points 0 / 127: each product is
    255 * -255 and K = 33025 brings |acc| to 2147450625, just inside int32."""
    k = 33025
    a = np.full((2, k), 255, np.uint8)
    w = np.full((70, k), -128, np.int8)
    got = fastq.qgemm(a, 0, w, 127)
    expect = reference.qgemm(a, 0, w, 127)
    assert expect.min() == -2147450625
    assert np.array_equal(got, expect)
    # and the other signs: (0 - 255) * (127 - (-128))
    a0 = np.zeros((3, k), np.uint8)
    w1 = np.full((5, k), 127, np.int8)
    assert np.array_equal(fastq.qgemm(a0, 255, w1, -128), reference.qgemm(a0, 255, w1, -128))
    with pytest.raises(ValueError, match="^a: "):
        fastq.qgemm(np.full((1, k + 1), 255, np.uint8), 0, np.full((1, k + 1), -128, np.int8), 127)


def test_qgemm_extremes_small(backend):
    rng = np.random.default_rng(6)
    for m, n, k in ((1, 64, 64), (7, 130, 70), (13, 1, 1)):
        for aval, wval in ((255, -128), (255, 127), (0, -128)):
            a = np.full((m, k), aval, np.uint8)
            w = np.full((n, k), wval, np.int8)
            zw = rng.integers(-128, 128, n).astype(np.int32)
            for za in (0, 255, 128):
                assert np.array_equal(fastq.qgemm(a, za, w, zw), reference.qgemm(a, za, w, zw))


def test_backends_agree_with_scalar(backend):
    rng = np.random.default_rng(7)
    a = rand_u8(rng, (17, 203))
    w = rand_s8(rng, (131, 203))
    got = fastq.qgemm(a, 11, w, 0)
    fastq.set_backend("scalar")
    try:
        scalar = fastq.qgemm(a, 11, w, 0)
    finally:
        fastq.set_backend(backend)
    assert np.array_equal(got, scalar)


ROUNDINGS = ["double", "single", "double_up"]     # fq_rounding values 0, 1, 2


# ------------------------------------------------------------------ layers (requant modes)
def tflite_expected(acc, x_scale, w_scales, y_scale, y_zp, bias, relu, per_channel):
    mult, shift = reference.tflite_multipliers(x_scale, w_scales, y_scale, per_channel)
    if bias is not None:
        acc = reference.wrap_int32(acc + reference.tflite_bias(bias, x_scale, w_scales))
    y = reference.multiply_by_quantized_multiplier(acc, mult, shift)
    lo = y_zp if relu else 0
    return np.clip(y + y_zp, lo, 255).astype(np.uint8)


def check_linear(rng, m, n, k, mode, per_channel, relu, with_bias, lead=()):
    w = rand_s8(rng, (n, k))
    x = rand_u8(rng, lead + (m, k))
    if per_channel:
        w_scales = rng.uniform(0.002, 0.05, n)
        w_zp = rng.integers(-20, 21, n) if rng.integers(0, 2) else np.zeros(n, np.int64)
        wq = fastq.QTensor(w, w_scales, w_zp, axis=0)
    else:
        w_scales = np.array([rng.uniform(0.002, 0.05)])
        w_zp = int(rng.integers(-20, 21))
        wq = fastq.QTensor(w, w_scales[0], w_zp)
    x_scale = float(rng.uniform(0.005, 0.05))
    x_zp = int(rng.integers(0, 256))
    # an output scale that spreads the results over the uint8 range, clamping some
    y_scale = float(x_scale * np.mean(w_scales) * np.sqrt(k) * 75 * 75 / 50)
    y_zp = int(rng.integers(0, 256))
    bias = rng.normal(0, 2, n).astype(np.float32) if with_bias else None
    layer = fastq.QuantizedLinear(wq, bias, y_scale, y_zp, relu=relu, requant=mode)
    y = layer(fastq.QTensor(x, x_scale, x_zp))
    assert y.values.dtype == np.uint8 and y.values.shape == lead + (m, n)
    assert (y.scale, y.zero_point) == (y_scale, y_zp)
    x2 = x.reshape(-1, k)
    acc = reference.qgemm(x2, x_zp, w, w_zp)
    if mode == "fbgemm":
        expect = reference.requant_fbgemm(acc, x_scale, w_scales, y_scale, y_zp, bias, relu, per_channel)
    elif mode == "qnnpack":
        expect = reference.requant_qnnpack(acc, x_scale, w_scales, y_scale, y_zp, bias, relu)
    else:
        expect = tflite_expected(acc, x_scale, w_scales, y_scale, y_zp, bias, relu, per_channel)
    assert np.array_equal(y.values.reshape(-1, n), expect), (mode, m, n, k, per_channel, relu)
    return expect


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "tflite"])
def test_linear_modes(backend, mode):
    rng = np.random.default_rng(hash(mode) % 1000)
    shapes = [(1, 1, 1), (1, 64, 64), (1, 130, 70), (6, 64, 4), (7, 65, 5), (13, 129, 67),
              (4, 3, 2), (12, 100, 33), (5, 200, 257)]
    i = 0
    for m, n, k in shapes:
        for per_channel in (False, True):
            for relu in (False, True):
                check_linear(rng, m, n, k, mode, per_channel, relu, with_bias=bool(i % 3))
                i += 1


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "tflite"])
def test_linear_random_and_batched(backend, mode):
    rng = np.random.default_rng(11)
    for _ in range(12):
        check_linear(rng, int(rng.integers(1, 14)), int(rng.integers(1, 131)), int(rng.integers(1, 71)),
                     mode, bool(rng.integers(0, 2)), bool(rng.integers(0, 2)), bool(rng.integers(0, 2)))
    check_linear(rng, 3, 20, 30, mode, True, False, True, lead=(2, 2))


def test_linear_large(backend):
    rng = np.random.default_rng(12)
    check_linear(rng, 64, 300, 4096, "fbgemm", True, True, True)


def test_linear_call_errors(backend):
    rng = np.random.default_rng(13)
    layer = fastq.QuantizedLinear(fastq.QTensor(rand_s8(rng, (5, 8)), 0.1, 0), None, 0.5, 3)
    with pytest.raises(TypeError, match="x"):
        layer(rand_u8(rng, (2, 8)))
    with pytest.raises(ValueError, match="x"):
        layer(fastq.QTensor(rand_u8(rng, (2, 7)), 0.1, 0))
    # int8 activations take the +128 identity: the same as uint8 x + 128 with zero point + 128
    xs = rand_s8(rng, (2, 8))
    assert np.array_equal(layer(fastq.QTensor(xs, 0.1, -3)).values,
                          layer(fastq.QTensor((xs.astype(np.int16) + 128).astype(np.uint8), 0.1, 125)).values)
    with pytest.raises(ValueError, match="x"):
        layer(fastq.QTensor(rand_u8(rng, (2, 8)), [0.1, 0.2], [0, 0], axis=0))
    # non-contiguous input is copied, and a new input quantization gets its own epilogue
    x = rand_u8(rng, (8, 4)).T
    for scale, zp in ((0.1, 0), (0.2, 5), (0.1, 0)):
        got = layer(fastq.QTensor(x, scale, zp)).values
        expect = reference.requant_fbgemm(reference.qgemm(x, zp, layer.weight.values, 0),
                                          scale, [0.1], 0.5, 3)
        assert np.array_equal(got, expect)


# ------------------------------------------------------------------ epilogues, extreme constants
def run_epilogue(kind, a, w, col_offset, **kw):
    """Raw dot products plus an arbitrary int32 col_offset: the accumulators cover all of
    int32, so the epilogue arithmetic is tested at its edges."""
    pw = _kernels.PackedWeights(w, np.zeros(1, np.int32))
    pad = np.zeros(pw.n_padded, np.int32)
    pad[: w.shape[0]] = col_offset
    padded = {}
    for name, v in kw.items():
        if isinstance(v, np.ndarray):
            p = np.zeros(pw.n_padded, v.dtype)
            p[: w.shape[0]] = v
            v = p
        padded[name] = v
    ep = _kernels.Epilogue(pw, kind, pad, **padded)
    acc = reference.wrap_int32(reference.qgemm(a, 0, w, 0) + col_offset.astype(np.int64))
    return _kernels.gemm(pw, ep, a), acc


def clamp_bounds(rng, wide):
    """Output clamps: inside [0, 255] as the layers use them, or wide (+-(2^31 - 256)) so
    the stored low byte shows every bit of the requantized value."""
    if wide:
        return -(2**31) + 256, 2**31 - 256
    lo = int(rng.integers(0, 256))
    return lo, int(rng.integers(lo, 256))


def as_bytes(q, out_xor):
    return ((np.asarray(q, np.int64) ^ out_xor) & 0xFF).astype(np.uint8)


def edge_int32(rng, n):
    v = rng.integers(-(2**31), 2**31, n, dtype=np.int64)
    v[: min(n, 6)] = [-(2**31), 2**31 - 1, 0, -1, 1, -(2**31) + 1][: min(n, 6)]
    return v.astype(np.int32)


def test_epilogue_int32_and_float(backend):
    rng = np.random.default_rng(21)
    for m, n, k in ((1, 67, 9), (6, 64, 8), (13, 130, 3)):
        a, w = rand_u8(rng, (m, k)), rand_s8(rng, (n, k))
        col = edge_int32(rng, n)
        got, acc = run_epilogue(_kernels.EPI_INT32, a, w, col)
        assert np.array_equal(got, acc)
        scale = rng.uniform(-1e-3, 1e-3, n).astype(np.float32)
        bias = rng.normal(0, 100, n).astype(np.float32)
        product = (acc.astype(np.float32) * scale).astype(np.float32)
        got, acc = run_epilogue(_kernels.EPI_FLOAT, a, w, col, scale=scale)
        assert got.dtype == np.float32 and np.array_equal(got, product)
        # two roundings (torch qnnpack), then one (fmaf, torch x86 / fbgemm), each with ReLU
        two = product + bias
        one = reference.fmaf(acc.astype(np.float32), scale, bias)
        assert not np.array_equal(one, two)        # the data tells the two apart
        for fma, expect in ((False, two), (True, one)):
            for relu in (False, True):
                got, _ = run_epilogue(_kernels.EPI_FLOAT, a, w, col, scale=scale, bias=bias,
                                      float_fma=fma, float_relu=relu)
                want = np.where(expect < 0, np.float32(0), expect) if relu else expect
                assert np.array_equal(got, want), (fma, relu)


@pytest.mark.parametrize("out_xor", [0, 0x80])
def test_epilogue_float_requant_edges(backend, out_xor):
    """fbgemm / qnnpack with multipliers that overflow int32 (cvtps2dq's INT32_MIN), tiny
    ones, NaN-free huge biases, clamps inside [0, 255], and the int8 output xor."""
    rng = np.random.default_rng(22 + out_xor)
    f32 = np.float32
    for (m, n, k), wide in itertools.product(((1, 67, 9), (7, 64, 8), (13, 130, 5)), (False, True)):
        a, w = rand_u8(rng, (m, k)), rand_s8(rng, (n, k))
        col = edge_int32(rng, n)
        scale = (rng.choice([1e-9, 1e-3, 0.5, 1.0, 3.0, 1e10], n) * rng.choice([-1, 1], n)).astype(f32)
        bias = rng.choice([0.0, 0.5, -2.5, 1e9, -3e9], n).astype(f32)
        zy = int(rng.integers(0, 256))
        lo, hi = clamp_bounds(rng, wide)
        common = dict(out_zero_point=zy, out_min=lo, out_max=hi, out_xor=out_xor)
        got, acc = run_epilogue(_kernels.EPI_FBGEMM, a, w, col, scale=scale, bias=bias, **common)
        y = ((acc.astype(f32) + bias).astype(f32) * scale).astype(f32)
        q = reference.round_float_to_int32(y) + zy        # exact: saturating int16 adds
        expect = as_bytes(np.clip(q, lo, hi), out_xor)
        assert np.array_equal(got, expect)
        got, acc = run_epilogue(_kernels.EPI_QNNPACK, a, w, col, scale=scale, **common)
        y = (acc.astype(f32) * scale).astype(f32)
        q = reference.round_float_to_int32(y) + zy
        expect = as_bytes(np.clip(q, lo, hi), out_xor)
        assert np.array_equal(got, expect)


@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
def test_epilogue_tflite_edges(backend, rounding):
    """Q31 multipliers over all of int32 (INT32_MIN included), shifts -31..30, accumulators
    over all of int32: the 64-bit products and both roundings, lane by lane."""
    rng = np.random.default_rng(23 + len(rounding))
    shapes = ((1, 67, 9), (6, 64, 8), (13, 130, 5), (3, 256, 2))
    for (m, n, k), wide in itertools.product(shapes, (False, True)):
        a, w = rand_u8(rng, (m, k)), rand_s8(rng, (n, k))
        col = edge_int32(rng, n)
        mult = edge_int32(rng, n)
        shift = rng.integers(-31, 31, n).astype(np.int32)
        shift[:4] = [-31, 30, 0, 1]
        zy = int(rng.integers(0, 256))
        lo, hi = clamp_bounds(rng, wide)
        out_xor = int(rng.choice([0, 0x80]))
        got, acc = run_epilogue(_kernels.EPI_TFLITE, a, w, col, multiplier=mult, shift=shift,
                                rounding=ROUNDINGS.index(rounding), out_zero_point=zy, out_min=lo,
                                out_max=hi, out_xor=out_xor)
        y = reference.MBQM[rounding](acc, mult, shift)
        expect = as_bytes(np.clip(y + zy, lo, hi), out_xor)
        assert np.array_equal(got, expect)


# ------------------------------------------------------------------ packing
def expected_panels(w):
    """The packed layout of csrc/fastq.h built panel by panel: 64-column panels, the last one
    N's remainder rounded up to 16 columns, each [k_groups, width, 4] with zero padding."""
    n, k = w.shape
    kg = (k + 3) // 4
    parts = []
    for n0 in range(0, n, 64):
        width = min(64, -(-(n - n0) // 16) * 16)
        block = np.zeros((width, kg * 4), np.int8)
        block[:min(width, n - n0), :k] = w[n0:n0 + width]
        parts.append(block.reshape(width, kg, 4).transpose(1, 0, 2).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, np.int8)


def test_pack_layout_and_column_sums(backend):
    rng = np.random.default_rng(31)
    for n, k in ((1, 1), (63, 5), (64, 4), (65, 67), (130, 70), (200, 1031), (16, 9), (17, 36), (24, 3),
                 (33, 33), (48, 144), (80, 6), (112, 40), (129, 2)):
        w = rand_s8(rng, (n, k))
        zw = rng.integers(-128, 128, n).astype(np.int32)
        pw = _kernels.PackedWeights(w, zw)
        assert pw.n_padded == 64 * (n // 64) + (-(-(n % 64) // 16) * 16)
        assert np.array_equal(pw.packed_bytes(), expected_panels(w)), (n, k)
        assert np.array_equal(pw.col_sums, w.astype(np.int64).sum(axis=1))
        assert np.array_equal(pw.w_zero_point, zw)
        assert pw.max_abs_w_dev == int(np.abs(w.astype(np.int64) - zw[:, None]).max())


# ------------------------------------------------------------------ panel widths 16 / 32 / 48 / 64
# N picks the last panel's width (N % 64 rounded up to 16), and each width has its own kernel
# and rows per tile (AVX-512: 16, 12, 8, 6 rows): every width, every row count of a tile up to
# two tiles and a tail, K tails 0..3 and one k-group.
PANEL_NS = (1, 8, 15, 16, 17, 24, 31, 32, 33, 40, 47, 48, 49, 63, 64, 72, 80, 96, 112, 127)


def test_qgemm_every_panel_width_and_row_tail(backend):
    rng = np.random.default_rng(40)
    for n in PANEL_NS:
        w_by_k = {k: rand_s8(rng, (n, k)) for k in (1, 3, 4, 6, 37)}
        for m in range(1, 36):
            k = (1, 3, 4, 6, 37)[m % 5]
            a = rand_u8(rng, (m, k))
            w = w_by_k[k]
            zw = rng.integers(-128, 128, n).astype(np.int32)
            za = int(rng.integers(0, 256))
            assert np.array_equal(fastq.qgemm(a, za, w, zw), reference.qgemm(a, za, w, zw)), (n, m, k)


def test_gemm_int8_activations_every_panel_width(backend):
    """int8 activations (the kernels flip each broadcast group to uint8) on every width and
    row tail; the epilogue sees the zero point + 128 (uint8 terms)."""
    rng = np.random.default_rng(41)
    for n in (8, 16, 32, 48, 64, 80, 120):
        for k in (1, 2, 5, 18, 67):
            w = rand_s8(rng, (n, k))
            zw = rng.integers(-3, 4, n).astype(np.int32)
            pw = _kernels.PackedWeights(w, zw)
            za_s8 = int(rng.integers(-128, 128))
            ep = _kernels.Epilogue(pw, _kernels.EPI_INT32, pw.col_offsets(za_s8 + 128))
            for m in (1, 5, 6, 7, 8, 11, 12, 13, 16, 17, 33):
                a = rand_s8(rng, (m, k))
                got = _kernels.gemm(pw, ep, a, num_threads=1)
                a_u8 = (a.view(np.uint8) ^ np.uint8(0x80))
                assert np.array_equal(got, reference.qgemm(a_u8, za_s8 + 128, w, zw)), (n, k, m)


@pytest.mark.parametrize("threads", [1, 3])
def test_gemm_threads_split_rows_of_mixed_panel_widths(backend, threads):
    """Tasks of several panels of different widths (64 + 16 / 32 / 48): the row runs of the
    thread split are whole tiles of both widths."""
    rng = np.random.default_rng(42 + threads)
    for n in (80, 96, 112, 144, 200):
        k = 130
        w = rand_s8(rng, (n, k))
        zw = rng.integers(-5, 5, n).astype(np.int32)
        pw = _kernels.PackedWeights(w, zw)
        for m in (1, 47, 48, 49, 97, 300):
            a = rand_u8(rng, (m, k))
            za = int(rng.integers(0, 256))
            ep = _kernels.Epilogue(pw, _kernels.EPI_INT32, pw.col_offsets(za))
            got = _kernels.gemm(pw, ep, a, num_threads=threads)
            assert np.array_equal(got, reference.qgemm(a, za, w, zw)), (n, m, threads)


def test_requant_epilogue_on_narrow_panels(backend):
    """Byte output through a narrow last panel: the epilogue reads the tile (row stride 64) and
    the per-column arrays only up to the padded width."""
    rng = np.random.default_rng(43)
    for n in (16, 24, 40, 48, 72):
        for m in (3, 16, 29):
            check_linear(rng, m, n, 27, "fbgemm", True, bool(m % 2), True)
            check_linear(rng, m, n, 13, "tflite", False, False, True)


def test_linear_python_path_matches(backend):
    """The Cython call path and its Python twin (used when a layer has no LinearCore)."""
    rng = np.random.default_rng(41)
    layer = fastq.QuantizedLinear(fastq.QTensor(rand_s8(rng, (70, 33)), 0.02, 3), None, 0.4, 9, relu=True)
    x = fastq.QTensor(rand_u8(rng, (2, 5, 33)), 0.05, 17)
    y = layer(x)
    y_py = layer._call_python(x)
    assert np.array_equal(y.values, y_py.values) and y.values.shape == (2, 5, 70)
    del layer._core
    assert np.array_equal(layer(x).values, y_py.values)


def test_linear_overflow_bound(backend):
    """K = 70000 with |w - zw| = 255 and |x - zx| up to 128 could overflow int32: the layer
    checks the data, computes when it fits, refuses (naming x) when it might not."""
    k = 70000
    w = np.full((3, k), -128, np.int8)
    layer = fastq.QuantizedLinear(fastq.QTensor(w, 0.001, 127), None, 1000.0, 0)
    a = np.full((2, k), 130, np.uint8)           # |130 - 128| * 255 * K fits easily
    got = layer(fastq.QTensor(a, 0.01, 128)).values
    expect = reference.requant_fbgemm(reference.qgemm(a, 128, w, 127), 0.01, [0.001], 1000.0, 0)
    assert np.array_equal(got, expect)
    with pytest.raises(ValueError, match="x"):
        layer(fastq.QTensor(np.full((1, k), 255, np.uint8), 0.01, 0))


# ------------------------------------------------------------------ fbgemm bias term vs torch
def _torch_fbgemm_layer(torch, w_int, w_scales, per_channel, bias, y_scale, y_zp):
    import torch.ao.nn.quantized as nnq
    n, k = w_int.shape
    if per_channel:
        scales = torch.tensor(w_scales, dtype=torch.float64)
        wq = torch.quantize_per_channel(torch.from_numpy(w_int * np.asarray(w_scales)[:, None]).float(),
                                        scales, torch.zeros(n, dtype=torch.int64), 0, torch.qint8)
    else:
        wq = torch.quantize_per_tensor(torch.from_numpy((w_int * w_scales[0]).astype(np.float32)),
                                       float(w_scales[0]), 0, torch.qint8)
    m = nnq.Linear(k, n)
    m.set_weight_bias(wq, torch.from_numpy(bias))
    m.scale, m.zero_point = y_scale, y_zp
    return m


def near_cancelling_cases(rng, count, per_channel):
    """Layers whose float bias nearly cancels the accumulator of row 0, leaving a result next
    to a .5 of the output scale: there one rounding more or less (bias * rcp rounded before the
    add) shows. The issue's reproducer comes first."""
    yield (np.array([[50]], np.int8), np.array([0.02826206386089325]), np.array([18.583898544311523], np.float32),
           0.0012441023718565702, np.array([[54]], np.uint8), 0.08724277466535568, 204)
    for _ in range(count):
        k, n, m = int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
        w_int = rng.integers(-127, 128, (n, k)).astype(np.int8)
        x_int = rng.integers(0, 256, (m, k)).astype(np.uint8)
        x_scale, x_zp = float(rng.uniform(0.01, 0.1)), int(rng.integers(0, 256))
        w_scales = rng.uniform(0.005, 0.05, n) if per_channel else np.array([rng.uniform(0.005, 0.05)])
        acc0 = reference.qgemm(x_int[:1], x_zp, w_int, 0)[0].astype(np.float64)
        atws = (np.float32(x_scale) * w_scales.astype(np.float32)).astype(np.float64)
        y_scale = float(rng.uniform(0.0005, 0.005))
        target = (rng.integers(1, 200, n) + 0.5) * y_scale + rng.normal(0, 1e-6, n)
        bias = (target - acc0 * atws).astype(np.float32)
        yield w_int, w_scales, bias, y_scale, x_int, x_scale, x_zp


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_fbgemm_bias_term_matches_torch_near_cancellation(backend, per_channel):
    """Issue 9 (1): torch x86 / fbgemm computes fmaf(bias, rcp, (float)acc) per tensor (one
    rounding) and (float)acc + f32(bias / atws[n]) per channel. Constructed near-ties, the
    issue's reproducer (torch 74, the rounded-first formula 73) first."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(91 + per_channel)
    old_engine = torch.backends.quantized.engine
    cases = total = two_roundings_differ = 0
    try:
        for w_int, w_scales, bias, y_scale, x_int, x_scale, x_zp in near_cancelling_cases(rng, 150, per_channel):
            y_zp = 0
            layer = fastq.QuantizedLinear(
                fastq.QTensor(w_int, w_scales if per_channel else float(w_scales[0]),
                              np.zeros(w_int.shape[0], np.int64) if per_channel else 0,
                              axis=0 if per_channel else None),
                bias, y_scale, y_zp)
            got = layer(fastq.QTensor(x_int, x_scale, x_zp)).values
            acc = reference.qgemm(x_int, x_zp, w_int, 0)
            assert np.array_equal(got, reference.requant_fbgemm(acc, x_scale, w_scales, y_scale, y_zp, bias,
                                                                per_channel=per_channel))
            two_roundings_differ += int(np.count_nonzero(
                got != reference.requant_fbgemm(acc, x_scale, w_scales, y_scale, y_zp, bias,
                                                per_channel=per_channel, bias_rounding="separate")))
            tx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_int), x_scale, x_zp)
            for engine in ("x86", "fbgemm"):
                if engine not in torch.backends.quantized.supported_engines:
                    continue
                torch.backends.quantized.engine = engine
                m = _torch_fbgemm_layer(torch, w_int, w_scales, per_channel, bias, y_scale, y_zp)
                expect = m(tx).int_repr().numpy()
                assert np.array_equal(got, expect), (engine, cases, got, expect)
                total += got.size
            cases += 1
    finally:
        torch.backends.quantized.engine = old_engine
    assert cases == 151 and total > 0
    if not per_channel:
        # the cases are near enough to a tie that rounding bias * rcp first shows (the reproducer
        # at least); per channel the two formulas are the same
        assert two_roundings_differ > 0


def test_epilogue_tflite_right_shift_only_edges(backend):
    """The double-rounding table entry for shifts <= 0 and multipliers above INT32_MIN (no left
    shift, no saturation: fq_epilogue_prepare picks it) over all of int32; one INT32_MIN
    multiplier sends a table back to the general entry."""
    rng = np.random.default_rng(29)
    for (m, n, k), wide in itertools.product(((1, 67, 9), (6, 64, 8), (13, 130, 5)), (False, True)):
        a, w = rand_u8(rng, (m, k)), rand_s8(rng, (n, k))
        col = edge_int32(rng, n)
        mult = edge_int32(rng, n)
        mult[mult == -(2**31)] = -(2**31) + 1
        shift = rng.integers(-31, 1, n).astype(np.int32)
        shift[:3] = [-31, 0, -1]
        for general in (False, True):
            if general:
                mult[-1] = -(2**31)
            zy = int(rng.integers(0, 256))
            lo, hi = clamp_bounds(rng, wide)
            got, acc = run_epilogue(_kernels.EPI_TFLITE, a, w, col, multiplier=mult, shift=shift,
                                    rounding=0, out_zero_point=zy, out_min=lo, out_max=hi)
            y = reference.MBQM["double"](acc, mult, shift)
            assert np.array_equal(got, as_bytes(np.clip(y + zy, lo, hi), 0))


# ------------------------------------------------------------------ every mode on the compiled path
def _layer(rng, n, k, mode, dtype, per_channel, w_zero_points, **kw):
    w = rand_s8(rng, (n, k))
    if per_channel:
        zw = rng.integers(-20, 21, n) if w_zero_points else np.zeros(n, np.int64)
        wq = fastq.QTensor(w, rng.uniform(0.002, 0.02, n), zw, axis=0)
    else:
        wq = fastq.QTensor(w, float(rng.uniform(0.002, 0.02)), int(rng.integers(-20, 21)) if w_zero_points else 0)
    y_zp = int(rng.integers(-128, 128)) if dtype == "int8" else int(rng.integers(0, 256))
    return fastq.QuantizedLinear(wq, rng.normal(0, 1, n).astype(np.float32), float(0.004 * np.sqrt(k + 1)),
                                 y_zp, requant=mode, dtype=dtype, relu=bool(rng.integers(0, 2)), **kw)


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "tflite"])
def test_int8_in_and_out_on_the_compiled_path(backend, mode):
    """int8 activations and int8 outputs go through LinearCore and the kernels' 0x80 flip (row
    sums included, through weight zero points): equal to the uint8 layer on x + 128 (the
    identity int8 x, z == uint8 x + 128, z + 128) and to the Python path."""
    rng = np.random.default_rng(61 + len(mode))
    for m, n, k in ((1, 64, 64), (7, 70, 13), (13, 130, 67), (1, 5, 1), (3, 9, 0)):
        for per_channel, w_zp in ((False, True), (True, True), (True, False)):
            for dtype in ("uint8", "int8"):
                layer = _layer(rng, n, k, mode, dtype, per_channel, w_zp)
                xs = rand_s8(rng, (m, k))
                zx = int(rng.integers(-128, 128))
                x = fastq.QTensor(xs, 0.03, zx)
                got = layer(x)
                assert got.values.dtype == np.dtype(dtype) and got.values.shape == (m, n)
                expect = layer._call_python(x).values
                assert np.array_equal(got.values, expect)
                xu = fastq.QTensor((xs.astype(np.int16) + 128).astype(np.uint8), 0.03, zx + 128)
                assert np.array_equal(got.values, layer(xu).values)
                # the kernels alone, int8 a against the flipped uint8 a
                ep = layer._epilogue(0.03, zx + 128)
                assert np.array_equal(_kernels.gemm(layer._packed, ep, xs), _kernels.gemm(layer._packed, ep, xu.values))


def test_k_zero_layers(backend):
    """K = 0: the accumulator is the bias alone, for uint8 and int8 activations."""
    for mode in ("fbgemm", "qnnpack", "tflite"):
        w = fastq.QTensor(np.zeros((5, 0), np.int8), 0.01, 0)
        bias = np.linspace(-1, 1, 5).astype(np.float32)
        layer = fastq.QuantizedLinear(w, bias, 0.01, 7, requant=mode, dtype="int8")
        y8 = layer(fastq.QTensor(np.zeros((3, 0), np.int8), 0.1, -4)).values
        yu = layer(fastq.QTensor(np.zeros((3, 0), np.uint8), 0.1, 200)).values
        assert y8.shape == yu.shape == (3, 5) and np.array_equal(y8, yu)
        assert np.array_equal(y8, layer._call_python(fastq.QTensor(np.zeros((3, 0), np.int8), 0.1, -4)).values)
        if mode == "fbgemm":
            expect = reference.requant_fbgemm(np.zeros((3, 5), np.int64), 0.1, [0.01], 0.01, 7 + 128, bias)
            assert np.array_equal(y8, (expect.astype(np.int16) - 128).astype(np.int8))


def test_multiply_by_quantized_multiplier_empty_last_axis():
    for x, nch in ((np.zeros((3, 0), np.int32), 0), (np.zeros((0, 4), np.int32), 4), (np.zeros((2, 0), np.int32), 1)):
        out = _kernels.multiply_by_quantized_multiplier(x, np.full(nch, 2**30, np.int32), np.zeros(nch, np.int32), 0)
        assert out.shape == x.shape and out.dtype == np.int32
    with pytest.raises(ValueError, match="multiplier"):
        _kernels.multiply_by_quantized_multiplier(np.zeros((2, 3), np.int32), np.zeros(0, np.int32),
                                                  np.zeros(0, np.int32), 0)


def test_pinned_input_quantization_on_the_compiled_path(backend):
    rng = np.random.default_rng(71)
    for dtype in ("uint8", "int8"):
        layer = _layer(rng, 33, 20, "tflite", dtype, True, True, input_scale=0.05, input_zero_point=-3)
        x = fastq.QTensor(rand_s8(rng, (4, 20)), 0.05, -3)
        assert np.array_equal(layer(x).values, layer._call_python(x).values)
        for bad in (fastq.QTensor(x.values, 0.06, -3), fastq.QTensor(x.values, 0.05, -2)):
            with pytest.raises(ValueError, match="x: quantized with scale"):
                layer(bad)


def test_large_k_near_the_zero_point_int8_and_row_sums(backend):
    """K = 70000 with inputs at their zero point: the raw sums (and the row sums, through a
    weight zero point) exceed int32 while the corrected acc fits; the kernels wrap in unsigned
    arithmetic (no undefined behaviour, sanitize.sh checks) and the result is exact."""
    k = 70000
    rng = np.random.default_rng(81)
    w = rng.integers(100, 128, (3, k)).astype(np.int8)
    layer = fastq.QuantizedLinear(fastq.QTensor(w, 0.001, 120), None, 50.0, 10, dtype="int8")
    for xs, zx in ((np.full((2, k), 127, np.int8), 127), (np.full((2, k), -128, np.int8), -128)):
        xs = xs.copy()
        xs[:, :5] += np.int8(-1 if zx == 127 else 1)
        got = layer(fastq.QTensor(xs, 0.01, zx)).values
        acc = reference.qgemm((xs.astype(np.int16) + 128).astype(np.uint8), zx + 128, w, 120)
        expect = reference.requant_fbgemm(acc, 0.01, [0.001], 50.0, 10 + 128)
        assert np.array_equal(got, (expect.astype(np.int16) - 128).astype(np.int8))


def test_fbgemm_unfused_bias_variant_matches_its_reference(backend):
    """build_epilogue(bias_rounding=...): "separate" rounds the per-tensor bias term on its own (an
    FBGEMM compiled without fma contraction), "divide" divides by atws (FBGEMM's generic path);
    kernels against reference.requant_fbgemm with the same bias_rounding, and the layer setting."""
    from fastq.layers.linear import build_epilogue
    rng = np.random.default_rng(93)
    for w_int, w_scales, bias, y_scale, x_int, x_scale, x_zp in near_cancelling_cases(rng, 40, False):
        pw = _kernels.PackedWeights(w_int, np.zeros(1, np.int32))
        for rounding in ("fused", "separate", "divide"):
            ep, _ = build_epilogue(pw, "fbgemm", x_scale, x_zp, w_scales, False, y_scale, 0, bias=bias,
                                   bias_rounding=rounding)
            got = _kernels.gemm(pw, ep, x_int)
            acc = reference.qgemm(x_int, x_zp, w_int, 0)
            expect = reference.requant_fbgemm(acc, x_scale, w_scales, y_scale, 0, bias, per_channel=False,
                                              bias_rounding=rounding)
            assert np.array_equal(got, expect)
            layer = fastq.QuantizedLinear(fastq.QTensor(w_int, float(w_scales[0]), 0), bias, y_scale, 0,
                                          bias_rounding=rounding)
            assert np.array_equal(layer(fastq.QTensor(x_int, x_scale, x_zp)).values, expect)
            assert np.array_equal(layer.explain(fastq.QTensor(x_int, x_scale, x_zp), 0, 0).to_dict()["output"],
                                  expect[0, 0])


def test_explain_follows_the_fused_bias_term():
    """fastq.explain's hand computation of the issue's reproducer agrees with the kernel (74)."""
    from fastq.explain import explain
    w = fastq.QTensor(np.array([[50]], np.int8), 0.02826206386089325, 0)
    layer = fastq.QuantizedLinear(w, np.array([18.583898544311523], np.float32), 0.0012441023718565702, 0)
    text = explain(layer, fastq.QTensor(np.array([[54]], np.uint8), 0.08724277466535568, 204))
    assert "by hand q = 74" in text and "all equal" in text and "fmaf(bias, inv, f)" in text


# ------------------------------------------------------------------ fused microkernel epilogues
FUSED_KINDS = ("fbgemm", "qnnpack", "onednn")
# rows per tile of the widest kernel per panel width (AVX-512: 16, 12, 8, 6; scalar / AVX2: 4):
# M = 1..17 runs every row count of every kernel as a tile of its own, and tails after full tiles
FUSED_ROWS = tuple(range(1, 18)) + (29, 37)
FUSED_KS = (1, 2, 3, 4, 5, 7, 8, 16, 27, 144)      # every K % 4, short and long loops


def _fused_expected(kind, acc, scale, bias, bias_mult, zy, lo, hi, out_xor, src_scale, out_scale_inv):
    """numpy float32, one operation at a time (docs/ARITHMETIC.md §6, §7, oneDNN's post-ops)."""
    f32 = np.float32
    accf = acc.astype(f32)
    if kind == "fbgemm":
        y = (reference.fmaf(np.broadcast_to(bias, acc.shape).astype(f32), f32(bias_mult), accf)
             * scale).astype(f32)
        q = np.clip(reference.round_float_to_int32(y).astype(np.int64) + zy, lo, hi)
    elif kind == "qnnpack":
        y = (accf * scale).astype(f32)
        q = np.clip(reference.round_float_to_int32(y).astype(np.int64) + zy, lo, hi)
    else:
        off = 128 if out_xor else 0
        y = ((accf * f32(src_scale)).astype(f32) * scale).astype(f32)
        y = (y + bias).astype(f32)
        t = ((y * f32(out_scale_inv)).astype(f32) + f32(zy - off)).astype(f32)
        t = np.clip(t, f32(lo - off), f32(hi - off))
        q = np.rint(t).astype(np.int64) + off
    return as_bytes(q, out_xor)


def _fused_case(rng, kind, m, n, k, per_channel, relu, out_xor, a_signed, w_zero_points):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8) if a_signed else rand_u8(rng, (m, k))
    w = rand_s8(rng, (n, k))
    wzp = rng.integers(-3, 4, n).astype(np.int32) if w_zero_points else np.zeros(n, np.int32)
    pw = _kernels.PackedWeights(w, wzp)
    za = int(rng.integers(-128, 128)) if a_signed else int(rng.integers(0, 256))
    cols = pw.col_offsets(za + 128 if a_signed else za)
    acc = reference.qgemm(a, za, w, wzp) if not a_signed else \
        reference.qgemm((a.astype(np.int16) + 128).astype(np.uint8), za + 128, w, wzp)
    # scales that put most results inside the byte range and push some past both bounds
    spread = 1.0 / (40.0 * np.sqrt(k) * 64)
    scale = (rng.uniform(0.5, 2.0, n) * spread).astype(np.float32) if per_channel else \
        np.full(n, np.float32(spread * rng.uniform(0.5, 2.0)), np.float32)
    bias = rng.normal(0, 3000 * np.sqrt(k), n).astype(np.float32)
    bias_mult = 1.0 if per_channel else float(np.float32(1.0 / rng.uniform(0.5, 3.0)))
    zy = int(rng.integers(0, 256))
    lo, hi = (zy, 255) if relu else (0, 255)
    src_scale = float(np.float32(rng.uniform(0.01, 0.1)))
    out_scale_inv = float(np.float32(1.0 / rng.uniform(0.5, 2.0)))
    pad = lambda v: np.concatenate([v, np.zeros(pw.n_padded - n, v.dtype)])
    kw = dict(out_zero_point=zy, out_min=lo, out_max=hi, out_xor=out_xor, scale=pad(scale))
    if kind == "fbgemm":
        ep = _kernels.Epilogue(pw, _kernels.EPI_FBGEMM, cols, bias=pad(bias), bias_mult=bias_mult, **kw)
    elif kind == "qnnpack":
        ep = _kernels.Epilogue(pw, _kernels.EPI_QNNPACK, cols, **kw)
    else:
        ep = _kernels.Epilogue(pw, _kernels.EPI_ONEDNN, cols, bias=pad(bias), src_scale=src_scale,
                               out_scale_inv=out_scale_inv, **kw)
    expect = _fused_expected(kind, acc, scale, bias if kind != "qnnpack" else 0, bias_mult, zy, lo,
                             hi, out_xor, src_scale, out_scale_inv)
    return pw, ep, a, expect


@pytest.mark.parametrize("kind", FUSED_KINDS)
def test_fused_epilogues_every_width_and_tail(backend, kind):
    """The fused kernels (AVX-512: the epilogue on the accumulators in registers) against numpy
    float32 step by step, against the scalar backend (its microkernel then its epilogue) and
    against this backend's unfused path, on every panel width (16/32/48/64, full and with a
    column tail, one panel and behind a full one), every row count, every K tail, per-channel
    and per-tensor scales, ReLU, uint8 / int8 output, int8 activations, weight zero points."""
    rng = np.random.default_rng(FUSED_KINDS.index(kind) + 31)
    owner = BACKEND_OWNERS[backend]["gemm_fused"]
    before = _kernels.kernel_runs()["gemm_fused"][owner]
    i = 0
    for n in (16, 13, 32, 29, 48, 35, 64, 57, 80, 109):
        for per_channel, relu, out_xor in itertools.product((False, True), (False, True), (0, 0x80)):
            for m in FUSED_ROWS:
                k = FUSED_KS[i % len(FUSED_KS)]
                a_signed, wzp = bool(i % 3 == 1), bool(i % 4 == 2)
                i += 1
                pw, ep, a, expect = _fused_case(rng, kind, m, n, k, per_channel, relu, out_xor, a_signed, wzp)
                got = _kernels.gemm(pw, ep, a)
                where = (kind, n, m, k, per_channel, relu, out_xor, a_signed, wzp)
                assert np.array_equal(got, expect), where
                assert _kernels.gemm_set_fused(False)
                try:
                    assert np.array_equal(_kernels.gemm(pw, ep, a), expect), where
                finally:
                    _kernels.gemm_set_fused(True)
                fastq.set_backend("scalar")
                try:
                    assert np.array_equal(_kernels.gemm(pw, ep, a), expect), where
                finally:
                    fastq.set_backend(backend)
    assert _kernels.kernel_runs()["gemm_fused"][owner] > before


def test_fused_edges_saturation_and_ties(backend):
    """Constructed accumulators (col_offset over all of int32) where cvtps2dq overflows, the
    float clamp saturates, and results land on exact .5 ties: fused equals unfused equals
    scalar, byte for byte, on every panel width."""
    rng = np.random.default_rng(41)
    f32 = np.float32
    for n, m, k in ((16, 16, 4), (29, 12, 3), (48, 8, 5), (64, 6, 1), (100, 7, 9)):
        a, w = rand_u8(rng, (m, k)), rand_s8(rng, (n, k))
        col = edge_int32(rng, n)
        col[6:12] = [2**24 + 1, -(2**24) - 3, 5, -5, 7, 2**31 - 1000][: max(0, min(6, n - 6))]
        scale = rng.choice([f32(0.5), f32(1.5), f32(1e-9), f32(3.0), f32(1e10)], n).astype(f32)
        bias = rng.choice([f32(0.0), f32(0.5), f32(-2.5), f32(1e9)], n).astype(f32)
        for kind, out_xor in itertools.product(FUSED_KINDS, (0, 0x80)):
            zy = int(rng.integers(0, 256))
            kw = dict(scale=scale, out_zero_point=zy, out_min=0, out_max=255, out_xor=out_xor)
            if kind == "fbgemm":
                got, acc = run_epilogue(_kernels.EPI_FBGEMM, a, w, col, bias=bias, **kw)
            elif kind == "qnnpack":
                got, acc = run_epilogue(_kernels.EPI_QNNPACK, a, w, col, **kw)
            else:
                got, acc = run_epilogue(_kernels.EPI_ONEDNN, a, w, col, bias=bias, src_scale=0.5,
                                        out_scale_inv=2.0, **kw)
            expect = _fused_expected(kind, acc, scale, bias if kind != "qnnpack" else 0, 1.0, zy, 0, 255,
                                     out_xor, 0.5, 2.0)
            assert np.array_equal(got, expect), (kind, n, m, k, out_xor)
