"""Exported C of the CNN ops beyond convolution (Hardswish, Hardsigmoid, MeanHW, AdaptiveAvgPool,
Chunk and the broadcasting quantized mul of squeeze-excitation) against fastq's runtime, bit for
bit: every path fastq computes (x86 / fbgemm vector body and scalar tail, QNNPACK's tables and
multipliers, NCHW and channels-last inputs), uint8 and int8, compiled by host gcc with -Wall
-Wextra -Werror -pedantic and run one sample per call as net_run runs (the runtime is itself held
to torch elsewhere). Inputs with half the values at the zero point put many window means on exact
.5 ties; the activation inputs cover every 8-bit code."""
import numpy as np
import pytest

from fastq.layers.activation import Hardsigmoid, Hardswish
from fastq.layers.arith import QuantizedMul
from fastq.layers.elementwise import Dequantize, Flatten, Quantize
from fastq.layers.pool import AdaptiveAvgPool
from fastq.layers.reduce import MeanHW
from fastq.layers.shape import Chunk
from fastq.model import Model, Node
from test_conv_export import _conv
from test_export_hardening import _expect_c_equals_runtime

SX = 0.031


def _zp(dt):
    return 128 if dt == "uint8" else 3


def _x(rng, shape, tie=True):
    """Floats whose quantization covers the whole range, half of them on the zero point (0.0)."""
    x = rng.uniform(-4.5, 4.5, shape).astype(np.float32)
    if tie:
        x = np.where(rng.random(shape) < 0.5, np.float32(0), x)
    return x


def _chain(layers, dt, conv_channels=None, rng=None):
    head = [Quantize(SX, _zp(dt), dt)]
    if conv_channels:               # a convolution's output: a channels-last buffer in the C
        head.append(_conv(rng, conv_channels, conv_channels, 3, "fbgemm", padding=1, dtype=dt))
    return Model(head + layers + [Dequantize()])


ACT_CASES = [(p, lay, dt) for p, lay in (("vector", "nchw"), ("vector", "nhwc"), ("qnnpack", "nchw"))
             for dt in ("uint8", "int8") if not (p == "qnnpack" and dt == "int8")]


@pytest.mark.parametrize("path, layout, dt", ACT_CASES)
@pytest.mark.parametrize("conv", [False, True])
def test_hardswish_hardsigmoid_export(tmp_path, rng, path, layout, dt, conv):
    """Tables per layer; the elements torch leaves to its scalar tail (105 = 64 + 41 per sample with
    AVX-512's 64-byte vectors; in NCHW or NHWC order) read the tail's table."""
    c, h, w = 5, 7, 3
    # output qparams found by search where body and tail differ on some code (input scale SX): uint8
    # in the first hardswish, int8 in the hardsigmoid that reads its output
    s1, z1 = (0.013099392876029015, 123) if dt == "uint8" else (0.0286865197122097, 3)
    layers = [Hardswish(s1, z1, dt, path, layout), Hardsigmoid(dt, path, layout),
              Hardswish(0.011, _zp(dt), dt, path, layout, vector_block=32)]
    m = _chain(layers, dt, c if conv else None, rng)
    gen = _expect_c_equals_runtime(m, _x(rng, (4, c, h, w)), tmp_path, input_shape=(c, h, w))
    if path == "vector" and not conv:
        assert "tail_table" in gen.source       # the tails differ from the bodies for these scales


def test_activation_tables_cover_every_code(tmp_path):
    """A Quantize whose 256 outputs are all the codes: every table entry is read once."""
    for dt in ("uint8", "int8"):
        x = ((np.arange(256, dtype=np.float32) - 128) * np.float32(SX)).reshape(1, 256, 1, 1)
        for path in ("vector", "qnnpack") if dt == "uint8" else ("vector",):
            m = Model([Quantize(SX, 0 if dt == "uint8" else -128, dt), Hardswish(0.023, 17, dt, path),
                       Dequantize()])
            _expect_c_equals_runtime(m, x + np.float32(0 if dt == "int8" else 128 * SX), tmp_path / (dt + path),
                                     input_shape=(256, 1, 1))


# QNNPACK takes uint8 activations only
PATHS_DTYPES = [(p, d) for p in ("nchw", "nhwc", "qnnpack") for d in ("uint8", "int8") if (p, d) != ("qnnpack", "int8")]


@pytest.mark.parametrize("path, dt", PATHS_DTYPES)
def test_mean_hw_export(tmp_path, rng, path, dt):
    """Every sum order of the channels-last path: one channel (torch's inner sum), channel groups
    of 4 * 8 lanes and the rest (4 partial sums), cascades deeper than 16 rows (17 x 16)."""
    for i, (c, h, w) in enumerate([(1, 9, 9), (37, 5, 7), (70, 16, 17), (3, 1, 1), (1, 2, 3)]):
        for conv in (False, True):
            m = _chain([MeanHW(conv, path, 8)], dt, c if conv else None, rng)
            _expect_c_equals_runtime(m, _x(rng, (3, c, h, w)), tmp_path / ("%d%d" % (i, conv)), input_shape=(c, h, w))


