"""The convolution bound to one input signature (_kernels.ConvBound, QuantizedConv._bind), the
GEMM path of one-input-channel layers, and the compiled model run of a chain: each gives the
integers of the layer's reference (fastq.reference's numpy formulas) and of the full path."""
from __future__ import annotations

import numpy as np
import pytest

import fastq
from fastq import layers as L
from fastq.layers._fast import MISS
from fastq.model import Model, Node
from fastq.qtensor import QTensor


def _conv(rng, in_c, out_c, k, groups=1, arithmetic="onednn", bias=True, **geo):
    w = QTensor(rng.integers(-127, 128, (out_c, in_c // groups) + k).astype(np.int8),
                rng.uniform(0.002, 0.02, out_c), np.zeros(out_c, np.int64), axis=0)
    b = rng.uniform(-1, 1, out_c) if bias else None
    return L.conv.QuantizedConv(w, b, 0.07, 3, groups=groups, arithmetic=arithmetic, **geo)


def _same(a, b):
    return (type(a) is QTensor and a.values.dtype == b.values.dtype and a.values.shape == b.values.shape
            and np.array_equal(a.values, b.values) and a.scale == b.scale and a.zero_point == b.zero_point)


def _layouts(v):
    """v as NCHW, as a channels-last view (a convolution's output), and strided (neither)."""
    cl = np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    wide = np.zeros(v.shape[:3] + (2 * v.shape[3],), v.dtype)
    wide[..., ::2] = v
    return v, cl, wide[..., ::2]


@pytest.mark.parametrize("arithmetic", ["onednn", "fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("in_c,out_c,k,groups,geo", [
    (1, 64, (10, 4), 1, dict(stride=2, padding=(5, 1))),     # DS-CNN's stem: the GEMM path
    (1, 32, (3, 3), 1, dict(padding=1)),
    (1, 16, (3, 3), 1, dict(padding=1)),                      # few outputs: the direct depthwise kernel
    (8, 8, (3, 3), 8, dict(padding=1)),                       # depthwise by rows
    (8, 16, (3, 3), 8, dict(stride=2, padding=1)),            # depthwise, channel multiplier 2
    (6, 12, (1, 1), 1, dict()),                               # 1x1 GEMM, read in place
    (5, 7, (3, 2), 1, dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
])
def test_bound_call_equals_the_reference_on_every_layout(arithmetic, in_c, out_c, k, groups, geo):
    rng = np.random.default_rng(in_c * 100 + out_c)
    conv = _conv(rng, in_c, out_c, k, groups, arithmetic, **geo)
    v = rng.integers(0, 256, (2, in_c, 9, 7)).astype(np.uint8)
    v[0, :, 0, :] = 255             # extremes next to the zero point's far side
    v[1, :, :, 0] = 0
    for xv in _layouts(v):
        x = QTensor(xv, 0.03, 131)
        want = conv.reference(x)
        f = conv._bind(x)
        for _ in range(2):
            assert _same(f(x), want)
            assert _same(conv(x), want)
        # another signature: MISS, never the bound constants on another input
        assert f(QTensor(xv, 0.06, 131)) is MISS
        assert f(QTensor(xv, 0.03, 130)) is MISS
        assert f(QTensor(xv[:1], 0.03, 131)) is MISS
        assert f(QTensor(xv.astype(np.int8), 0.03, 0)) is MISS
        assert f(QTensor(np.ascontiguousarray(xv), 0.03, 131)) is MISS or xv.flags.c_contiguous
        assert f(xv) is MISS


def test_one_input_channel_runs_the_gemm_from_32_outputs():
    rng = np.random.default_rng(1)
    x = QTensor(rng.integers(0, 256, (1, 1, 12, 12)).astype(np.uint8), 0.03, 131)
    for out_c, path in ((16, "depthwise"), (32, "gemm"), (64, "gemm")):
        conv = _conv(rng, 1, out_c, (3, 3), padding=1)
        assert _same(conv(x), conv.reference(x))
        assert conv.prepare(type("S", (), dict(scale=0.03, zero_point=131, dtype="uint8"))())["epilogue"].path == path


def test_bound_call_refuses_an_input_that_could_overflow_int32():
    """The full call's accumulator bound holds on the bound call too (it reads the data)."""
    in_c = 66000            # 66000 * 255 * 128 > 2**31 - 1
    w = QTensor(np.full((1, in_c, 1, 1), -128, np.int8), 0.01, 0)
    conv = L.conv.QuantizedConv(w, None, 0.5, 0)
    small = QTensor(np.full((1, in_c, 1, 1), 1, np.uint8), 0.01, 0)
    f = conv._bind(small)
    assert _same(f(small), conv.reference(small))
    big = QTensor(np.full((1, in_c, 1, 1), 255, np.uint8), 0.01, 0)
    with pytest.raises(ValueError, match="could overflow int32"):
        conv(big)
    with pytest.raises(ValueError, match="could overflow int32"):
        f(big)


def _chain(rng):
    return [L.Quantize(0.05, 120), _conv(rng, 3, 8, (3, 3), padding=1), L.Identity(),
            _conv(rng, 8, 8, (3, 3), 8, padding=1), L.Flatten(), L.Dequantize()]


def test_compiled_chain_equals_the_full_path():
    rng = np.random.default_rng(2)
    m = Model(_chain(rng))
    x = rng.uniform(-3, 3, (1, 3, 6, 5)).astype(np.float32)
    want = m.run_values(x)[m.outputs[0]]
    for _ in range(3):
        assert np.array_equal(m(x).view(np.uint32), want.view(np.uint32))
    assert m._compiled.chain
    # a graph whose step reads a value other than the one just made is not run as a chain
    layers = _chain(rng)
    nodes = [Node("q", layers[0], ("x",)), Node("c1", layers[1], ("q",)), Node("c2", layers[3], ("c1",)),
             Node("add", L.arith.QuantizedAdd(0.1, 100), ("c1", "c2")), Node("dq", L.Dequantize(), ("add",))]
    g = Model(nodes=nodes, inputs=("x",), outputs=("dq",))
    for _ in range(2):
        assert np.array_equal(g(x), g.run_values(x)["dq"])
    assert not g._compiled.chain


def _pool_reference(layer, x):
    """The layer's output from fastq.reference's formulas."""
    v, zp = x.values, x.zero_point
    if isinstance(layer, L.reduce.MeanHW):
        y = fastq.reference.mean_hw(v, x.scale, zp, layer.path, v.dtype.name)
        y = y.reshape(y.shape + (1, 1)) if layer.keepdim else y
    elif isinstance(layer, L.pool.AdaptiveAvgPool):
        y = fastq.reference.adaptive_avg_pool(v, zp, layer.output_size, layer.path, layer.vector_channels,
                                              v.dtype.name, x.scale)
    else:
        return layer.reference(x)
    return QTensor._checked(y, x.scale, zp)


@pytest.mark.parametrize("layer", [
    L.pool.AvgPool(2, path="nchw"), L.pool.AvgPool(3, 2, 1, path="nhwc", count_include_pad=False),
    L.pool.AvgPool((9, 7), path="nhwc"), L.pool.AvgPool(2, path="qnnpack"), L.pool.AdaptiveAvgPool((2, 3)),
    L.reduce.MeanHW(), L.reduce.MeanHW(True), L.reduce.MeanHW(path="qnnpack")], ids=repr)
def test_bound_avg_pool_equals_the_reference_and_misses_another_signature(layer):
    """layers/pool.py _bind_plan (_kernels.AvgPoolBound): the reference's integers on each
    layout; MISS for another zero point, dtype, shape, strides, and (where the plan depends on
    it: qnnpack, MeanHW) another scale."""
    rng = np.random.default_rng(7)
    v = rng.integers(0, 256, (2, 8, 9, 7)).astype(np.uint8)
    v[0, :, :3, :3] = 255
    for xv in _layouts(v):
        x = QTensor(xv, 0.03, 131)
        want = _pool_reference(layer, x)
        f = layer._bind(x)
        for _ in range(2):
            assert _same(f(x), want)
            assert _same(layer(x), want)
        assert f(QTensor(xv, 0.03, 130)) is MISS
        assert f(QTensor(xv[:1], 0.03, 131)) is MISS
        assert f(QTensor(xv.astype(np.int8), 0.03, 3)) is MISS
        assert f(QTensor(np.ascontiguousarray(xv), 0.03, 131)) is MISS or xv.flags.c_contiguous
        assert f(xv) is MISS
        other = f(QTensor(xv, 0.06, 131))
        if "qnnpack" in repr(layer) or isinstance(layer, L.reduce.MeanHW):
            assert other is MISS
        else:           # the plan does not read the scale: the output carries the input's own
            assert _same(other, _pool_reference(layer, QTensor(xv, 0.06, 131)))


@pytest.mark.parametrize("arithmetic", ["onednn", "fbgemm", "tflite"])
def test_one_input_channel_1d_runs_the_gemm(arithmetic):
    """A 1-D layer of one input channel (a raw-audio stem): the GEMM path, bound and full, equals
    the reference, values near both ends of the range included."""
    rng = np.random.default_rng(11)
    w = QTensor(rng.integers(-127, 128, (48, 1, 9)).astype(np.int8), rng.uniform(0.002, 0.02, 48),
                np.zeros(48, np.int64), axis=0)
    conv = L.conv.QuantizedConv(w, rng.uniform(-1, 1, 48), 0.07, 3, stride=2, padding=4, arithmetic=arithmetic)
    v = rng.integers(0, 256, (3, 1, 101)).astype(np.uint8)
    v[0, 0, :20] = 255
    v[1, 0, :20] = 0
    x = QTensor(v, 0.03, 131)
    want = conv.reference(x)
    f = conv._bind(x)
    for _ in range(2):
        assert _same(conv(x), want)
        assert _same(f(x), want)
    assert conv.prepare(type("S", (), dict(scale=0.03, zero_point=131, dtype="uint8"))())["epilogue"].path == "gemm"
