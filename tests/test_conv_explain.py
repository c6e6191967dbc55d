"""QuantizedConv.explain against the compiled kernel: for every output element of small layers
in each arithmetic (1-D, 2-D, groups, depthwise with FBGEMM's saturating pairs, per-channel,
fused ReLU, int8), the trace's output is the kernel's, its exact inner product is
reference.conv_acc's, and the walk-through names each step."""
import zlib

import numpy as np
import pytest

import fastq
from fastq import reference as R
from fastq.layers.conv import QuantizedConv


def _w(rng, shape, per_channel, symmetric):
    v = rng.integers(-128, 128, shape).astype(np.int8)
    o = shape[0]
    if per_channel:
        return fastq.QTensor(v, rng.uniform(0.003, 0.03, o), np.zeros(o, np.int64) if symmetric
                             else rng.integers(-4, 5, o), axis=0)
    return fastq.QTensor(v, 0.0107, 0 if symmetric else 2)


def _x(rng, shape, dtype, zp):
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    return fastq.QTensor(rng.integers(lo, hi, shape).astype(dtype), 0.043, zp)


LAYERS = [
    # (label, arithmetic, weight shape, kwargs, x shape, x dtype, per_channel, symmetric)
    ("fbgemm 2-d relu", "fbgemm", (4, 3, 3, 3), dict(padding=1, relu=True), (2, 3, 5, 4), "uint8", False, False),
    ("fbgemm int8 per-channel stride", "fbgemm", (3, 2, 2, 3), dict(stride=(2, 1), dtype="int8"), (1, 2, 5, 6),
     "int8", True, False),
    ("onednn per-channel relu", "onednn", (4, 2, 3, 3), dict(padding=1, relu=True), (1, 2, 4, 4), "uint8", True, True),
    ("onednn int8 out, no bias", "onednn", (2, 3, 1, 1), dict(dtype="int8", bias=None), (2, 3, 3, 3), "uint8",
     False, True),
    ("qnnpack groups 2 dilation 2", "qnnpack", (4, 2, 2, 2), dict(groups=2, dilation=2, padding=1), (1, 4, 5, 5),
     "uint8", True, False),
    ("tflite int8 1-d", "tflite", (3, 2, 3), dict(padding=1, dtype="int8", rounding="single"), (2, 2, 7), "int8",
     True, True),
    ("tflite double_up", "tflite", (2, 2, 2, 2), dict(rounding="double_up"), (1, 2, 4, 4), "uint8", False, False),
    ("depthwise fbgemm saturating", "fbgemm", (8, 1, 3, 3), dict(padding=1, groups=8), (1, 8, 4, 4), "uint8",
     True, True),
    ("depthwise saturation on, int8 x", "fbgemm", (8, 1, 3, 3), dict(padding=1, groups=8, depthwise_saturation="on"),
     (1, 8, 3, 3), "int8", False, False),
]


@pytest.mark.parametrize("label, ar, wshape, kw, xshape, xd, pc, sym", LAYERS, ids=[v[0] for v in LAYERS])
def test_every_element_is_the_kernel(label, ar, wshape, kw, xshape, xd, pc, sym):
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    kw = dict(kw)
    bias = kw.pop("bias", rng.uniform(-2, 2, wshape[0]))
    w = _w(rng, wshape, pc, sym)
    if "saturat" in label:           # raw products near the int16 limits: pairs saturate
        w = fastq.QTensor(np.where(rng.random(wshape) < 0.5, 127, -128).astype(np.int8), w.scale, w.zero_point,
                          axis=w.axis)
    zy = 7 if kw.get("dtype", "uint8") == "uint8" else -5
    layer = QuantizedConv(w, bias, 0.21, zy, arithmetic=ar, **kw)
    x = _x(rng, xshape, xd, 100 if xd == "uint8" else -3)
    if "saturat" in label:
        x = fastq.QTensor(np.where(rng.random(xshape) < 0.5, x.values.max(), x.values.min()).astype(xd), 0.043,
                          x.zero_point)
    y = layer(x).values
    zws = np.atleast_1d(np.asarray(w.zero_point))
    exact = R.conv_acc(x.values.astype(np.int64) + (128 if xd == "int8" else 0), x.zero_point + (128 if xd == "int8" else 0),
                       w.values, zws, layer.stride, layer.padding, layer.dilation, layer.groups)
    cols = y.shape[-1]
    saturated = 0
    for row in range(y.size // cols):
        for col in range(cols):
            t = layer.explain(x, row, col)
            assert t.equal, (label, row, col, t.checks, t.output)
            assert t.output == int(y.reshape(-1, cols)[row, col]), (label, row, col)
            assert tuple(t.index) == tuple(int(v) for v in np.unravel_index(row * cols + col, y.shape))
            assert t.acc == int(exact[t.index]), (label, t.index)
            saturated += t.saturated_pairs or 0
    if "saturat" in label:
        assert saturated > 0            # the case exercises the saturating pairs
        text = str(t)
        assert "int16 pairs" in text and "saturated" in text


def test_walk_through_names_the_arithmetic_and_the_field():
    rng = np.random.default_rng(5)
    layer = QuantizedConv(_w(rng, (2, 3, 3, 3), True, True), np.array([0.5, -0.25]), 0.1, 9, padding=1,
                          arithmetic="onednn")
    x = _x(rng, (1, 3, 4, 4), "uint8", 120)
    t = layer.explain(x, 0, 0)
    text = str(t)
    assert "onednn" in text and "output y[0, 0, 0, 0]" in text and "15 padding tap(s)" in text and "all equal" in text
    assert [s.name for s in t.steps if s.stage == "multiplier"] == ["1/s_x", "s_src", "s_w", "1/s_y", "d", "inv_d"]
    # the padded taps of a corner element read the input zero point and have no input coordinate
    assert sum(tap is None for tap in t.taps) == 3 * 5 and len(t.products) == 27


def test_model_explain_of_a_conv_node():
    rng = np.random.default_rng(6)
    conv = QuantizedConv(_w(rng, (3, 2, 3, 3), False, False), None, 0.2, 100, arithmetic="qnnpack")
    m = fastq.Model([fastq.layers.Quantize(0.05, 128), conv, fastq.layers.Dequantize()])
    xf = rng.uniform(-3, 3, (2, 2, 5, 5)).astype(np.float32)
    q = fastq.layers.Quantize(0.05, 128)(xf)
    y = conv(q).values
    t = m.explain(xf, 1, 7, 2)           # row 7 of [2 * 3 * 3, 3]: n 0, o 2, oh 1; col 2
    assert t.index == (0, 2, 1, 2) and t.output == int(y[0, 2, 1, 2]) and t.equal


@pytest.mark.parametrize("row, col, exc", [(18, 0, ValueError), (0, 3, ValueError), (0.5, 0, TypeError)])
def test_bad_element_is_refused(row, col, exc):
    rng = np.random.default_rng(7)
    conv = QuantizedConv(_w(rng, (3, 2, 3, 3), False, False), None, 0.2, 100)
    with pytest.raises(exc, match="row|col"):
        conv.explain(_x(rng, (2, 2, 5, 5), "uint8", 3), row, col)
