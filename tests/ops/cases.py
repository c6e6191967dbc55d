"""Each registered op's conformance cases: small constructed models and inputs, near ties
included. CASES[op name]() -> [Case]; tests/ops/test_conformance.py runs every check on each.

A case's model has one float input [S, ...] (what the C export takes); `exports` False means the
op refuses the C export of this model (its NotImplementedError is checked instead); `torch`
builds the torch module whose converted form the importer row compares (None: no torch row)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

import fastq
from fastq import layers as L
from fastq.layers import arith as A, elementwise as E, shape as S
from fastq.model import Model, Node

f32 = np.float32


@dataclass
class Case:
    label: str
    model: Model
    x: np.ndarray
    exports: bool = True
    torch: Optional[Callable] = None     # () -> (torch module, engine)


def _x(seed, shape, lo=-8.0, hi=8.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _ties(scale, zero_point, n):
    """Floats whose x / scale + zero_point sit on half steps (quantize's rounding ties)."""
    k = np.arange(n) - n // 2
    return ((k + 0.5) * np.float32(scale)).astype(np.float32)


def _chain(*layers):
    return Model(list(layers))


def _graph(nodes, out):
    return Model(nodes=nodes, inputs=("x",), outputs=(out,))


def _weight(seed, n, k, per_channel=False):
    rng = np.random.default_rng(seed)
    v = rng.integers(-128, 128, (n, k)).astype(np.int8)
    if per_channel:
        return fastq.QTensor(v, rng.uniform(0.005, 0.02, n), rng.integers(-3, 4, n), axis=0)
    return fastq.QTensor(v, 0.0113, 0)


def _pair(op, s1=0.05, z1=120, s2=0.07, z2=100, dtype="uint8"):
    """a = quantize(x), b = quantize(-1.3 x) with other qparams; op(a, b); dequantized."""
    return _graph([Node("qa", L.Quantize(s1, z1, dtype), ("x",)), Node("neg", A.MulScalar(-1.3), ("x",)),
                   Node("qb", L.Quantize(s2, z2, dtype), ("neg",)), Node("op", op, ("qa", "qb")),
                   Node("dq", L.Dequantize(), ("op",))], "dq")


# ---------------------------------------------------------------------------- torch rows
def _torch_seq(*mods, engine="x86"):
    def build():
        import torch.nn as nn
        return nn.Sequential(*[m() for m in mods]), engine
    return build


def _tq(scale, zp, dtype="quint8"):
    def make():
        import torch
        from torch.ao.nn import quantized as nnq
        return nnq.Quantize(scale, zp, getattr(torch, dtype))
    return make


def _tdq():
    from torch.ao.nn import quantized as nnq
    return nnq.DeQuantize()


def _tmod(name, *args):
    def make():
        import torch.nn as nn
        return getattr(nn, name)(*args)
    return make


# ---------------------------------------------------------------------------- the near ties
def clamp_tie_pairs():
    """(scale, zero point) with scale next to a half step of 6: for z in 0, 7, ..., 98 and k in
    z + 10 ... 254, s = f32(6 / (k + 0.5 - z)) and its three float32 neighbours each side."""
    out = set()
    for z in range(0, 99, 7):
        for k in range(z + 10, 255):
            s = f32(6 / (k + 0.5 - z))
            for d in range(-3, 4):
                v = s
                for _ in range(abs(d)):
                    v = np.nextafter(v, f32(np.inf) if d > 0 else f32(0))
                out.add((float(v), z))
    return sorted(out)


def parting_pairs():
    """The pairs whose bound differs between torch's quantize_val (no fma) and the fma form of
    quantize_per_tensor (the old exporter's formula)."""
    from fastq import reference as R
    return [(s, z) for s, z in clamp_tie_pairs()
            if int(R.quantize_val(f32(6), s, z, "uint8")) != int(R.quantize_per_tensor(f32(6), s, z, "uint8"))]


def _tie_sweep(make_clamp, pairs):
    """One model: for each pair a Quantize -> clamp -> Dequantize branch of the input, all
    branches concatenated (one C program checks every pair)."""
    nodes, outs = [], []
    for i, (s, z) in enumerate(pairs):
        nodes += [Node("q%d" % i, L.Quantize(s, z), ("x",)), Node("c%d" % i, make_clamp(), ("q%d" % i,)),
                  Node("d%d" % i, L.Dequantize(), ("c%d" % i,))]
        outs.append("d%d" % i)
    nodes.append(Node("cat", A.Cat(-1), tuple(outs)))
    return _graph(nodes, "cat")


_TIE_X = np.array([[20.0], [6.0], [5.999], [0.0], [-1.0]], np.float32)


def _clamp_cases(name, make, torch_mod):
    pairs = parting_pairs()
    others = [p for p in clamp_tie_pairs()[::400] if p not in set(pairs)]
    return [
        Case("%s uint8" % name, _chain(L.Quantize(0.05, 128), make(), L.Dequantize()), _x(1, (4, 33)),
             torch=_torch_seq(_tq(0.05, 128), torch_mod, _tdq)),
        Case("%s int8" % name, _chain(L.Quantize(0.04, -7, "int8"), make(), L.Dequantize()), _x(2, (3, 17)),
             torch=_torch_seq(_tq(0.04, -7, "qint8"), torch_mod, _tdq)),
        Case("%s float" % name, _chain(make()), _x(3, (2, 9)), torch=_torch_seq(torch_mod)),
        Case("%s issue 15" % name, _chain(L.Quantize(0.5217390656471252, 7), make(), L.Dequantize()),
             np.array([[20.0, 6.0, 3.0]], np.float32), torch=_torch_seq(_tq(0.5217390656471252, 7), torch_mod, _tdq)),
        Case("%s parting pairs" % name, _tie_sweep(make, pairs), _TIE_X),
        Case("%s other tie pairs" % name, _tie_sweep(make, others), _TIE_X),
    ]


# ---------------------------------------------------------------------------- per op
def _quantize():
    return [Case("uint8 ties", _chain(L.Quantize(0.05, 3), L.Dequantize()), _ties(0.05, 3, 40).reshape(4, 10),
                 torch=_torch_seq(_tq(0.05, 3), _tdq)),
            Case("int8 saturating", _chain(L.Quantize(0.02, -100, "int8"), L.Dequantize()), _x(4, (3, 8), -9, 9),
                 torch=_torch_seq(_tq(0.02, -100, "qint8"), _tdq))]


def _identity():
    return [Case("quantized", _chain(L.Quantize(0.1, 9), L.Identity(), L.Dequantize()), _x(5, (2, 6)),
                 torch=_torch_seq(_tq(0.1, 9), _tmod("Identity"), _tdq)),
            Case("float", _chain(L.Identity()), _x(6, (2, 5)))]


def _relu():
    return [Case("uint8", _chain(L.Quantize(0.05, 128), L.ReLU(), L.Dequantize()), _x(7, (3, 11)),
                 torch=_torch_seq(_tq(0.05, 128), _tmod("ReLU"), _tdq)),
            Case("int8", _chain(L.Quantize(0.05, -5, "int8"), L.ReLU(), L.Dequantize()), _x(8, (3, 11)),
                 torch=_torch_seq(_tq(0.05, -5, "qint8"), _tmod("ReLU"), _tdq)),
            Case("float", _chain(L.ReLU()), _x(9, (2, 7)), torch=_torch_seq(_tmod("ReLU")))]


def _flatten():
    return [Case("quantized 3-d", _chain(L.Quantize(0.1, 100), L.Flatten(), L.Dequantize()), _x(10, (2, 3, 4)),
                 torch=_torch_seq(_tq(0.1, 100), _tmod("Flatten"), _tdq)),
            Case("float, into a Linear", _chain(L.Flatten(), fastq.DynamicQuantizedLinear(_weight(11, 3, 6))),
                 _x(12, (2, 2, 3)))]


def _linear():
    out = []
    for i, (mode, xd, yd, pc) in enumerate([("fbgemm", "uint8", "uint8", False), ("fbgemm", "int8", "int8", True),
                                            ("qnnpack", "uint8", "uint8", True), ("tflite", "uint8", "uint8", False),
                                            ("tflite", "int8", "int8", True)]):
        w = _weight(20 + i, 5, 12, pc)
        bias = np.random.default_rng(30 + i).uniform(-1, 1, 5)
        zx = 7 if xd == "uint8" else -3
        lin = fastq.QuantizedLinear(w, bias, 0.21, 3 if yd == "uint8" else -2, relu=i % 2 == 1, requant=mode,
                                    dtype=yd)
        out.append(Case("%s %s->%s%s" % (mode, xd, yd, " per-channel" if pc else ""),
                        _chain(L.Quantize(0.06, zx, xd), lin, L.Dequantize()), _x(40 + i, (3, 12), -4, 4)))
    return out


def _dynamic():
    return [Case("%s" % mode, _chain(fastq.DynamicQuantizedLinear(_weight(50, 4, 9, mode == "qnnpack"),
                                                                  np.linspace(-1, 1, 4), mode=mode, relu=relu)),
                 _x(51, (3, 9)))
            for mode, relu in (("fbgemm", False), ("qnnpack", True))]


def _qadd():
    return [Case("fbgemm body and tail", _pair(A.QuantizedAdd(0.09, 110)), _x(60, (2, 70))),
            Case("fbgemm relu, int8", _pair(A.QuantizedAdd(0.08, -20, relu=True), z1=10, z2=-5, dtype="int8"),
                 _x(61, (2, 19))),
            Case("qnnpack", _pair(A.QuantizedAdd(0.1, 120, arithmetic="qnnpack")), _x(62, (2, 21))),
            Case("qnnpack relu", _pair(A.QuantizedAdd(0.1, 100, relu=True, arithmetic="qnnpack")), _x(63, (2, 9)))]


def _qmul():
    return [Case("uint8", _pair(A.QuantizedMul(0.3, 128)), _x(64, (2, 15), -3, 3)),
            Case("int8 relu", _pair(A.QuantizedMul(0.3, 0, relu=True), z1=0, z2=3, dtype="int8"), _x(65, (2, 15), -3, 3)),
            Case("broadcast [C, 1, 1] by [C, H, W] (squeeze-excitation)", _graph(
                [Node("q", L.Quantize(0.05, 120), ("x",)), Node("p", L.pool.AdaptiveAvgPool(1), ("q",)),
                 Node("op", A.QuantizedMul(0.04, 110), ("p", "q")), Node("dq", L.Dequantize(), ("op",))], "dq"),
                 _x(66, (2, 7, 5, 4), -3, 3))]


def _qscalar(cls, values):
    return [Case("value %r" % v, _chain(L.Quantize(0.05, 100), cls(v), L.Dequantize()), _x(66 + i, (2, 13), -5, 5))
            for i, v in enumerate(values)]


def _qcat():
    return [Case("two qparams", _graph([Node("qa", L.Quantize(0.05, 120), ("x",)), Node("qb", L.Quantize(0.11, 30), ("x",)),
                                        Node("cat", A.QuantizedCat(0.08, 90, dim=-1), ("qa", "qb")),
                                        Node("dq", L.Dequantize(), ("cat",))], "dq"), _x(70, (2, 6)))]


def _cat_axes():
    """Cat of 3-d samples [S, 2, 3] along each axis: 1 and 2 (and -1, -2), quantized with two
    qparams and float; the batch axis (0) refused."""
    out = []
    for dim in (1, 2, -1, -2):
        q = _graph([Node("r", S.Reshape([-1, 2, 3]), ("x",)), Node("qa", L.Quantize(0.05, 120), ("r",)),
                    Node("neg", A.MulScalar(-1.3), ("r",)), Node("qb", L.Quantize(0.11, 30), ("neg",)),
                    Node("ub", S.Unsqueeze(-1), ("qb",)), Node("sb", S.Squeeze(-1), ("ub",)),
                    Node("cat", A.Cat(dim), ("qa", "sb")), Node("dq", L.Dequantize(), ("cat",))], "dq")
        out.append(Case("quantized, 3-d, dim %d" % dim, q, _x(90 + dim, (3, 6))))
        f = _graph([Node("r", S.Reshape([-1, 2, 3]), ("x",)), Node("neg", A.MulScalar(-0.7), ("r",)),
                    Node("t", S.Transpose(1, 2), ("neg",)), Node("t2", S.Transpose(1, 2), ("t",)),
                    Node("cat", A.Cat(dim), ("r", "t2", "r"))], "cat")
        out.append(Case("float, 3 inputs, dim %d" % dim, f, _x(95 + dim, (2, 6))))
    out.append(Case("the issue's cat of unsqueezed values, flattened", _graph(
        [Node("qa", L.Quantize(0.05, 120), ("x",)), Node("neg", A.MulScalar(-1.3), ("x",)),
         Node("qb", L.Quantize(0.07, 100), ("neg",)), Node("ua", S.Unsqueeze(-1), ("qa",)),
         Node("ub", S.Unsqueeze(-1), ("qb",)), Node("cat", A.Cat(-1), ("ua", "ub")), Node("fl", L.Flatten(1), ("cat",)),
         Node("dq", L.Dequantize(), ("fl",))], "dq"), _x(99, (8, 5))))
    out.append(Case("along the batch: refused", _graph(
        [Node("neg", A.MulScalar(-0.7), ("x",)), Node("cat", A.Cat(0), ("x", "neg"))], "cat"), _x(100, (2, 4)),
        exports=False))
    return out


def _broadcast(op):
    """Float a [S, 4, 1] (op) b [S, 1, 4] -> [S, 4, 4], and [S, 1, 3, 4] (op) [S, 2, 3, 4]."""
    g = _graph([Node("a", S.Reshape([-1, 4, 1]), ("x",)), Node("neg", A.MulScalar(-0.7), ("x",)),
                Node("b", S.Reshape([-1, 1, 4]), ("neg",)), Node("op", op(), ("a", "b")), Node("fl", L.Flatten(), ("op",))],
               "fl")
    m = _graph([Node("neg", A.MulScalar(-0.7), ("x",)), Node("c", A.Cat(1), ("x", "neg")),
                Node("a", S.Reshape([-1, 1, 3, 4]), ("x",)), Node("bb", S.Reshape([-1, 2, 3, 4]), ("c",)),
                Node("op", op(), ("a", "bb")), Node("fl", L.Flatten(), ("op",))], "fl")
    return [Case("[4, 1] with [1, 4]", g, _x(101, (3, 4))),
            Case("[1, 3, 4] with [2, 3, 4]", m, _x(102, (2, 12)))]


def _transpose():
    return [_view_case("inside a sample", [S.Reshape([-1, 2, 3]), S.Transpose(1, 2)], _x(86, (2, 6))),
            _view_case("3-d, dims 1 and 3", [S.Reshape([-1, 2, 3, 4]), S.Transpose(1, 3)], _x(103, (2, 24))),
            _view_case("only a dimension of size 1 moves: a view", [S.Reshape([-1, 1, 5]), S.Transpose(1, 2)],
                       _x(104, (2, 5))),
            Case("float, negative dims", _chain(S.Reshape([-1, 3, 2]), S.Transpose(-1, -2)), _x(105, (2, 6))),
            _view_case("moves the batch: refused", [S.Reshape([-1, 2, 3]), S.Transpose(0, 1)], _x(106, (2, 6)),
                       exports=False)]


def _permute():
    return [_view_case("inside a sample", [S.Reshape([-1, 2, 3]), S.Permute([0, 2, 1])], _x(87, (2, 6))),
            _view_case("3-d cycle", [S.Reshape([-1, 2, 3, 4]), S.Permute([0, 3, 1, 2])], _x(107, (2, 24))),
            Case("float, 4-d", _chain(S.Reshape([-1, 2, 1, 3, 2]), S.Permute([0, 4, 2, 1, 3])), _x(108, (2, 12))),
            _view_case("moves the batch: refused", [S.Reshape([-1, 2, 3]), S.Permute([1, 0, 2])], _x(109, (2, 6)),
                       exports=False)]


def _float_pair(op):
    return _graph([Node("neg", A.MulScalar(-0.7), ("x",)), Node("op", op, ("x", "neg"))], "op")


def _cat():
    return [Case("float", _graph([Node("neg", A.MulScalar(-0.7), ("x",)), Node("cat", A.Cat(1), ("x", "neg"))], "cat"),
                 _x(71, (2, 5))),
            Case("quantized (first input's qparams)",
                 _graph([Node("qa", L.Quantize(0.05, 120), ("x",)), Node("qb", L.Quantize(0.11, 30), ("x",)),
                         Node("cat", A.Cat(-1), ("qa", "qb")), Node("dq", L.Dequantize(), ("cat",))], "dq"),
                 _x(72, (2, 6)))]


def _view_case(label, layers, x, exports=True):
    return Case(label, _chain(L.Quantize(0.1, 100), *layers, L.Dequantize()), x, exports=exports)


def _reshape():
    g = _graph([Node("q", L.Quantize(0.1, 100), ("x",)), Node("n", S.Size(0), ("q",)),
                Node("view", S.Reshape([None, -1]), ("q", "n")), Node("dq", L.Dequantize(), ("view",))], "dq")
    return [Case("view(x.size(0), -1)", g, _x(80, (2, 3, 4))),
            _view_case("fixed", [S.Reshape([-1, 4])], _x(81, (3, 4)))]


def _size():
    return _reshape()[:1] + [Case("size() then [0]", _graph(
        [Node("q", L.Quantize(0.1, 100), ("x",)), Node("s", S.Size(), ("q",)), Node("b", S.GetItem(0), ("s",)),
         Node("view", S.Reshape([None, -1]), ("q", "b")), Node("dq", L.Dequantize(), ("view",))], "dq"), _x(82, (2, 6)))]


def _pool_act(label, layer, shape, seed):
    from fastq.layers import activation, pool, reduce  # noqa: F401
    return Case(label, _chain(L.Quantize(0.05, 120), layer, L.Dequantize()), _x(seed, shape, -6.0, 6.0))


CASES = {
    "AdaptiveAvgPool": lambda: [_pool_act("nchw 5x7->2x3", L.pool.AdaptiveAvgPool((2, 3)), (2, 20, 5, 7), 90),
                                _pool_act("nhwc tail", L.pool.AdaptiveAvgPool(1, path="nhwc"), (2, 20, 4, 4), 91),
                                _pool_act("qnnpack", L.pool.AdaptiveAvgPool(2, path="qnnpack"), (2, 3, 4, 6), 92)],
    "Hardswish": lambda: [_pool_act("vector + tail", L.activation.Hardswish(0.03, 10, layout="nhwc"), (2, 20, 3, 3), 93),
                          _pool_act("qnnpack", L.activation.Hardswish(0.03, 10, path="qnnpack"), (2, 5, 3, 3), 94)],
    "Hardsigmoid": lambda: [_pool_act("vector + tail", L.activation.Hardsigmoid(layout="nhwc"), (2, 20, 3, 3), 95),
                            _pool_act("qnnpack", L.activation.Hardsigmoid(path="qnnpack"), (2, 5, 3, 3), 96),
                            _pool_act("nchw, 32-element vectors", L.activation.Hardsigmoid(vector_block=32),
                                      (2, 7, 5, 5), 97)],
    "MeanHW": lambda: [_pool_act("nchw", L.reduce.MeanHW(), (2, 20, 5, 7), 98),
                       _pool_act("nhwc, keepdim", L.reduce.MeanHW(True, path="nhwc"), (2, 37, 4, 6), 99),
                       _pool_act("qnnpack", L.reduce.MeanHW(path="qnnpack"), (2, 3, 4, 6), 100)],
    "FloorDiv": lambda: [Case("view(n, size(1) // 2, -1)", _graph(
        [Node("q", L.Quantize(0.1, 100), ("x",)), Node("n", S.Size(0), ("q",)), Node("c", S.Size(1), ("q",)),
         Node("g", S.FloorDiv(2), ("c",)), Node("view", S.Reshape([None, None, -1]), ("q", "n", "g")),
         Node("dq", L.Dequantize(), ("view",))], "dq"), _x(101, (2, 6, 3)))],
    "Chunk": lambda: [_view_case("3 of 7 on dim 1, piece 2", [S.Chunk(3, 1, 2)], _x(102, (2, 7, 3))),
                      _view_case("2 on dim -1, piece 0", [S.Chunk(2, -1, 0)], _x(103, (2, 3, 6)))],
    "Quantize": _quantize,
    "Dequantize": _quantize,
    "Identity": _identity,
    "ReLU": _relu,
    "ReLU6": lambda: _clamp_cases("ReLU6", L.ReLU6, _tmod("ReLU6")),
    "Hardtanh": lambda: _clamp_cases("Hardtanh(0, 6)", lambda: E.Hardtanh(0.0, 6.0), _tmod("Hardtanh", 0.0, 6.0)) + [
        Case("Hardtanh(-1, 1)", _chain(L.Quantize(0.013, 77), E.Hardtanh(), L.Dequantize()), _x(13, (3, 10), -2, 2),
             torch=_torch_seq(_tq(0.013, 77), _tmod("Hardtanh"), _tdq))],
    "Flatten": _flatten,
    "QuantizedLinear": _linear,
    "DynamicQuantizedLinear": _dynamic,
    "QuantizedAdd": _qadd,
    "QuantizedMul": _qmul,
    "QuantizedAddScalar": lambda: _qscalar(A.QuantizedAddScalar, (0.5, -1.25, 3.0)),
    "QuantizedMulScalar": lambda: _qscalar(A.QuantizedMulScalar, (2.0, 0.0, -1.5)),
    "QuantizedCat": _qcat,
    "Add": lambda: [Case("float", _float_pair(A.Add()), _x(73, (2, 8))),
                    Case("float relu", _float_pair(A.Add(relu=True)), _x(74, (2, 8)))] + _broadcast(A.Add) + [
        Case("broadcast, relu", _broadcast(lambda: A.Add(relu=True))[0].model, _x(110, (2, 4)))],
    "Mul": lambda: [Case("float", _float_pair(A.Mul()), _x(75, (2, 8)))] + _broadcast(A.Mul),
    "AddScalar": lambda: [Case("float", _chain(A.AddScalar(0.1)), _x(76, (2, 8)))],
    "MulScalar": lambda: [Case("float", _chain(A.MulScalar(-0.3)), _x(77, (2, 8)))],
    "Cat": lambda: _cat() + _cat_axes(),
    "Reshape": _reshape,
    "Squeeze": lambda: [_view_case("dim 1", [S.Unsqueeze(1), S.Squeeze(1)], _x(83, (2, 5))),
                        _view_case("all", [S.Unsqueeze(1), S.Squeeze()], _x(84, (2, 5)))],
    "Unsqueeze": lambda: [_view_case("dim -1", [S.Unsqueeze(-1)], _x(85, (2, 5)))],
    "Transpose": _transpose,
    "Permute": _permute,
    "Contiguous": lambda: [_view_case("flat", [S.Contiguous()], _x(88, (2, 5)))],
    "Size": _size,
    "GetItem": lambda: _size()[1:],
}

# the convolution and pooling ops' cases live beside (one concern per file)
from cases_conv import CASES as _CONV_CASES  # noqa: E402
CASES.update(_CONV_CASES)
