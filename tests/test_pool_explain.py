"""explain of the pools and the mean over H, W against the layer's own output on every element
of several layers (each torch path: NCHW, channels-last body and channel tail, QNNPACK; padding,
ceil_mode, count_include_pad, divisor_override; 1-D and 2-D; uint8 and int8): the trace's output
is the kernel's, its window sum is numpy's over the window it names, and the walk-through names
the path's steps. Half the inputs sit on the zero point, so many means are exact .5 ties."""
import numpy as np
import pytest

import fastq
from fastq.layers.pool import AdaptiveAvgPool, AvgPool, MaxPool
from fastq.layers.reduce import MeanHW


def _x(rng, shape, dtype, zp, scale=0.05):
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    v = rng.integers(lo, hi, shape)
    v = np.where(rng.random(shape) < 0.5, zp, v).astype(dtype)
    return fastq.QTensor(v, scale, zp)


LAYERS = [
    ("max 3x3 s2 p1 ceil", MaxPool(3, 2, 1, ceil_mode=True), (2, 3, 7, 6), "uint8"),
    ("max dilated int8", MaxPool(2, 1, 0, dilation=2), (1, 4, 6, 6), "int8"),
    ("max 1-d", MaxPool(3, 2, 1, dims=1), (2, 3, 9), "uint8"),
    ("avg nchw pad, no count", AvgPool(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 7, 6), "uint8"),
    ("avg nchw divisor_override", AvgPool(2, 2, 0, divisor_override=3), (1, 3, 6, 6), "int8"),
    ("avg nhwc body and tail", AvgPool(2, path="nhwc", vector_channels=8), (1, 19, 4, 4), "uint8"),
    ("avg qnnpack", AvgPool(3, 2, 1, path="qnnpack"), (1, 5, 7, 7), "uint8"),
    ("avg 1-d", AvgPool(2, dims=1), (2, 3, 8), "uint8"),
    ("adaptive nchw", AdaptiveAvgPool((2, 3)), (2, 4, 5, 7), "uint8"),
    ("adaptive nhwc body and tail", AdaptiveAvgPool(2, path="nhwc", vector_channels=8), (1, 19, 4, 6), "int8"),
    ("adaptive qnnpack", AdaptiveAvgPool((2, 3), path="qnnpack"), (2, 3, 6, 9), "uint8"),
    ("adaptive 1-d", AdaptiveAvgPool(3, dims=1), (2, 3, 10), "uint8"),
    ("mean nchw", MeanHW(), (2, 7, 5, 3), "uint8"),
    ("mean nhwc keepdim", MeanHW(True, path="nhwc"), (2, 37, 6, 6), "uint8"),
    ("mean qnnpack", MeanHW(path="qnnpack"), (2, 5, 4, 6), "uint8"),
]


@pytest.mark.parametrize("label, layer, shape, dtype", LAYERS, ids=[v[0] for v in LAYERS])
def test_every_element_is_the_kernel(rng, label, layer, shape, dtype):
    zp = 100 if dtype == "uint8" else -3
    x = _x(rng, shape, dtype, zp, 0.0371)
    y = layer(x).values
    ref = y.reshape(y.shape[:2]) if isinstance(layer, MeanHW) else y
    cols = ref.shape[-1]
    x4 = x.values[:, :, None, :] if x.values.ndim == 3 else x.values
    for row in range(ref.size // cols):
        for col in range(cols):
            t = layer.explain(x, row, col)
            assert t.equal, (label, row, col, t.checks, t.output)
            assert t.output == int(ref.reshape(-1, cols)[row, col])
            n, c = t.index[:2]
            window = np.array([int(x4[n, c, h, w]) for h, w in t.taps])
            assert np.array_equal(window, t.values)
            if t.op == "MaxPool":
                assert t.acc == window.max()
            else:
                assert t.acc == int(window.sum()) - window.size * zp
    assert label.split()[0] in str(t).lower() or "mean" in label
    assert "all equal" in str(t)


def test_walk_through_names_the_path():
    rng = np.random.default_rng(3)
    x = _x(rng, (1, 19, 4, 4), "uint8", 100)
    body = AvgPool(2, path="nhwc", vector_channels=8).explain(x, 0, 0)
    tail = AvgPool(2, path="nhwc", vector_channels=8).explain(x, 18 * 2, 0)
    assert "vector body" in str(body) and "channel tail" in str(tail)
    assert [s.name for s in tail.steps] == ["m", "inv", "t", "t", "r", "q"]
    q = AvgPool(2, path="qnnpack").explain(x, 0, 0)
    assert "f32(s / f32(s * (KH*KW)))" in str(q) and q.to_dict()["divisor"] == 4


@pytest.mark.parametrize("row, col, exc", [(8, 0, ValueError), (0, 2, ValueError), (0.5, 0, TypeError)])
def test_bad_element_is_refused(row, col, exc):
    x = _x(np.random.default_rng(1), (1, 4, 4, 4), "uint8", 100)
    with pytest.raises(exc):
        AvgPool(2).explain(x, row, col)
