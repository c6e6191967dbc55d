"""Conformance cases of the convolution and pooling ops (QuantizedConv, MaxPool, AvgPool):
each arithmetic, 1-D and 2-D, groups, depthwise with and without FBGEMM's saturation,
per-channel, fused ReLU, uint8 and int8, and constructed near ties (requantization halves in
every arithmetic, average-pool .5 means). Inputs are [S, C, H, W] floats (the model quantizes)."""
from __future__ import annotations

import numpy as np

import fastq
from fastq import layers as L
from fastq.layers.conv import QuantizedConv
from fastq.layers.pool import AvgPool, MaxPool
from fastq.model import Model

f32 = np.float32


def _case():
    from cases import Case      # tests/ops/cases.py (imports this module at its end)
    return Case


def _chain(*layers):
    return Model(list(layers))


def _x(seed, shape, lo=-4.0, hi=4.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _grid(seed, shape, scale, zero_point, dtype="uint8"):
    """Floats that quantize exactly to random integers of the dtype (k - zp) * scale, scale a
    power of two: the integers are chosen, not rounded (constructed ties need that)."""
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    k = np.random.default_rng(seed).integers(lo, hi, shape)
    return ((k - zero_point) * scale).astype(np.float32)


def _w(seed, shape, per_channel, symmetric=True, lo=-128, hi=128, scale=None):
    rng = np.random.default_rng(seed)
    v = rng.integers(lo, hi, shape).astype(np.int8)
    o = shape[0]
    if per_channel:
        s = rng.uniform(0.003, 0.03, o) if scale is None else np.full(o, scale)
        z = np.zeros(o, np.int64) if symmetric else rng.integers(-4, 5, o)
        return fastq.QTensor(v, s, z, axis=0)
    return fastq.QTensor(v, 0.011 if scale is None else scale, 0 if symmetric else 3)


def _conv_model(conv, xs=0.05, xz=100, xd="uint8"):
    return _chain(L.Quantize(xs, xz, xd), conv, L.Dequantize())


# ---------------------------------------------------------------------------- torch rows
def _torch_conv(engine, cin, cout, k, dims=2, relu=False, groups=1, stride=1, padding=0, dilation=1,
                per_channel=True, symmetric=True, seed=0, xs=0.05, xz=100):
    """Quantize -> torch nnq.Conv (packed under `engine`) -> DeQuantize."""
    def build():
        import torch
        import torch.nn as nn
        from torch.ao.nn import intrinsic as _  # noqa: F401
        import torch.ao.nn.intrinsic.quantized as nniq
        from torch.ao.nn import quantized as nnq
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            cls = {(1, False): nnq.Conv1d, (1, True): nniq.ConvReLU1d,
                   (2, False): nnq.Conv2d, (2, True): nniq.ConvReLU2d}[(dims, relu)]
            m = cls(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
            rng = np.random.default_rng(seed)
            ks = (k,) * dims
            w_int = rng.integers(-128, 128, (cout, cin // groups) + ks)
            bshape = (-1,) + (1,) * (dims + 1)
            if per_channel:
                sc = torch.from_numpy(rng.uniform(2e-3, 0.03, cout).astype(f32).astype(np.float64))
                zp = torch.zeros(cout, dtype=torch.long) if symmetric else torch.from_numpy(rng.integers(-4, 5, cout))
                w = (torch.from_numpy(w_int).double() - zp.reshape(bshape)) * sc.reshape(bshape)
                wq = torch.quantize_per_channel(w.float(), sc, zp, 0, torch.qint8)
            else:
                s, z = 0.0078125, (0 if symmetric else 3)
                wq = torch.quantize_per_tensor(torch.from_numpy(((w_int - z) * s).astype(f32)), s, z, torch.qint8)
            m.set_weight_bias(wq, torch.from_numpy(rng.standard_normal(cout).astype(f32)))
            m.scale, m.zero_point = float(f32(rng.uniform(0.05, 0.2))), int(rng.integers(20, 200))
            seq = nn.Sequential(nnq.Quantize(xs, xz, torch.quint8), m, nnq.DeQuantize())
        finally:
            torch.backends.quantized.engine = old
        return seq, engine
    return build


def _torch_pool(name, *args, engine="x86", xs=0.05, xz=100, dtype="quint8", **kw):
    def build():
        import torch
        import torch.nn as nn
        from torch.ao.nn import quantized as nnq
        return nn.Sequential(nnq.Quantize(xs, xz, getattr(torch, dtype)), getattr(nn, name)(*args, **kw),
                             nnq.DeQuantize()), engine
    return build


# ---------------------------------------------------------------------------- QuantizedConv
def conv_cases():
    Case = _case()
    out = []
    bias4 = np.linspace(-1.5, 2.0, 4)
    for i, (ar, xd, yd, pc) in enumerate([("fbgemm", "uint8", "uint8", False), ("fbgemm", "int8", "int8", True),
                                          ("onednn", "uint8", "uint8", True), ("onednn", "uint8", "int8", False),
                                          ("qnnpack", "uint8", "uint8", True), ("qnnpack", "uint8", "uint8", False),
                                          ("tflite", "int8", "int8", True), ("tflite", "uint8", "uint8", False)]):
        relu = i % 3 == 1
        conv = QuantizedConv(_w(200 + i, (4, 3, 3, 3), pc, symmetric=ar == "onednn" or i % 2 == 0), bias4,
                             0.09, 5 if yd == "uint8" else -3, stride=(1, 2) if i % 2 else 1, padding=1, relu=relu,
                             arithmetic=ar, dtype=yd)
        out.append(Case("2-d %s %s->%s%s%s" % (ar, xd, yd, " per-channel" if pc else "", " relu" if relu else ""),
                        _conv_model(conv, 0.05, 100 if xd == "uint8" else -9, xd), _x(210 + i, (2, 3, 6, 7))))
    # 1-D: stride, dilation, groups, no bias
    out.append(Case("1-d fbgemm stride 2 dilation 2 groups 2", _conv_model(QuantizedConv(
        _w(220, (6, 2, 3), True, symmetric=False), None, 0.12, 90, stride=2, padding=2, dilation=2, groups=2)),
        _x(221, (3, 4, 17))))
    out.append(Case("1-d tflite int8, int32 bias, rounding single", _conv_model(QuantizedConv(
        _w(222, (5, 3, 4), True), np.arange(-200, 300, 100, dtype=np.int32), 0.1, 4, padding=1, arithmetic="tflite",
        dtype="int8", rounding="single"), 0.04, 2, "int8"), _x(223, (2, 3, 12))))
    out.append(Case("2-d qnnpack groups 2 dilation 2, non-square kernel", _conv_model(QuantizedConv(
        _w(224, (6, 2, 2, 3), True, symmetric=False), np.linspace(-1, 1, 6), 0.15, 128, padding=(1, 2),
        dilation=2, groups=2, arithmetic="qnnpack")), _x(225, (2, 4, 7, 8))))
    # depthwise: FBGEMM's fast path saturates its int16 pairs (large raw inputs and weights)
    wd = fastq.QTensor(np.where(np.random.default_rng(230).random((16, 1, 3, 3)) < 0.5, 127, -128).astype(np.int8),
                       np.full(16, 0.002), np.zeros(16, np.int64), axis=0)
    xs_sat = _grid(231, (2, 16, 6, 6), 0.0625, 0, "uint8")
    for sat in ("auto", "off"):
        out.append(Case("depthwise 3x3 fbgemm, saturation %s" % sat, _conv_model(QuantizedConv(
            wd, np.zeros(16), 0.5, 128, padding=1, groups=16, depthwise_saturation=sat), 0.0625, 0), xs_sat))
    out.append(Case("depthwise x2 multiplier 5x5 stride 2, saturation on, int8 in", _conv_model(QuantizedConv(
        _w(232, (16, 1, 5, 5), False, symmetric=False), np.linspace(-2, 2, 16), 0.3, 10, stride=2, padding=2,
        groups=8, depthwise_saturation="on"), 0.05, -20, "int8"), _x(233, (2, 8, 9, 9), -6, 6)))
    out.append(Case("depthwise onednn relu", _conv_model(QuantizedConv(
        _w(234, (8, 1, 3, 3), True), np.linspace(-1, 1, 8), 0.07, 60, padding=1, groups=8, relu=True,
        arithmetic="onednn")), _x(235, (2, 8, 5, 5))))
    # near ties: x_scale * w_scale / y_scale = 1/2 exactly, no bias, so acc * 1/2 is a half for every
    # odd acc (each arithmetic rounds half to even, tflite by its rounding rule)
    for j, (ar, rnd) in enumerate([("fbgemm", "double"), ("onednn", "double"), ("qnnpack", "double"),
                                   ("tflite", "double"), ("tflite", "single"), ("tflite", "double_up")]):
        w = _w(240 + j, (3, 2, 2, 2), False, lo=-3, hi=4, scale=0.25)
        out.append(Case("ties %s%s" % (ar, " " + rnd if ar == "tflite" else ""), _conv_model(QuantizedConv(
            w, None, 0.25, 128, arithmetic=ar, rounding=rnd), 0.5, 128), _grid(250 + j, (2, 2, 5, 5), 0.5, 128)))
    # torch rows: each engine, 1-D and 2-D, fused ReLU, groups, asymmetric weights (x86 -> FBGEMM)
    out += [
        Case("torch x86 (oneDNN) conv2d", _conv_model(QuantizedConv(_w(260, (4, 3, 3, 3), True), bias4, 0.1, 50)),
             _x(261, (2, 3, 6, 6)), torch=_torch_conv("x86", 3, 4, 3, padding=1, seed=1)),
        Case("torch x86 asymmetric (FBGEMM) convrelu2d", _conv_model(QuantizedConv(
            _w(262, (4, 3, 3, 3), True), bias4, 0.1, 50)), _x(263, (2, 3, 6, 6)),
            torch=_torch_conv("x86", 3, 4, 3, relu=True, symmetric=False, seed=2, stride=2)),
        Case("torch fbgemm depthwise", _conv_model(QuantizedConv(_w(264, (8, 1, 3, 3), True), None, 0.1, 50,
                                                                 groups=8)),
             _x(265, (2, 8, 6, 6)), torch=_torch_conv("fbgemm", 8, 8, 3, groups=8, padding=1, seed=3)),
        Case("torch qnnpack conv1d", _conv_model(QuantizedConv(_w(266, (4, 2, 3), True), None, 0.1, 50)),
             _x(267, (2, 2, 9)), torch=_torch_conv("qnnpack", 2, 4, 3, dims=1, seed=4, dilation=2)),
    ]
    return out


# ---------------------------------------------------------------------------- pooling
def maxpool_cases():
    Case = _case()
    q = lambda *ls, xs=0.05, xz=100, xd="uint8": _chain(L.Quantize(xs, xz, xd), *ls, L.Dequantize())  # noqa: E731
    return [
        Case("2-d 3x3 stride 2 padding 1", q(MaxPool(3, 2, 1)), _x(300, (2, 3, 7, 8)),
             torch=_torch_pool("MaxPool2d", 3, 2, 1)),
        Case("2-d ceil_mode, dilation 2", q(MaxPool(2, 2, 0, dilation=2, ceil_mode=True)), _x(301, (2, 2, 9, 8)),
             torch=_torch_pool("MaxPool2d", 2, 2, 0, dilation=2, ceil_mode=True)),
        Case("2-d int8, non-square", q(MaxPool((2, 3), (1, 2), (1, 1)), xz=-30, xd="int8"), _x(302, (2, 3, 5, 7)),
             torch=_torch_pool("MaxPool2d", (2, 3), (1, 2), (1, 1), xz=-30, dtype="qint8")),
        Case("1-d", q(MaxPool(3, 2, 1, dims=1)), _x(303, (2, 4, 11)), torch=_torch_pool("MaxPool1d", 3, 2, 1)),
        Case("all padding-side windows negative (int8, padding never wins)",
             q(MaxPool(3, 1, 1), xz=100, xd="int8"), _x(304, (1, 2, 4, 4), -8, -6)),
    ]


def avgpool_cases():
    Case = _case()
    q = lambda *ls, xs=0.25, xz=3, xd="uint8": _chain(L.Quantize(xs, xz, xd), *ls, L.Dequantize())  # noqa: E731
    ties = _grid(310, (2, 20, 6, 6), 0.25, 3)     # 2x2 windows of integers: means at .5 by construction
    out = [
        Case("nchw 2x2 .5 ties", q(AvgPool(2)), ties, torch=_torch_pool("AvgPool2d", 2, xs=0.25, xz=3)),
        Case("nhwc 2x2 .5 ties, 16-channel body and tail", q(AvgPool(2, path="nhwc")), ties),
        Case("nhwc AVX2 body (8 channels)", q(AvgPool(2, path="nhwc", vector_channels=8)), ties),
        Case("qnnpack 3x3 padding 1 (pad counted)", q(AvgPool(3, 2, 1, count_include_pad=False, path="qnnpack")),
             _grid(311, (2, 3, 7, 7), 0.25, 3)),
        Case("nchw 3x3 stride 2 padding 1 ceil, pad not counted",
             q(AvgPool(3, 2, 1, ceil_mode=True, count_include_pad=False)), _grid(312, (2, 3, 8, 8), 0.25, 3),
             torch=_torch_pool("AvgPool2d", 3, 2, 1, ceil_mode=True, count_include_pad=False, xs=0.25, xz=3)),
        Case("nchw divisor_override 3", q(AvgPool(2, 1, 0, divisor_override=3)), _grid(313, (2, 2, 5, 5), 0.25, 3),
             torch=_torch_pool("AvgPool2d", 2, 1, 0, divisor_override=3, xs=0.25, xz=3)),
        Case("int8 nchw, zero point -7", q(AvgPool(2, 2, 1), xz=-7, xd="int8"),
             _grid(314, (2, 3, 6, 6), 0.25, -7, "int8"),
             torch=_torch_pool("AvgPool2d", 2, 2, 1, xs=0.25, xz=-7, dtype="qint8")),
        Case("1-d count_include_pad", q(AvgPool(4, 2, 2, dims=1)), _grid(315, (2, 3, 13), 0.25, 3),
             torch=_torch_pool("AvgPool1d", 4, 2, 2, xs=0.25, xz=3)),
    ]
    return out


# ---------------------------------------------------------------------------- QuantizedBatchNorm
def batchnorm_cases():
    """Unfused batch norm: 70 channels (AVX-512's vector body and scalar tail), AVX2's blocks,
    the no-fma build, BNReLU, int8; and one constructed case whose outputs sit next to .5 where one
    fma rounding and two roundings part (alpha = w, beta = b exactly: unit scales, var 1, eps 0)."""
    from fastq.layers.batchnorm import QuantizedBatchNorm
    Case = _case()
    out = []
    for i, (c, dt, block, relu) in enumerate([(70, "uint8", 64, False), (13, "uint8", 32, True),
                                               (9, "int8", 64, False), (21, "uint8", 0, True)]):
        rng = np.random.default_rng(300 + i)
        arrays = [rng.normal(1, 0.5, c), rng.normal(0, 1, c), rng.normal(0, 1, c), rng.uniform(0.05, 3, c)]
        zx, zy = (100, 120) if dt == "uint8" else (-9, 4)
        bn = QuantizedBatchNorm(*arrays, 0.04, zy, relu=relu, vector_block=block)
        out.append(Case("batch norm %d ch %s block %d%s" % (c, dt, block, " relu" if relu else ""),
                        _chain(L.Quantize(0.05, zx, dt), bn, L.Dequantize()), _x(310 + i, (2, c, 3, 4))))
    rng = np.random.default_rng(320)
    c, zx = 16, 10
    w = rng.uniform(0.3, 1.7, c).astype(f32)
    k = rng.integers(0, 256, (3, c, 2, 2))
    d0 = (k[0, :, 0, 0] - zx).astype(f32)
    b = (0.5 - (w * d0).astype(f32).astype(np.float64)).astype(f32)
    bn = QuantizedBatchNorm(w, b, np.zeros(c, f32), np.ones(c, f32), 1.0, 100, eps=0.0)
    out.append(Case("batch norm constructed fma ties", _chain(L.Quantize(1.0, zx), bn, L.Dequantize()),
                    (k - zx).astype(f32)))
    return out


CASES = {"QuantizedConv": conv_cases, "MaxPool": maxpool_cases, "AvgPool": avgpool_cases,
         "QuantizedBatchNorm": batchnorm_cases}
