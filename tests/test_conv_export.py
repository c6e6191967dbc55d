"""Exported C of convolutions and pools against fastq's runtime, on every firmware target: every
arithmetic (onednn, fbgemm, qnnpack, tflite), uint8 and int8, 1-D and 2-D, stride / padding /
dilation / groups / depthwise (interior and padded windows), FBGEMM's saturating depthwise pairs
with zero and non-zero weight zero points, max and average pooling on each torch path, and the
NCHW model input read through strides while convolutions write NHWC (transposed back where a flat
order is read). The fast paths (SMLAD, SDOT) run in the cortex-m4f / aarch64-dotprod builds and
the portable twin in cortex-m4f-portable / aarch64 / host: all equal fastq."""
import os

import numpy as np
import pytest

import fastq
from fastq import export
from fastq.layers.conv import QuantizedConv
from fastq.layers.elementwise import Dequantize, Flatten, Quantize, ReLU
from fastq.layers.pool import AvgPool, MaxPool
from fastq.model import Model
from firmware import harness


def _conv(rng, cin, cout, k, arith, stride=1, padding=0, dilation=1, groups=1, per_channel=True, relu=False,
          dtype="uint8", sat="auto", dims=2, zw=0, bias=True):
    shape = (cout, cin // groups) + ((k,) * dims if isinstance(k, int) else tuple(k))
    w = rng.integers(-127, 128, shape).astype(np.int8)
    if per_channel:
        wq = fastq.QTensor(w, rng.uniform(0.002, 0.01, cout), np.full(cout, zw, np.int64), axis=0)
    else:
        wq = fastq.QTensor(w, 0.005, zw)
    sy = 0.05 * 0.005 * 128 * np.sqrt(int(np.prod(shape[1:]))) * 0.3
    zy = (-128 if relu else 0) if dtype == "int8" else 100
    b = rng.standard_normal(cout).astype(np.float32) * 0.3 if bias else None
    return QuantizedConv(wq, b, sy, zy, stride=stride, padding=padding, dilation=dilation, groups=groups, relu=relu,
                         arithmetic=arith, dtype=dtype, depthwise_saturation=sat)


def models(rng):
    out = []
    for ar in ("onednn", "fbgemm", "qnnpack", "tflite"):
        for dt in ("uint8", "int8") if ar in ("fbgemm", "tflite") else ("uint8",):
            out.append(("%s %s" % (ar, dt), (3, 9, 11), dt, [
                _conv(rng, 3, 8, 3, ar, stride=2, padding=1, relu=True, dtype=dt),
                _conv(rng, 8, 8, 3, ar, padding=1, groups=8, relu=True, dtype=dt),
                _conv(rng, 8, 16, 3, ar, padding=2, dilation=2, groups=8, dtype=dt, bias=False),
                _conv(rng, 16, 12, 1, ar, dtype=dt), AvgPool(2, path="nhwc", vector_channels=8), Flatten()]))
    out.append(("odd geometry, per-tensor zw 3, saturating depthwise", (2, 10, 9), "uint8", [
        _conv(rng, 2, 16, (3, 2), "fbgemm", stride=(2, 1), padding=(1, 0), dilation=(1, 2), per_channel=False, zw=3),
        _conv(rng, 16, 16, 3, "fbgemm", padding=1, groups=16, sat="on"),
        _conv(rng, 16, 16, 3, "fbgemm", padding=1, groups=16, sat="on", per_channel=False, zw=-2),
        MaxPool(2, ceil_mode=True), _conv(rng, 16, 6, 3, "qnnpack", groups=2, padding=1)]))
    out.append(("int8 saturating depthwise, channel multiplier 2", (8, 7, 7), "int8", [
        _conv(rng, 8, 16, 3, "fbgemm", stride=2, padding=1, groups=8, sat="on", dtype="int8"),
        _conv(rng, 16, 16, 5, "tflite", padding=2, groups=16, dtype="int8"), ReLU(),
        MaxPool(3, 2, 1, dilation=1)]))
    # the ARM DSP paths' tails (conv_dsp.py): an odd pixel count and an odd channel count per group,
    # K % 4 != 0 from an NCHW input and from a channels-last one, runs of 4 channels per group,
    # int8 saturating depthwise with an even (2x2) and an odd (3x3, stride 2) tap count
    out.append(("DSP tails, int8", (6, 7, 5), "int8", [
        _conv(rng, 6, 7, 3, "fbgemm", padding=1, dtype="int8"),
        _conv(rng, 7, 8, 1, "fbgemm", dtype="int8", relu=True),
        _conv(rng, 8, 8, 2, "fbgemm", padding=1, groups=8, sat="on", dtype="int8"),
        _conv(rng, 8, 8, 3, "fbgemm", stride=2, padding=1, groups=8, sat="on", dtype="int8"),
        _conv(rng, 8, 12, 3, "fbgemm", groups=2, padding=1, dtype="int8"), Flatten()]))
    # the channels-first first layer read a kernel row per word (conv_dsp.row_width): KW = 4 (one
    # word), KW = 7 (two, one byte of padding each) with groups and dilation along H, int8; KW = 3
    # without padding, whose last window is inside but whose last word would pass the end of x
    out.append(("channels-first rows, KW 4", (1, 13, 10), "uint8", [
        _conv(rng, 1, 8, (5, 4), "qnnpack", stride=2, padding=(2, 1)), Flatten()]))
    out.append(("channels-first rows, KW 7, groups 2, int8", (4, 7, 9), "int8", [
        _conv(rng, 4, 6, (3, 7), "tflite", padding=(1, 3), dilation=(2, 1), groups=2, dtype="int8"), Flatten()]))
    out.append(("channels-first rows, KW 3, the end of x", (3, 6, 9), "uint8", [
        _conv(rng, 3, 5, 3, "onednn"), Flatten()]))
    # the depthwise row kernel (conv_dsp.depthwise_rows_body): an odd output width at stride 1
    # and 2, kernel height 5 with dilation 2 along H, odd and wide padding along W (pairs half
    # padding), stride (1, 2), no padding along H, per-tensor zw, int8, 4 channels
    out.append(("depthwise rows", (12, 9, 7), "uint8", [
        _conv(rng, 12, 12, 1, "fbgemm"),
        _conv(rng, 12, 12, 3, "onednn", padding=1, groups=12, relu=True),
        _conv(rng, 12, 12, (5, 3), "qnnpack", stride=(1, 2), padding=(2, 3), dilation=(2, 1), groups=12),
        _conv(rng, 12, 12, 3, "fbgemm", stride=2, padding=(0, 1), groups=12, per_channel=False, zw=-3, sat="off"),
        Flatten()]))
    out.append(("depthwise rows, int8", (4, 6, 5), "int8", [
        _conv(rng, 4, 4, 1, "tflite", dtype="int8"),
        _conv(rng, 4, 4, 3, "tflite", padding=1, groups=4, dtype="int8"),
        _conv(rng, 4, 4, 3, "fbgemm", stride=2, padding=1, groups=4, dtype="int8", sat="off"),
        Flatten()]))
    # FBGEMM's saturating 3x3 depthwise on the row kernel: an odd output width at stride 1 and 2,
    # dilation 2 along H, odd padding along W, stride (2, 1) without padding along H, int8
    out.append(("saturating depthwise rows", (8, 7, 9), "uint8", [
        _conv(rng, 8, 8, 1, "fbgemm"),
        _conv(rng, 8, 8, 3, "fbgemm", padding=1, groups=8, sat="on"),
        _conv(rng, 8, 8, 3, "fbgemm", stride=2, padding=(1, 3), dilation=(2, 1), groups=8, sat="on"),
        Flatten()]))
    out.append(("saturating depthwise rows, int8", (4, 6, 6), "int8", [
        _conv(rng, 4, 4, 1, "fbgemm", dtype="int8"),
        _conv(rng, 4, 4, 3, "fbgemm", stride=(2, 1), padding=(0, 2), groups=4, sat="on", dtype="int8"),
        Flatten()]))
    # the 2x2 SMLAD tile's three forms (conv_dsp.STRAIGHT_MIN / STRAIGHT_BLOCKS): 1 block (C), 81
    # blocks (the assembly loop, an odd count), 2 blocks (C); 3 to 64 blocks run in the cases above
    out.append(("2x2 tile forms", (4, 4, 5), "uint8", [
        _conv(rng, 4, 36, 1, "fbgemm", relu=True),
        _conv(rng, 36, 6, 3, "qnnpack", padding=1),
        _conv(rng, 6, 8, 1, "onednn"), Flatten()]))
    out.append(("1-D", (4, 17), "uint8", [
        _conv(rng, 4, 8, 3, "fbgemm", stride=2, padding=1, dims=1),
        _conv(rng, 8, 8, 3, "onednn", groups=8, padding=1, dims=1),
        AvgPool(3, 1, 1, dims=1, path="nchw", count_include_pad=False), Flatten()]))
    out.append(("pools on the NCHW input", (5, 8, 8), "uint8", [
        AvgPool(3, 2, 1, ceil_mode=True, path="nchw"), MaxPool(2, 1), AvgPool(2, path="qnnpack")]))
    return out


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    rng = np.random.default_rng(7)
    cases, expected = [], {}
    for i, (label, shape, dt, layers) in enumerate(models(rng)):
        m = Model([Quantize(0.05, 128 if dt == "uint8" else 3, dt)] + layers + [Dequantize()])
        gen = export.generate(m, name="c%d" % i, input_shape=shape)
        x = (rng.standard_normal((3,) + shape) * 2).astype(np.float32)
        y = np.asarray(m(x), np.float32)
        assert len(np.unique(y)) > y.size // 4, label       # not saturated to a few values
        cases.append(harness.Case("c%d" % i, gen, x.reshape(3, -1)))
        expected["c%d" % i] = (label, y.reshape(3, -1).view(np.uint32))
    return tmp_path_factory.mktemp("conv"), cases, expected


@pytest.mark.parametrize("target", list(harness.TARGETS))
def test_conv_export_bit_exact(suite, target):
    tmp, cases, expected = suite
    t = harness.TARGETS[target]
    missing = t.missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail("%s: %s missing" % (target, missing))
        pytest.skip("%s: %s missing" % (target, missing))
    exe = harness.build(t, cases, str(tmp / target))
    rc, out, err = harness.run(t, exe, timeout=300)
    res = harness.parse(out, cases)
    bad = {expected[c.name][0]: int(np.sum(res[c.name].y != expected[c.name][1])) for c in cases}
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_conv_model_needs_input_shape():
    rng = np.random.default_rng(1)
    m = Model([Quantize(0.05, 128, "uint8"), _conv(rng, 3, 4, 3, "fbgemm"), Dequantize()])
    with pytest.raises(ValueError, match="input_shape"):
        export.generate(m, name="net")
    with pytest.raises(ValueError, match="input_shape"):
        export.generate(m, name="net", input_shape=(3, 0, 5))


def test_header_states_shapes_and_nchw_output():
    """A model ending on a spatial value: net_run's output is in torch's C, H, W order."""
    rng = np.random.default_rng(2)
    m = Model([Quantize(0.05, 128, "uint8"), _conv(rng, 3, 4, 3, "fbgemm", padding=1), Dequantize()])
    gen = export.generate(m, name="net", input_shape=(3, 5, 6))
    assert "shape [3][5][6] (C, H, W" in gen.header and "shape [4][5][6]" in gen.header
    assert "channels-last -> torch's C, H, W order" in gen.source


def test_hostile_node_names_in_a_cnn(tmp_path):
    """Issue 16's rules hold for the conv / pool C and the layout transposes: node names that end a
    comment, make a trigraph or splice a line, and names that sanitise alike or read like a
    transpose's own ("c_in0_nchw"), compile under C99 and C11 with strict warnings (gcc, and
    arm-none-eabi-gcc with the DSP path), compute fastq's numbers, hold no raw name, and every
    file-scope name of the generated part is declared once."""
    import re
    from fastq.model import Node
    from test_export_hardening import HOSTILE, _expect_c_equals_runtime

    rng = np.random.default_rng(5)
    layers = [Quantize(0.05, 128, "uint8"),
              _conv(rng, 4, 8, 3, "fbgemm", padding=1, relu=True),              # the SMLAD conv arrays
              _conv(rng, 8, 8, 3, "fbgemm", padding=1, groups=8, sat="on"),     # saturating depthwise (DSP)
              _conv(rng, 8, 8, 3, "onednn", padding=1, groups=8),               # depthwise (DSP)
              MaxPool(2), Flatten(), Dequantize()]
    names = HOSTILE[:4] + ["c_in0_nchw", "c"] + HOSTILE[4:5]
    nodes, prev = [], "x"
    for nm, layer in zip(names, layers):
        nodes.append(Node(nm, layer, (prev,)))
        prev = nm
    model = Model(nodes=nodes, inputs=("x",), outputs=(prev,))
    x = (rng.standard_normal((3, 4, 6, 6)) * 2).astype(np.float32)
    gen = _expect_c_equals_runtime(model, x, tmp_path, input_shape=(4, 6, 6))
    text = gen.header + gen.source
    assert "channels-last -> torch's C, H, W order" in gen.source        # the flatten's transpose ran
    for nm in names:
        assert nm not in text or re.fullmatch(r"[a-z0-9_]+", nm)
    assert "??" not in text and not any(re.search(r"[^ -~]", line) for line in text.split("\n"))
    assert "static const int evil" not in re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    generated = gen.source.split("#endif /* FASTQ_EXPORT_RUNTIME */")[1]
    declared = re.findall(r"^#define (\w+)", generated, flags=re.M) + re.findall(
        r"^static (?:const |inline )*\w+ \**(\w+)\s*[\[(]", generated, flags=re.M)
    assert declared and len(declared) == len(set(declared)), sorted(d for d in declared if declared.count(d) > 1)
