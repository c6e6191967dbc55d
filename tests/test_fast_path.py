"""The fast call path (layers/_fast.py) and the compiled model run (model.py _Compiled) give the
integers of the full, checked path, and step aside wherever their prepared constants do not apply.

Oracles: run_values (the full path, which never uses a compiled run), tests/ops/oracle.py (every
node from fastq.reference) and each layer's reference() for the pooling kernels."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import fastq
from fastq import layers as L
from fastq.layers import pool, reduce
from fastq.layers._base import FLOAT, Layer
from fastq.layers._fast import ALIAS, MISS
from fastq.model import Model, Node
from fastq.qtensor import QTensor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops"))
import cases as C          # noqa: E402
import cases_conv          # noqa: E402,F401  (registers its cases in C.CASES)
import oracle              # noqa: E402

OPS = sorted(C.CASES)


def _bits(y):
    return np.asarray(y, np.float32).view(np.uint32)


def _same_value(a, b):
    if isinstance(b, QTensor):
        return (type(a) is QTensor and a.values.dtype == b.values.dtype and a.values.shape == b.values.shape
                and np.array_equal(a.values, b.values) and a.scale == b.scale and a.zero_point == b.zero_point)
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and np.array_equal(_bits(a), _bits(b))
    return a == b


def _outputs(model, values):
    outs = tuple(values[v] for v in model.outputs)
    return tuple(fastq.dequantize(o) if isinstance(o, QTensor) else o for o in outs)


@pytest.mark.parametrize("op", OPS)
def test_compiled_run_equals_the_full_path_and_the_oracle(op):
    for c in C.CASES[op]():
        m = c.model
        first = m(c.x)                  # the full path, which compiles
        compiled = m._compiled
        second = m(c.x)                 # the compiled run
        assert m._compiled is compiled
        want = _outputs(m, m.run_values(c.x))
        ref = oracle.run(m, c.x)
        for y in (first, second):
            ys = y if isinstance(y, tuple) else (y,)
            assert len(ys) == len(want)
            for a, b in zip(ys, want):
                assert np.asarray(a).shape == np.asarray(b).shape and np.array_equal(_bits(a), _bits(b)), (op, c.label)
            assert np.array_equal(_bits(ys[0]), _bits(ref)), (op, c.label)


@pytest.mark.parametrize("op", OPS)
def test_every_bound_callable_equals_the_layer_call(op):
    """Each node's bound callable on the node's own inputs (from run_values) equals its full
    call, twice (a reused plan); for inputs of another quantization, shape, dtype or layout it
    answers MISS or (where its constants do not depend on what changed) the full call's value,
    and MISS wherever the full call refuses the input."""
    for c in C.CASES[op]():
        m = c.model
        values = m.run_values(c.x)
        for n in m.nodes:
            bind = getattr(n.layer, "_bind", None)
            if bind is None:
                continue
            args = [values[v] for v in n.inputs]
            want = n.layer(*args)
            f = bind(*args)
            if f is None:
                continue
            if f is ALIAS:
                assert want is args[0]
                continue
            for _ in range(2):
                got = f(*args)
                assert _same_value(got, want), (op, c.label, n.name)
            x = args[0]
            if type(x) is QTensor and len(args) == 1:
                v = x.values
                other = (QTensor(v, x.scale * 2, x.zero_point), QTensor(v[:1], x.scale, x.zero_point),
                         QTensor(v.astype(np.int8 if v.dtype == np.uint8 else np.uint8), x.scale, 0))
                if v.ndim == 4 and min(v.shape[1:]) > 1:
                    other += (QTensor(np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
                                      x.scale, x.zero_point),)
                for o in other:
                    try:
                        want_o = n.layer(o)
                    except (TypeError, ValueError):
                        want_o = None
                    got = f(o)
                    assert got is MISS or (want_o is not None and _same_value(got, want_o)), (op, c.label, n.name, o)
                assert f(np.zeros(3, np.float32)) is MISS


def _channels_last(v):
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


POOLS = [
    pool.AvgPool(2, path="nchw"), pool.AvgPool(2, path="nhwc"), pool.AvgPool(2, path="nhwc", vector_channels=8),
    pool.AvgPool(3, 2, 1, path="nhwc", count_include_pad=False), pool.AvgPool(3, 2, 1, ceil_mode=True),
    pool.AvgPool((3, 2), (2, 1), (1, 0), divisor_override=5), pool.AvgPool(2, path="qnnpack"),
    pool.AvgPool((25, 5), path="nhwc"), pool.AvgPool(3, 3, path="nhwc", vector_channels=0),
    pool.AdaptiveAvgPool((2, 3)), pool.AdaptiveAvgPool(1, path="nhwc"), pool.AdaptiveAvgPool((3, 2), path="nhwc"),
    pool.AdaptiveAvgPool(2, path="qnnpack"),
    reduce.MeanHW(), reduce.MeanHW(True), reduce.MeanHW(path="qnnpack"), reduce.MeanHW(True, path="qnnpack"),
]


@pytest.mark.parametrize("layer, dtype", [(p, d) for p in POOLS for d in ("uint8", "int8")
                                           if not (d == "int8" and getattr(p, "path", "") == "qnnpack")],
                         ids=repr)
def test_pool_kernel_on_both_layouts_equals_the_reference(layer, dtype):
    """Contiguous and channels-last inputs (a convolution's output), uint8 and int8, random
    values and near-ties (every value one apart around the zero point): the plan's integers are
    the reference formula's for the layer's path."""
    # (the qnnpack paths take uint8 only)
    rng = np.random.default_rng(7)
    lo, hi = (-128, 128) if dtype == "int8" else (0, 256)
    zp = 3 if dtype == "int8" else 131
    for shape in [(1, 37, 6, 6), (2, 20, 4, 6), (1, 64, 25, 5), (3, 16, 6, 6)]:
        for v in (rng.integers(lo, hi, shape).astype(dtype),
                  (zp + (np.arange(np.prod(shape)) % 3) - 1).reshape(shape).astype(dtype)):
            q = QTensor(v, 0.037, zp)
            if isinstance(layer, reduce.MeanHW):
                want = fastq.reference.mean_hw(v, 0.037, zp, layer.path, dtype)
                want = want.reshape(want.shape + (1, 1)) if layer.keepdim else want
            elif isinstance(layer, pool.AdaptiveAvgPool):
                if layer.path == "qnnpack" and any(s % o for s, o in zip(shape[2:], layer.output_size)):
                    continue
                want = fastq.reference.adaptive_avg_pool(v, zp, layer.output_size, layer.path,
                                                         layer.vector_channels, dtype, 0.037)
            else:
                try:
                    want = layer.reference(q).values
                except ValueError:          # a window larger than this input: refused alike
                    with pytest.raises(ValueError):
                        layer(QTensor(_channels_last(v), 0.037, zp))
                    continue
            flipped = np.ascontiguousarray(v[:, ::-1, ::-1])[:, ::-1, ::-1]     # negative strides
            for x in (q, QTensor(_channels_last(v), 0.037, zp), QTensor(flipped, 0.037, zp)):
                for _ in range(2):          # the full call, then the bound one
                    y = layer(x)
                    assert y.values.dtype == want.dtype and np.array_equal(y.values, want), (layer, shape)
                    assert (y.scale, y.zero_point) == (0.037, zp)


def test_pool_output_keeps_channels_last():
    """A channels-last input gives a channels-last output (the next convolution reads it in
    place); a 1x1 output is contiguous either way (Flatten reshapes it without a copy)."""
    v = _channels_last(np.random.default_rng(1).integers(0, 256, (1, 32, 8, 8)).astype(np.uint8))
    y = pool.AvgPool(2, path="nhwc")(QTensor(v, 0.1, 100)).values
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous
    g = pool.AvgPool(8, path="nhwc")(QTensor(v, 0.1, 100)).values
    assert g.shape == (1, 32, 1, 1) and g.flags.c_contiguous


def test_avg_pool_plan_refuses_another_signature():
    v = np.zeros((1, 4, 4, 4), np.uint8)
    plan = fastq._kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, [0], [4], [0], [4], 0,
                                      (("mul", 0.0625, 0, 0),) * 2, 0)
    for bad in (np.zeros((1, 4, 4, 5), np.uint8), v.astype(np.int8), _channels_last(v), [0]):
        with pytest.raises(ValueError, match="this plan takes"):
            plan(bad)
    with pytest.raises(ValueError, match="op expected"):
        fastq._kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, [0], [4], [0], [4], 0, (("round", 1, 0, 0),) * 2, 0)
    with pytest.raises(ValueError, match="windows"):
        fastq._kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, [0], [5], [0], [4], 0, (("mul", 1, 0, 0),) * 2, 0)


class _DataScaledQuantize(Layer):
    """A test op whose output scale depends on the data (as a dynamic quantization's does):
    the compiled run's bound callables downstream must not reuse the first call's constants."""
    takes = FLOAT

    def __call__(self, x):
        scale = float(np.float32(np.abs(x).max() / 100 + 1e-3))
        return fastq.quantize(x, scale, 128)


def _conv_pool_model():
    rng = np.random.default_rng(3)
    w = QTensor(rng.integers(-100, 100, (8, 4, 3, 3)).astype(np.int8), 0.01, 0)
    conv = L.conv.QuantizedConv(w, rng.uniform(-1, 1, 8), 0.05, 110)
    nodes = [Node("q", _DataScaledQuantize(), ("x",)), Node("conv", conv, ("q",)), Node("id", L.Identity(), ("conv",)),
             Node("pool", pool.AvgPool(2, path="nhwc", vector_channels=4), ("id",)),
             Node("flat", L.Flatten(), ("pool",)), Node("dq", L.Dequantize(), ("flat",))]
    return Model(nodes=nodes, inputs=("x",), outputs=("dq",))


def test_data_dependent_qparams_fall_back_per_node():
    m = _conv_pool_model()
    x = np.random.default_rng(4).uniform(-2, 2, (1, 4, 6, 6)).astype(np.float32)
    m(x)
    assert m._compiled is not None
    for k in (1.0, 3.0, 0.25):          # other scales from the first node: conv's bound call misses
        y = m(x * np.float32(k))
        fresh = _conv_pool_model()      # the same model with no bound calls yet: the checked path
        want = fresh(x * np.float32(k))
        assert np.array_equal(_bits(y), _bits(want))
        assert not np.array_equal(_bits(m(x)), _bits(want)) or k == 1.0     # the scale matters here


def test_compiled_run_follows_the_input_signature():
    m = _conv_pool_model()
    rng = np.random.default_rng(5)
    for shape in [(1, 4, 6, 6), (2, 4, 6, 6), (1, 4, 8, 10), (1, 4, 6, 6)]:
        x = rng.uniform(-2, 2, shape).astype(np.float32)
        for _ in range(2):
            assert np.array_equal(_bits(m(x)), _bits(_outputs(m, m.run_values(x))[0]))
        assert m._compiled.sig == ((shape, x.strides),)
    # a strided float32 input compiles for its own strides; a float64 one is converted on every
    # call and takes the full path, leaving the compiled run as it was
    x = rng.uniform(-2, 2, (1, 4, 6, 12)).astype(np.float32)[..., ::2]
    want = _bits(_outputs(m, m.run_values(np.ascontiguousarray(x)))[0])
    for _ in range(2):
        assert np.array_equal(_bits(m(x)), want)
    assert m._compiled.sig == ((x.shape, x.strides),)
    before = m._compiled
    x64 = rng.uniform(-2, 2, (1, 4, 6, 6))
    for _ in range(2):
        assert np.array_equal(_bits(m(x64)), _bits(_outputs(m, m.run_values(x64.astype(np.float32)))[0]))
    assert m._compiled is before


def test_compiled_run_is_dropped_with_the_plan_and_follows_the_backend():
    m = _conv_pool_model()
    x = np.random.default_rng(6).uniform(-2, 2, (1, 4, 6, 6)).astype(np.float32)
    y = m(x)
    assert m._compiled is not None
    m._plan = m._make_plan()            # whatever rebuilds the plan drops the compiled run
    assert m._compiled is None
    try:
        for b in fastq.backends():      # kernels dispatch per call: a backend change needs no rebuild
            fastq.set_backend(b)
            assert np.array_equal(_bits(m(x)), _bits(y)), b
    finally:
        fastq.set_backend("auto")


def test_identity_nodes_are_read_through_and_user_errors_keep_their_messages():
    m = _conv_pool_model()
    x = np.random.default_rng(8).uniform(-2, 2, (1, 4, 6, 6)).astype(np.float32)
    m(x)
    assert all(type(layer).__name__ != "Identity" for _, layer, *rest in m._compiled.steps)
    with pytest.raises(TypeError, match="the model takes 1 input"):
        m(x, x)
    with pytest.raises(ValueError):
        m(np.zeros((1, 3, 6, 6), np.float32))       # 3 channels for a 4-channel convolution


def test_layer_fast_call_rebinds_on_a_new_signature():
    rng = np.random.default_rng(9)
    w = QTensor(rng.integers(-100, 100, (4, 4, 1, 1)).astype(np.int8), 0.01, 0)
    conv = L.conv.QuantizedConv(w, None, 0.05, 110)
    a = QTensor(rng.integers(0, 256, (1, 4, 5, 5)).astype(np.uint8), 0.02, 120)
    b = QTensor(_channels_last(a.values), 0.03, 121)
    for x in (a, b, a, b):
        assert _same_value(conv(x), conv.reference(x))
    with pytest.raises(TypeError, match="per-tensor fastq.QTensor"):
        conv(a.values)


@pytest.mark.parametrize("layer", [pool.MaxPool(2), pool.MaxPool(3, 2, 1), pool.MaxPool(3, 2, 1, ceil_mode=True),
                                   pool.MaxPool((3, 2), (1, 2), (1, 0), dilation=(2, 1))], ids=repr)
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_max_pool_on_both_layouts_equals_the_reference(layer, dtype):
    rng = np.random.default_rng(12)
    lo, hi = (-128, 128) if dtype == "int8" else (0, 256)
    for shape in [(1, 37, 7, 6), (2, 64, 8, 8), (1, 3, 5, 5)]:
        v = rng.integers(lo, hi, shape).astype(dtype)
        want = layer.reference(QTensor(v, 0.1, 0)).values
        for x in (QTensor(v, 0.1, 0), QTensor(_channels_last(v), 0.1, 0)):
            y = layer(x).values
            assert y.dtype == want.dtype and np.array_equal(y, want), shape
        assert layer(QTensor(_channels_last(v), 0.1, 0)).values.transpose(0, 2, 3, 1).flags.c_contiguous
