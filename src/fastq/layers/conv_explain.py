"""The explain trace of one QuantizedConv output element: its receptive field as one inner
product (the Linear's integer core), FBGEMM's saturating int16 pairs where the layer uses them,
then the requantization walk-through in the layer's arithmetic: the Linear's step builders for
fbgemm / qnnpack / tflite, oneDNN's float32 post-op order (CONV_FINDINGS F2b) for onednn.
Built from the layer's settings and fastq.reference, never from the kernels (the kernel's
value goes to trace.checks)."""
from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import numpy as np

from .. import reference as R
from ..qtensor import QTensor
from ._spec import Spec
from ._trace import Step, Trace, _f32_step, _fr
from .linear.explain import _check_index, _fbgemm_steps, _integer_core, _qnnpack_steps, _tflite_steps

f32 = np.float32


def receptive_field(layer, x, n, o, pos):
    """(x_field, w_row, taps): the zero-point-padded inputs that output [n, o, *pos] reads, in
    the weight's (c, kh, kw) order, beside w[o] flattened; taps: the input coordinates (c, h, w)
    of each term (None where the tap falls in the padding)."""
    one_d = layer.dims == 1
    xs = x.values[n:n + 1]
    x4 = xs[:, :, None, :] if one_d else xs
    w = layer.weight.values
    w4 = w[:, :, None, :] if one_d else w
    _, cpg, kh, kw = w4.shape
    st, pd, dl = [((z,) + tuple(v)) if one_d else tuple(v)
                  for z, v in ((1, layer.stride), (0, layer.padding), (1, layer.dilation))]
    oy, ox = (0, pos[0]) if one_d else pos
    g = o // (layer.out_channels // layer.groups)
    field, taps = [], []
    for c in range(g * cpg, (g + 1) * cpg):
        for i in range(kh):
            for j in range(kw):
                yy, xx = oy * st[0] - pd[0] + i * dl[0], ox * st[1] - pd[1] + j * dl[1]
                inside = 0 <= yy < x4.shape[2] and 0 <= xx < x4.shape[3]
                field.append(int(x4[0, c, yy, xx]) if inside else int(x.zero_point))
                taps.append((c, yy, xx) if inside else None)
    return np.array(field, np.int64), w4[o].reshape(-1).astype(np.int64), taps


def _pairs(x_field, w_row, zx, zw, x_int8):
    """FBGEMM's depthwise accumulator of one element (reference.fbgemm_depthwise_acc's formula):
    raw uint8 x times raw int8 w, consecutive taps summed in int16 pairs that saturate (int8 x
    enters as uint8 x + 128 with z_x + 128)."""
    u = x_field + (128 if x_int8 else 0)
    uz = zx + (128 if x_int8 else 0)
    prod = u * w_row
    sums = [int(prod[i] + (prod[i + 1] if i + 1 < len(prod) else 0)) for i in range(0, len(prod), 2)]
    sat = [min(max(s, -32768), 32767) for s in sums]
    k = len(prod)
    acc = sum(sat) - uz * (int(w_row.sum()) - zw * k) - zw * int(u.sum())
    return acc, sum(a != b for a, b in zip(sums, sat)), len(sums)


def _onednn_steps(layer, steps, acc, sx, col):
    """oneDNN's int8 convolution as torch 2.13 calls it (reference.requant_onednn, F2b): the
    reciprocal scales inverted again in float, then per output channel in float32, no fma."""
    o = col
    ws = np.atleast_1d(np.asarray(layer.weight.scale, np.float64))
    s_src_r, sw_r, inv_y_r = R.onednn_params(sx, ws, layer.scale)
    steps.append(_f32_step("multiplier", "1/s_x", "(float)(1 / (double)s_x)", Fraction(1) / Fraction(float(sx)),
                           "torch hands oneDNN the input scale's reciprocal as a float"))
    steps.append(_f32_step("multiplier", "s_src", "1 / (1/s_x)", Fraction(1) / _fr(steps[-1].value),
                           "oneDNN inverts it back in float32"))
    s_src = steps[-1].value
    assert s_src == s_src_r
    sw = f32(ws[o if layer.per_channel else 0])
    steps.append(Step("multiplier", "s_w", "(float)s_w[n]", Fraction(float(ws[o if layer.per_channel else 0])), sw,
                      "f32", "the weight scale as a float"))
    assert sw == f32(np.broadcast_to(sw_r, (layer.out_channels,))[o])
    steps.append(_f32_step("multiplier", "1/s_y", "(float)(1 / (double)s_y)",
                           Fraction(1) / Fraction(float(layer.scale)), "torch hands the output scale's reciprocal"))
    steps.append(_f32_step("multiplier", "d", "1 / (1/s_y)", Fraction(1) / _fr(steps[-1].value),
                           "oneDNN inverts it to the dst scale d"))
    steps.append(_f32_step("multiplier", "inv_d", "1 / d", Fraction(1) / _fr(steps[-1].value),
                           "and multiplies by d's reciprocal"))
    inv = steps[-1].value
    assert inv == inv_y_r
    steps.append(_f32_step("scale", "f", "(float)acc", acc, "int32 accumulator converted to float32"))
    steps.append(_f32_step("scale", "y", "f * s_src", _fr(steps[-1].value) * _fr(s_src),
                           "source scale first (its own rounding)"))
    steps.append(_f32_step("scale", "y", "y * s_w", _fr(steps[-1].value) * _fr(sw), "then the weight scale"))
    y = steps[-1].value
    bias = None if layer.bias is None else f32(layer.bias[o])
    if bias is None:
        steps.append(Step("bias", "bias", "none", None, 0, "int", "no bias"))
    else:
        steps.append(_f32_step("bias_add", "y", "y + bias", _fr(y) + _fr(bias), "float32 bias added after scaling"))
        y = steps[-1].value
    if layer.relu:
        y = max(y, f32(0))
        steps.append(Step("relu", "y", "max(y, 0)", None, y, "f32", "fused ReLU in float, before the output scale"))
    steps.append(_f32_step("scale", "t", "y * inv_d", _fr(y) * _fr(inv), "output scale"))
    steps.append(_f32_step("zero_point", "t", "t + z_y", _fr(steps[-1].value) + layer.zero_point,
                           "zero point added in float, before rounding"))
    t = steps[-1].value
    r = int(R.round_float_to_int32(t))
    steps.append(Step("round", "r", "rne(t)", _fr(t) if np.isfinite(t) else None, r, "int", "round half to even"))
    header = "3. Requantization 'onednn' (torch x86, convolutions packed for oneDNN): float32 post-ops"
    return dict(r=r, bias=bias, bias_acc=None, multiplier=inv, pre_round=_fr(t) if np.isfinite(t) else None,
                header=header, zero_point_in=True)


