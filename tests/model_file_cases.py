"""Models for the model-file tests, built from seeds (also run in the SIGKILL child process and
by the script that wrote tests/data/model_format1.npz with fastq 0.1's Model.save)."""
import itertools

import numpy as np

import fastq
from fastq.layers import Dequantize, Flatten, Identity, Quantize, ReLU, ReLU6

REQUANTS = ("fbgemm", "qnnpack", "tflite")
ROUNDINGS = ("double", "single", "double_up")


def weight(rng, n, k, per_channel):
    values = rng.integers(-128, 128, (n, k)).astype(np.int8)
    if per_channel:
        return fastq.QTensor(values, 10 ** rng.uniform(-3, -1, n), rng.integers(-3, 4, n), axis=0)
    return fastq.QTensor(values, float(10 ** rng.uniform(-3, -1)), int(rng.integers(-3, 4)))


def x_for(rng, shape, scale=1.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    x.reshape(-1)[:4] = [0.5, -0.5, 1e6, -1e6]         # outside any range: clamps
    return x


def static_cases():
    """Quantize(in dtype) -> QuantizedLinear(every option) -> Dequantize, with an input."""
    rng = np.random.default_rng(2026)
    k, n = 24, 10
    cases = []
    combos = itertools.product(REQUANTS, ("uint8", "int8"), ("uint8", "int8"), (False, True),
                               ("float", "none", "int32"), (False, True))
    for i, (requant, in_dt, out_dt, per_channel, bias_kind, pinned) in enumerate(combos):
        if bias_kind == "int32" and requant != "tflite":
            continue
        rounding = ROUNDINGS[i % 3] if requant == "tflite" else "double"
        effective = ("float32", "float64")[(i // 3) % 2] if requant == "tflite" else "float32"
        in_scale = float(10 ** rng.uniform(-2, -0.5))
        in_zp = int(rng.integers(-20, 20)) + (128 if in_dt == "uint8" else 0)
        out_zp = int(rng.integers(-100, 100)) + (128 if out_dt == "uint8" else 0)
        if bias_kind == "float":
            bias = rng.standard_normal(n).astype(np.float32)
        elif bias_kind == "int32":
            bias = rng.integers(-5000, 5000, n).astype(np.int32)
        else:
            bias = None
        layer = fastq.QuantizedLinear(
            weight(rng, n, k, per_channel), bias, float(10 ** rng.uniform(-1.5, 0)), out_zp,
            relu=bool(i % 2), requant=requant, rounding=rounding, dtype=out_dt,
            input_scale=in_scale if pinned else None, input_zero_point=in_zp if pinned else None,
            effective_scale=effective)
        ident = "%s-%s-%s-%s-%s-%s-%s-%s" % (requant, in_dt, out_dt, "pc" if per_channel else "pt",
                                             bias_kind, rounding, effective, "pinned" if pinned else "free")
        model = fastq.Model([Quantize(in_scale, in_zp, in_dt), layer, Dequantize()], names=["quant", "fc", "dequant"])
        cases.append((ident, model, x_for(rng, (7, k))))
    return cases


def dynamic_cases():
    rng = np.random.default_rng(7)
    cases = []
    for mode, reduce_range, per_channel, has_bias in itertools.product(
            ("fbgemm", "qnnpack"), (False, True), (False, True), (False, True)):
        relu = bool(per_channel ^ has_bias)
        layer = fastq.DynamicQuantizedLinear(
            weight(rng, 9, 16, per_channel), rng.standard_normal(9).astype(np.float32) if has_bias else None,
            relu=relu, mode=mode, reduce_range=reduce_range)
        ident = "dynamic-%s-rr%d-%s-%s-relu%d" % (mode, reduce_range, "pc" if per_channel else "pt",
                                                  "bias" if has_bias else "nobias", relu)
        cases.append((ident, fastq.Model([layer]), x_for(rng, (5, 16), 3.0)))
    return cases


def elementwise_cases():
    rng = np.random.default_rng(11)
    cases = []
    for start, end in ((1, -1), (0, -1), (1, 2), (-2, -1), (0, 0)):
        m = fastq.Model([Flatten(start, end), Identity(), ReLU6(), ReLU()])
        cases.append(("flatten-%d-%d" % (start, end), m, x_for(rng, (2, 3, 4, 5), 4.0)))
    for dt, zp in (("uint8", 130), ("int8", -7)):
        m = fastq.Model([Quantize(0.037, zp, dt), ReLU(), ReLU6(), Identity(), Flatten(0, -1), Dequantize()])
        cases.append(("quantized-elementwise-%s" % dt, m, x_for(rng, (3, 4), 4.0)))
    return cases


def conv_cases():
    """Convolutions in every arithmetic, 1-D and 2-D, and the pooling layers (layers/conv.py, pool.py)."""
    from fastq.layers.conv import QuantizedConv
    from fastq.layers.pool import AvgPool, MaxPool
    rng = np.random.default_rng(12)
    w2 = fastq.QTensor(rng.integers(-128, 128, (6, 2, 3, 3)).astype(np.int8), rng.uniform(0.001, 0.05, 6),
                       np.zeros(6, np.int64), axis=0)
    w1 = fastq.QTensor(rng.integers(-128, 128, (4, 4, 3)).astype(np.int8), 0.02, 3)
    dw = fastq.QTensor(rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8), 0.03, -2)
    cases = []
    for arithmetic in ("onednn", "fbgemm", "qnnpack", "tflite"):
        m = fastq.Model([Quantize(0.05, 120), QuantizedConv(w2, rng.standard_normal(6).astype(np.float32), 0.3, 9,
                                                             padding=1, stride=[2, 1], groups=2, relu=True,
                                                             arithmetic=arithmetic),
                         MaxPool(2, ceil_mode=True), AvgPool(3, 1, 1, count_include_pad=False, path="nhwc"),
                         Dequantize()])
        cases.append(("conv2d-%s" % arithmetic, m, x_for(rng, (2, 4, 9, 8), 3.0)))
    m = fastq.Model([Quantize(0.05, 120), QuantizedConv(w1, None, 0.2, 5, dilation=2, padding=2),
                     MaxPool([3], [2], [1], dims=1), AvgPool([2], dims=1, path="qnnpack"), Dequantize()])
    cases.append(("conv1d", m, x_for(rng, (2, 4, 17), 3.0)))
    m = fastq.Model([Quantize(0.05, 120), QuantizedConv(dw, None, 0.4, 5, padding=1, groups=8), Dequantize()])
    cases.append(("depthwise-saturating", m, x_for(rng, (1, 8, 6, 6), 3.0)))
    from fastq.layers.batchnorm import QuantizedBatchNorm
    c = 37                 # a 32-channel vector body and a 5-channel tail
    bn = QuantizedBatchNorm(rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c),
                            rng.uniform(0.1, 2.0, c), 0.07, 100, eps=1e-3, relu=True, vector_block=32)
    m = fastq.Model([Quantize(0.05, 120), bn, Dequantize()])
    cases.append(("batchnorm-relu", m, x_for(rng, (2, c, 4, 3), 3.0)))
    return cases


def all_cases():
    return static_cases() + dynamic_cases() + elementwise_cases() + graph_cases() + conv_cases() + cnn_op_cases()


def cnn_op_cases():
    """The ops of torchvision's mobilenet_v3 / shufflenet_v2: hardswish, hardsigmoid, adaptive
    pooling, squeeze-excitation's broadcasting mul, mean over H, W, chunk and the channel shuffle."""
    from fastq.layers import arith, shape as sh
    from fastq.layers.activation import Hardsigmoid, Hardswish
    from fastq.layers.pool import AdaptiveAvgPool
    from fastq.layers.reduce import MeanHW
    from fastq.model import Node
    rng = np.random.default_rng(13)
    nodes = [
        Node("quant", Quantize(0.05, 120), ["x"], ["q"]),
        Node("hs", Hardswish(0.03, 10, layout="nhwc", vector_block=32), ["q"], ["hs"]),
        Node("pool", AdaptiveAvgPool(1, path="nhwc"), ["hs"], ["p"]),
        Node("sig", Hardsigmoid(path="qnnpack"), ["p"], ["s"]),
        Node("se", arith.QuantizedMul(0.03, 12), ["s", "hs"], ["se"]),
        Node("half", sh.Chunk(2, 1, 1), ["se"], ["h"]),
        Node("n", sh.Size(0), ["h"], ["n"]),
        Node("c", sh.Size(1), ["h"], ["c"]),
        Node("g", sh.FloorDiv(2), ["c"], ["g"]),
        Node("view", sh.Reshape([None, 2, None, 6, 6]), ["h", "n", "g"], ["v"]),
        Node("t", sh.Transpose(1, 2), ["v"], ["t"]),
        Node("ct", sh.Contiguous(), ["t"], ["ct"]),
        Node("back", sh.Reshape([None, 8, 6, 6]), ["ct", "n"], ["b"]),
        Node("mean", MeanHW(path="nhwc"), ["b"], ["m"]),
        Node("mean2", MeanHW(True), ["b"], ["m2"]),
        Node("dq", Dequantize(), ["m"], ["y"]),
        Node("dq2", Dequantize(), ["m2"], ["y2"]),
    ]
    model = fastq.Model(nodes=nodes, inputs=["x"], outputs=["y", "y2"])
    return [("cnn-ops", model, x_for(rng, (2, 16, 6, 6), 3.0))]


def format1_model():
    """What fastq 0.1 could save: tests/data/model_format1.npz holds this model."""
    rng = np.random.default_rng(1)
    fc1 = fastq.QuantizedLinear(weight(rng, 12, 8, True), rng.standard_normal(12).astype(np.float32),
                                0.05, 120, relu=True, requant="fbgemm")
    fc2 = fastq.QuantizedLinear(weight(rng, 6, 12, False), rng.integers(-300, 300, 6).astype(np.int32),
                                0.04, 3, requant="tflite", rounding="single")
    dyn = fastq.DynamicQuantizedLinear(weight(rng, 4, 6, True), rng.standard_normal(4).astype(np.float32),
                                       relu=False, mode="qnnpack", reduce_range=False)
    return fastq.Model([Flatten(1, -1), Quantize(0.03, 128), fc1, ReLU(), fc2, ReLU6(), Dequantize(), dyn],
                       names=["flat", "quant", "fc1", "relu", "fc2", "relu6", "dequant", "dyn"])


def big_model(seed, n=1024, k=2048):
    """A model whose file is a few MB, so that a save takes long enough to be killed inside."""
    rng = np.random.default_rng(seed)
    fc = fastq.QuantizedLinear(weight(rng, n, k, True), rng.standard_normal(n).astype(np.float32),
                               0.1, 128, requant="fbgemm")
    return fastq.Model([Quantize(0.02, 128), fc, Dequantize()])


def format2_model():
    """What the first settings-as-data main could save (tests/data/model_format2.npz): every
    setting, int8 outputs and effective_scale="float64" included."""
    rng = np.random.default_rng(2)
    fc3 = fastq.QuantizedLinear(weight(rng, 5, 4, True), rng.integers(-300, 300, 5).astype(np.int32),
                                0.03, -7, requant="tflite", rounding="double_up", dtype="int8",
                                effective_scale="float64", input_scale=0.02, input_zero_point=-3)
    m = format1_model()
    return fastq.Model(list(m) + [Quantize(0.02, -3, "int8"), fc3, Dequantize()],
                       names=list(m.names) + ["quant2", "fc3", "dequant2"])


def graph_cases():
    """Hand-built graphs with every graph op (several inputs, an int-valued size, a tuple
    getitem, several model outputs), quantized uint8 and int8 and float paths."""
    from fastq.layers import arith, shape as sh
    from fastq.layers.elementwise import Hardtanh
    from fastq.model import Node
    cases = []
    for dt, zp in (("uint8", 128), ("int8", 0)):
        rng = np.random.default_rng(31 if dt == "uint8" else 32)
        off = 0 if dt == "uint8" else -128
        fc1 = fastq.QuantizedLinear(weight(rng, 16, 24, True), rng.standard_normal(16).astype(np.float32),
                                    0.08, 120 + off, dtype=dt)
        fc2 = fastq.QuantizedLinear(weight(rng, 16, 24, False), None, 0.07, 128 + off,
                                    requant="qnnpack", dtype=dt)
        dyn = fastq.DynamicQuantizedLinear(weight(rng, 5, 144, True), rng.standard_normal(5).astype(np.float32))
        nodes = [
            Node("quant", Quantize(0.05, zp, dt), ["x"], ["q"]),
            Node("t", sh.Transpose(1, 2), ["q"], ["t"]),
            Node("c", sh.Contiguous(), ["t"], ["c"]),
            Node("p", sh.Permute([0, 2, 1]), ["c"], ["p"]),
            Node("n", sh.Size(0), ["p"], ["n"]),
            Node("view", sh.Reshape([None, -1]), ["p", "n"], ["f"]),
            Node("fc1", fc1, ["f"], ["a"]),
            Node("fc2", fc2, ["f"], ["b"]),
            Node("add", arith.QuantizedAdd(0.1, 120 + off, relu=True, vector_block=32, torch_threads=2),
                 ["a", "b"], ["s"]),
            Node("add_q", arith.QuantizedAdd(0.1, 125 + off, arithmetic="qnnpack"), ["a", "b"], ["s2"]),
            Node("mul", arith.QuantizedMul(0.2, 100 + off, relu=dt == "int8"), ["a", "b"], ["m"]),
            Node("cat", arith.QuantizedCat(0.15, 110 + off, dim=1), ["s", "m", "s2"], ["k"]),
            Node("adds", arith.QuantizedAddScalar(0.5), ["k"], ["k1"]),
            Node("muls", arith.QuantizedMulScalar(2.0), ["k1"], ["k2"]),
            Node("ht", Hardtanh(-0.5, 1.5), ["k2"], ["h"]),
            Node("relu6", ReLU6(), ["h"], ["h6"]),
            Node("u", sh.Unsqueeze(1), ["h6"], ["u"]),
            Node("sq", sh.Squeeze(1), ["u"], ["sq"]),
            Node("sq_all", sh.Squeeze(), ["sq"], ["sq2"]),
            Node("dq", Dequantize(), ["sq2"], ["d"]),
            Node("fadd", arith.Add(relu=True), ["d", "d"], ["e"]),
            Node("fmul", arith.Mul(), ["d", "e"], ["g"]),
            Node("fadds", arith.AddScalar(1.0), ["g"], ["g1"]),
            Node("fmuls", arith.MulScalar(0.5), ["g1"], ["g2"]),
            Node("fcat", arith.Cat(dim=1), ["g2", "d", "d"], ["y"]),
            Node("shape", sh.Size(), ["y"], ["shp"]),
            Node("item", sh.GetItem(1), ["shp"], ["w"]),
            Node("dyn", dyn, ["y"], ["z"]),
        ]
        model = fastq.Model(nodes=nodes, inputs=["x"], outputs=["z", "y", "w"])
        cases.append(("graph-%s" % dt, model, x_for(rng, (6, 4, 6), 2.0)))
    return cases
