"""The bound calls (layers/_fast.py) of the elementwise ops at the ends and between the layers of
a model: ReLU / ReLU6 / Hardtanh on the C clamp kernel in the value's memory order, Quantize,
Dequantize, QuantizedLinear. Each equals the numpy formula (the independent oracle) on both
layouts, uint8 and int8, sizes that leave every tail of the 32-byte vector loop, and answers
MISS for inputs of another signature. The clamp kernel of every backend equals the scalar loop."""
from __future__ import annotations

import numpy as np
import pytest

import fastq
from fastq import _kernels, reference
from fastq import layers as L
from fastq.layers import elementwise as E
from fastq.layers._fast import MISS
from fastq.qtensor import QTensor

F32 = np.float32


def _cl(v):
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _rand(rng, shape, dtype):
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    return rng.integers(lo, hi, shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_clamp_kernel_every_backend_equals_the_scalar_loop_on_every_tail(dtype):
    rng = np.random.default_rng(1)
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    for n in list(range(0, 100)) + [255, 256, 257, 1000]:
        x = _rand(rng, n, dtype)
        for lo, hi in ((qmin, qmax), (qmin + 3, qmax), (qmin, qmin), (qmax, qmax), (-1, 6), (0, 0)):
            if not qmin <= lo <= hi <= qmax:
                continue
            want = np.minimum(np.maximum(x, np.array(lo, dtype)), np.array(hi, dtype))
            assert np.array_equal(_kernels.qclamp(x, lo, hi, isa=0), want), (n, lo, hi)
            for isa in _kernels.family_backends("elementwise"):
                assert np.array_equal(_kernels.qclamp(x, lo, hi, isa=isa), want), (n, lo, hi, isa)


def test_clamp_kernel_refuses_bad_input():
    with pytest.raises(TypeError, match="x: expected uint8 or int8 values, got int16"):
        _kernels.qclamp(np.zeros(4, np.int16), 0, 1)
    with pytest.raises(ValueError, match="lo, hi: expected 0 <= lo <= hi <= 255, got 5, 4"):
        _kernels.qclamp(np.zeros(4, np.uint8), 5, 4)
    with pytest.raises(ValueError, match="-128 <= lo"):
        _kernels.qclamp(np.zeros(4, np.int8), -129, 0)


LAYERS = [L.ReLU(), E.ReLU6(), E.Hardtanh(-0.5, 0.75)]


@pytest.mark.parametrize("layer", LAYERS, ids=repr)
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_bound_clamp_on_both_layouts_equals_the_formula(layer, dtype):
    rng = np.random.default_rng(2)
    zp = 131 if dtype == "uint8" else -3
    for shape in [(1, 3, 5, 7), (2, 16, 4, 4), (1, 32, 17, 3), (1, 1, 1, 1), (3, 5)]:
        v = _rand(rng, shape, dtype)
        lo, hi = layer._q_bounds(0.05, zp, dtype)
        want = np.minimum(np.maximum(v, np.array(lo, dtype)), np.array(hi, dtype))
        layouts = (v, _cl(v)) if len(shape) == 4 else (v,)
        for u in layouts:
            x = QTensor(u, 0.05, zp)
            f = layer._bind(x)
            for _ in range(2):
                y = f(x)
                assert np.array_equal(y.values, want) and y.values.dtype == np.dtype(dtype), (shape, u.strides)
                assert y.values.strides == u.strides or u.size <= 1
                assert (y.scale, y.zero_point) == (0.05, zp)
            assert f(QTensor(u, 0.05, zp + 1)) is MISS
            assert f(QTensor(v[:1], 0.05, zp)) is MISS or shape[0] == 1
            assert f(u) is MISS
            other = QTensor(u, 0.1, zp)
            if isinstance(layer, E.ReLU):             # the zero point bounds it: any scale
                assert np.array_equal(f(other).values, want) and f(other).scale == 0.1
            else:
                assert f(other) is MISS
            if len(shape) == 4 and min(shape[1:]) > 1:
                assert f(QTensor(_cl(v) if u is v else v, 0.05, zp)) is MISS


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_bound_quantize_and_dequantize_equal_the_formulas(dtype):
    rng = np.random.default_rng(3)
    zp = 128 if dtype == "uint8" else -5
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    for shape in [(1, 3, 5, 7), (7,), (2, 10)]:
        x = (rng.standard_normal(shape) * 3).astype(F32)
        x.reshape(-1)[:4] = [F32(0.5) * F32(0.02), np.inf, -np.inf, F32(1e10)]   # a tie, saturation
        q = L.Quantize(0.02, zp, dtype)
        f = q._bind(x)
        want = np.clip(np.rint(reference.fmaf(x, F32(F32(1) / F32(0.02)), F32(zp)).astype(np.float64)),
                       qmin, qmax).astype(dtype)
        for _ in range(2):
            y = f(x)
            assert np.array_equal(y.values, want) and (y.scale, y.zero_point) == (0.02, zp)
        assert f(x.astype(np.float64)) is MISS and f(x.reshape(-1)[:1]) is MISS and f(QTensor(want, 0.02, zp)) is MISS
        if x.ndim == 2:
            assert f(np.asfortranarray(x)) is MISS
        d = L.Dequantize()
        g = d._bind(y)
        want_f = ((y.values.astype(np.int32) - zp).astype(F32) * F32(0.02)).astype(F32)
        for _ in range(2):
            assert np.array_equal(g(y).view(np.uint32), want_f.view(np.uint32))
        assert g(QTensor(y.values, 0.04, zp)) is MISS and g(QTensor(y.values, 0.02, zp + 1)) is MISS
        assert g(want_f) is MISS


def test_bound_linear_equals_its_call():
    rng = np.random.default_rng(4)
    w = fastq.quantize_per_channel(rng.standard_normal((5, 12)).astype(F32), [0.01] * 5, [0] * 5, 0, "int8")
    lin = L.QuantizedLinear(w, rng.standard_normal(5).astype(F32), 0.07, 3)
    for dtype, zp in (("uint8", 120), ("int8", -4)):
        x = QTensor(_rand(rng, (3, 12), dtype), 0.03, zp)
        f = lin._bind(x)
        want = lin._call_python(x)
        for _ in range(2):
            y = f(x)
            assert np.array_equal(y.values, want.values) and (y.scale, y.zero_point) == (want.scale, want.zero_point)
        assert f(QTensor(x.values[:1], 0.03, zp)) is MISS and f(x.values) is MISS
        other = QTensor(x.values, 0.06, zp)         # another scale: the core's own epilogue for it
        assert np.array_equal(f(other).values, lin._call_python(other).values)