def explain_conv(layer, x, row=0, col=0, node=None):
    """Output element [row, col] of layer(x), the output viewed as [N * O * (OH), OW] (the last
    axis: columns, as every op's trace); trace.index holds its (n, o, oh, ow)."""
    layer._check_input(x)
    out = layer.infer(Spec("quant", x.values.shape, x.values.dtype.name, x.scale, x.zero_point))
    shape = out.shape
    row = _check_index(row, "row", int(np.prod(shape[:-1])))
    col = _check_index(col, "col", shape[-1])
    idx = np.unravel_index(row * shape[-1] + col, shape)
    n, o, pos = int(idx[0]), int(idx[1]), tuple(int(v) for v in idx[2:])
    sx, zx = float(x.scale), int(x.zero_point)
    x_field, w_row, taps = receptive_field(layer, x, n, o, pos)
    ws = np.atleast_1d(np.asarray(layer.weight.scale, np.float64))
    zws = np.atleast_1d(np.asarray(layer.weight.zero_point, np.int64))
    sw, zw = float(ws[o if layer.per_channel else 0]), int(zws[o if layer.per_channel else 0])
    dx, dw, products, acc, terms = _integer_core(x_field, w_row, zx, zw)
    steps = [Step("acc", "acc", "sum over the receptive field of (x - z_x)(w - z_w)", None, acc, "int",
                  "the conv element as one inner product of %d terms, exact int32" % len(products))]
    saturated, acc_run = None, acc
    if layer.saturates():
        acc_run, saturated, npairs = _pairs(x_field, w_row, zx, zw, x.values.dtype == np.int8)
        steps.append(Step("acc", "acc", "sum_p sat16(x[2p] w[2p] + x[2p+1] w[2p+1]) - zero point terms", None, acc_run,
                          "int", "FBGEMM's depthwise kernel: raw products in int16 pairs, %d of %d pairs saturated"
                          % (saturated, npairs)))
    view = SimpleNamespace(weight=layer.weight, bias=layer.bias, int_bias=layer.int_bias, scale=layer.scale,
                           per_channel=layer.per_channel, bias_rounding="fused", out_features=layer.out_channels,
                           out_channels=layer.out_channels, rounding=layer.rounding, effective_scale="float32",
                           relu=layer.relu, zero_point=layer.zero_point)
    build = {"fbgemm": _fbgemm_steps, "qnnpack": _qnnpack_steps, "tflite": _tflite_steps,
             "onednn": _onednn_steps}[layer.arithmetic]
    info = build(view, steps, acc_run, sx, o)
    qmin, qmax = R._qrange(layer.dtype.name)
    zy, sy = int(layer.zero_point), float(layer.scale)
    r = info["r"]
    if info.get("zero_point_in"):
        clamp_min, v = qmin, r           # oneDNN: the ReLU was applied in float; t held z_y already
    else:
        clamp_min, v = (max(qmin, zy) if layer.relu else qmin), r + zy
        steps.append(Step("zero_point", "r+z_y", "%d + %d" % (r, zy), None, v, "int",
                          "output zero point added to the rounded integer"))
    q = min(max(v, clamp_min), qmax)
    steps.append(Step("clamp", "q", "clamp(%d, %d, %d)" % (v, clamp_min, qmax), None, q, "int",
                      "clamped to the %s range%s" % (layer.dtype.name, ", lower bound z_y (fused ReLU)"
                                                     if clamp_min != qmin else "")))
    xn = QTensor(np.ascontiguousarray(x.values[n:n + 1]), sx, zx)
    at = (0, o) + pos
    trace = Trace(kind="static", layer=repr(layer), mode=layer.arithmetic,
                  rounding=layer.rounding if layer.arithmetic == "tflite" else None, per_channel=layer.per_channel,
                  row=row, col=col, index=(n, o) + pos, taps=taps, saturated_pairs=saturated,
                  x={"values": x_field, "dtype": x.values.dtype.name, "scale": sx, "zero_point": zx},
                  w={"values": w_row, "dtype": "int8", "scale": sw, "zero_point": zw},
                  dx=dx, dw=dw, products=products, acc=acc, acc_terms=terms, bias=info["bias"],
                  bias_acc=info["bias_acc"], multiplier=info["multiplier"], shift=info.get("shift"), steps=steps,
                  zero_point=zy, scale=sy, qmin=qmin, qmax=qmax, clamp_min=clamp_min, relu=layer.relu, output=q,
                  real=f32(f32(q - zy) * f32(sy)), dtype=layer.dtype.name, _pre_round=info["pre_round"],
                  _layer=layer,
                  _header=info["header"])
    trace.checks = {"reference": int(layer.reference(xn).values[at]), "kernel": int(layer(xn).values[at])}
    return trace