@pytest.mark.parametrize("path, dt", PATHS_DTYPES)
def test_adaptive_avg_pool_export(tmp_path, rng, path, dt):
    cases = [(20, 9, 9, (3, 3)), (37, 5, 7, (2, 3)), (5, 8, 6, (4, 2)), (17, 6, 6, (1, 1)), (9, 10, 4, (5, 4))]
    for i, (c, h, w, o) in enumerate(cases):
        if path == "qnnpack" and (h % o[0] or w % o[1]):
            continue
        for conv in (False, True):
            m = _chain([AdaptiveAvgPool(o, path, 8), Flatten()], dt, c if conv else None, rng)
            _expect_c_equals_runtime(m, _x(rng, (3, c, h, w)), tmp_path / ("%d%d" % (i, conv)), input_shape=(c, h, w))
    m = Model([Quantize(SX, _zp(dt), dt), AdaptiveAvgPool(3, path, 8, dims=1), Flatten(), Dequantize()])
    _expect_c_equals_runtime(m, _x(rng, (3, 4, 12)), tmp_path / "1d", input_shape=(4, 12))


@pytest.mark.parametrize("dt", ["uint8", "int8"])
def test_squeeze_excitation_and_chunk_export(tmp_path, rng, dt):
    """conv -> global pool -> hardsigmoid -> mul by the [C, 1, 1] gate either way round (the
    features transposed from channels-last), then channel and width chunks of the product."""
    for c, h, w in ((16, 5, 5), (24, 9, 7)):
        z = _zp(dt)
        nodes = [Node("q", Quantize(SX, z, dt), ("x",)),
                 Node("c", _conv(rng, c, c, 3, "fbgemm", padding=1, dtype=dt), ("q",)),
                 Node("p", AdaptiveAvgPool(1, "nhwc", 8), ("c",)),
                 Node("s", Hardsigmoid(dt, "vector", "nhwc"), ("p",)),
                 Node("m", QuantizedMul(0.02, z - 3), ("c", "s")),
                 Node("m2", QuantizedMul(0.02, z - 3, relu=True), ("s", "m")),
                 Node("k", Chunk(2, 1, 1), ("m2",)),
                 Node("k2", Chunk(3, 3, 2), ("k",)),
                 Node("d", Dequantize(), ("k2",))]
        m = Model(nodes=nodes, inputs=("x",), outputs=("d",))
        gen = _expect_c_equals_runtime(m, _x(rng, (3, c, h, w)), tmp_path / str(c), input_shape=(c, h, w))
        assert "broadcast from" in gen.source


def test_float_chunk_export(tmp_path, rng):
    m = Model([Chunk(3, 2, 1), Chunk(2, -1, 0)])
    _expect_c_equals_runtime(m, _x(rng, (2, 3, 8, 5)), tmp_path, input_shape=(3, 8, 5))


def test_broadcast_mul_past_the_bound_is_refused():
    from fastq import export
    from fastq.export.emit import ExportError
    nodes = [Node("q", Quantize(SX, 128), ("x",)), Node("p", AdaptiveAvgPool(1), ("q",)),
             Node("m", QuantizedMul(1e-9, 0), ("q", "p")), Node("d", Dequantize(), ("m",))]
    m = Model(nodes=nodes, inputs=("x",), outputs=("d",))
    with pytest.raises(ExportError, match="multiplier"):
        export.generate(m, name="net", input_shape=(4, 3, 3))


@pytest.mark.parametrize("order", ["quantized first", "conv first"])
def test_add_of_two_layouts_export(tmp_path, rng, order):
    """An add of the quantized input (NCHW) and a convolution's output (channels-last): torch runs
    its scalar loop on every element of inputs of two layouts, so the exported C must not split
    into a vector body and a tail there. Power-of-two scales put every sum on a multiple of half
    an output step, and the odd output zero point makes the body's rne(t) + z and the tail's
    rne(z + t) differ on each .5: a split would miss the body's ties."""
    from fastq.layers.arith import QuantizedAdd
    from fastq.layers.conv import QuantizedConv
    import fastq
    s = 2.0 ** -5
    c = 4                                   # 4 x 6 x 6 = 144 values per sample: a body and a tail
    w = fastq.QTensor(rng.integers(-3, 4, (c, c, 1, 1)).astype(np.int8), np.full(c, 0.25), np.zeros(c, np.int64), axis=0)
    conv = QuantizedConv(w, None, s, 128)
    ins = ["q", "c"] if order == "quantized first" else ["c", "q"]
    nodes = [Node("quant", Quantize(s, 128), ["x"], ["q"]), Node("conv", conv, ["q"], ["c"]),
             Node("add", QuantizedAdd(2 * s, 129), ins, ["s"]), Node("dq", Dequantize(), ["s"], ["y"])]
    m = Model(nodes=nodes, inputs=["x"], outputs=["y"])
    x = (rng.integers(-40, 40, (3, c, 6, 6)) * s).astype(np.float32)
    _expect_c_equals_runtime(m, x, tmp_path, input_shape=(c, 6, 6))
