"""The graph ops (layers/arith.py, layers/shape.py, Hardtanh) as C steps. Each follows the
fastq.reference function named in its comment, one rounding per line.

A sample is one flat buffer (the batch dimension first, dropped): reshape / view / squeeze /
unsqueeze / contiguous move nothing (they alias their input), Size and GetItem give the
integers a reshape takes (never needed in C), cat joins along the last dimension only, and
transpose / permute, which would move data inside a sample, are refused."""
from __future__ import annotations

import numpy as np

from .. import reference as R
from .layers import _CTYPE, _QRANGE, Consts, ExportError
from .plan import Step, Value

ALIASES = ("Reshape", "Squeeze", "Unsqueeze", "Contiguous")
INTS = ("Size", "GetItem")
HANDLED = ("QuantizedAdd", "QuantizedMul", "QuantizedAddScalar", "QuantizedMulScalar", "QuantizedCat",
           "Add", "Mul", "AddScalar", "MulScalar", "Cat", "Hardtanh") + ALIASES + INTS


def _same(node, xs, kind):
    for v in xs:
        if v.kind != kind:
            raise ExportError("node %r receives %s values where %s ones are expected" % (node, v.kind, kind))
    if len({v.size for v in xs}) != 1:
        raise ExportError("node %r: inputs of %s values per sample; broadcasting is not exported"
                          % (node, "/".join(str(v.size) for v in xs)))
    if kind == "quant" and len({v.dtype for v in xs}) != 1:
        raise ExportError("node %r: inputs of different dtypes" % node)


def _fn(prefix, args, body, ret="void"):
    return "static %s %s_run(%s)\n{\n%s\n}" % (ret, prefix, args, body)


def step(node, prefix, layer, xs, out_name):
    """(Step or None, output Value) for a graph op; None when the output aliases an input."""
    t = type(layer).__name__
    x = xs[0]
    if t in INTS:
        return None, Value(out_name, "int", 0)
    if t in ALIASES:
        if x.kind == "int":
            raise ExportError("node %r (%s) of an integer value" % (node, t))
        return None, Value(out_name, x.kind, x.size, x.dtype, x.scale, x.zero_point, alias_of=x)
    c = Consts(prefix)
    if t == "QuantizedAdd":
        return _qadd(node, prefix, layer, xs, out_name, c)
    if t == "QuantizedMul":
        _same(node, xs, "quant")
        a, b = xs
        qmin, qmax = _QRANGE[a.dtype]
        m = c.define("multiplier", R.qmul_multiplier(a.scale, b.scale, layer.scale), "f32(f32(s_a * s_b) * f32(1 / s_y))")
        lo = max(qmin, int(layer.zero_point)) if layer.relu else qmin
        y = Value(out_name, "quant", a.size, a.dtype, float(layer.scale), int(layer.zero_point))
        code = "\n".join([
            "/* %s: quantized mul%s (torch qmul_kernel): y = clamp(rne(f32((float)((a - %d)(b - %d)) * m)) + %d, %d, %d) */"
            % (node, " + ReLU" if layer.relu else "", a.zero_point, b.zero_point, layer.zero_point, lo, qmax),
            c.text(),
            _fn(prefix, "const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3),
                "    int32_t i;\n    for (i = 0; i < %d; i++) {\n"
                "        int32_t p = (a[i] - %d) * (b[i] - %d);\n"
                "        y[i] = (%s)fq_round_add_clamp_exact((float)p * %s, %d, %d, %d);\n    }"
                % (a.size, a.zero_point, b.zero_point, a.ctype, m, layer.zero_point, lo, qmax))])
        return Step(node, prefix + "_run", tuple(xs), y, code=code, quantized=False), y
    if t == "QuantizedAddScalar":
        _same(node, xs, "quant")
        qmin, qmax = _QRANGE[x.dtype]
        c_q, s2, z2, requantize = R.add_scalar_qparams(x.scale, x.zero_point, layer.value, x.dtype)
        y = Value(out_name, "quant", x.size, x.dtype, float(s2), int(z2))
        if not requantize:          # the same integers, zero point moved by c_q
            y.alias_of = x
            return None, y
        m = c.define("multiplier", np.float32(np.float32(x.scale) * np.float32(np.float32(1.0) / np.float32(s2))),
                     "f32(s * f32(1 / s'))")
        code = "\n".join([
            "/* %s: quantized add_scalar(%r): y = clamp(rne(f32((float)(q - %d + %d) * m)) + %d, %d, %d) */"
            % (node, layer.value, x.zero_point, c_q, z2, qmin, qmax),
            c.text(),
            _fn(prefix, "const %s *x, %s *y" % (x.ctype, x.ctype),
                "    int32_t i;\n    for (i = 0; i < %d; i++)\n"
                "        y[i] = (%s)fq_round_add_clamp_exact((float)(x[i] - %d + %d) * %s, %d, %d, %d);"
                % (x.size, x.ctype, x.zero_point, c_q, m, z2, qmin, qmax))])
        return Step(node, prefix + "_run", (x,), y, code=code, quantized=False), y
    if t == "QuantizedMulScalar":
        _same(node, xs, "quant")
        qmin, qmax = _QRANGE[x.dtype]
        s2, z2, mode = R.mul_scalar_qparams(x.scale, x.zero_point, layer.value, x.dtype)
        y = Value(out_name, "quant", x.size, x.dtype, float(s2), int(z2))
        if mode == "keep":
            y.alias_of = x
            return None, y
        expr = "0" if mode == "zero" else "(%s)(%d - x[i])" % (x.ctype, qmax + qmin)
        code = "\n".join([
            "/* %s: quantized mul_scalar(%r): %s */" % (node, layer.value,
                                                        "y = 0" if mode == "zero" else "y = %d - q" % (qmax + qmin)),
            _fn(prefix, "const %s *x, %s *y" % (x.ctype, x.ctype),
                "    int32_t i;\n%s    for (i = 0; i < %d; i++)\n        y[i] = %s;" % (
                    "    (void)x;\n" if mode == "zero" else "", x.size, expr))])
        return Step(node, prefix + "_run", (x,), y, code=code), y
    if t in ("QuantizedCat", "Cat"):
        return _cat(node, prefix, layer, xs, out_name, c, t)
    if t in ("Add", "Mul"):
        _same(node, xs, "float")
        op = "+" if t == "Add" else "*"
        relu = t == "Add" and layer.relu
        y = Value(out_name, "float", x.size)
        expr = "a[i] %s b[i]" % op
        line = ("        y[i] = fq_relu_float(%s);" % expr) if relu else ("        y[i] = %s;" % expr)
        code = "\n".join(["/* %s: float %s%s */" % (node, "a + b" if op == "+" else "a * b", ", then max(., 0)" if relu else ""),
                          _fn(prefix, "const float *a, const float *b, float *y",
                              "    int32_t i;\n    for (i = 0; i < %d; i++)\n%s" % (x.size, line))])
        return Step(node, prefix + "_run", tuple(xs), y, code=code, quantized=False), y
    if t in ("AddScalar", "MulScalar"):
        _same(node, xs, "float")
        v = c.define("value", np.float32(layer.value), "float32(%r)" % layer.value)
        op = "+" if t == "AddScalar" else "*"
        y = Value(out_name, "float", x.size)
        code = "\n".join(["/* %s: float x %s %r */" % (node, op, layer.value), c.text(),
                          _fn(prefix, "const float *x, float *y",
                              "    int32_t i;\n    for (i = 0; i < %d; i++)\n        y[i] = x[i] %s %s;" % (x.size, op, v))])
        return Step(node, prefix + "_run", (x,), y, code=code, quantized=False), y
    if t == "Hardtanh":
        if x.kind == "quant":
            lo = int(R.quantize_per_tensor(np.float32(layer.min_val), x.scale, x.zero_point, x.dtype))
            hi = int(R.quantize_per_tensor(np.float32(layer.max_val), x.scale, x.zero_point, x.dtype))
            line = ("        int32_t v = x[i];\n        v = v < %d ? %d : v;\n        y[i] = (%s)(v > %d ? %d : v);"
                    % (lo, lo, x.ctype, hi, hi))
            formula = "q = min(max(q, %d), %d)" % (lo, hi)
        else:
            lo_f = c.define("min", np.float32(layer.min_val))
            hi_f = c.define("max", np.float32(layer.max_val))
            line = "        y[i] = fq_clip_float(x[i], %s, %s);" % (lo_f, hi_f)
            formula = "x = clip(x, %r, %r)" % (layer.min_val, layer.max_val)
        y = Value(out_name, x.kind, x.size, x.dtype, x.scale, x.zero_point)
        code = "\n".join(["/* %s: Hardtanh: %s */" % (node, formula), c.text(),
                          _fn(prefix, "const %s *x, %s *y" % (x.ctype, x.ctype),
                              "    int32_t i;\n    for (i = 0; i < %d; i++) {\n%s\n    }" % (x.size, line))])
        return Step(node, prefix + "_run", (x,), y, code=code, quantized=x.kind == "quant"), y
    raise ExportError("node %r: %s cannot be exported to C" % (node, t))


def _qadd(node, prefix, layer, xs, out_name, c):
    _same(node, xs, "quant")
    a, b = xs
    qmin, qmax = _QRANGE[a.dtype]
    zy = int(layer.zero_point)
    y = Value(out_name, "quant", a.size, a.dtype, float(layer.scale), zy)
    if layer.arithmetic == "qnnpack" and a.dtype == "uint8":
        zpp, am, bm, shift = R.qnnpack_add_params(a.scale, a.zero_point, b.scale, b.zero_point, layer.scale)
        lo = zy if layer.relu else 0
        code = "\n".join([
            "/* %s: quantized add%s, QNNPACK q8 add (integer only):\n"
            " *   acc = %d + a * %d + b * %d (wrapping); acc = round_half_away(acc / 2^%d)\n"
            " *   y = clamp(acc + %d, %d, 255) */" % (node, " + ReLU" if layer.relu else "", zpp, am, bm, shift, zy, lo),
            _fn(prefix, "const uint8_t *a, const uint8_t *b, uint8_t *y",
                "    const int32_t mask = (1 << %d) - 1;\n    int32_t i;\n    for (i = 0; i < %d; i++) {\n"
                "        int32_t acc = fq_wrap_add(fq_wrap_add(%d, a[i] * %d), b[i] * %d);\n"
                "        int32_t rem = (acc & mask) - (acc < 0);\n"
                "        acc = (acc >> %d) + (rem > (mask >> 1));\n"
                "        y[i] = (uint8_t)fq_clamp(acc + %d, %d, 255);\n    }"
                % (shift, a.size, zpp, am, bm, shift, zy, lo))])
        return Step(node, prefix + "_run", (a, b), y, code=code), y
    from ..layers.arith import torch_chunks
    sa, sb = np.float32(a.scale), np.float32(b.scale)
    inv = c.define("inv_scale", np.float32(np.float32(1.0) / np.float32(layer.scale)), "f32(1 / s_y)")
    sad, sbd = c.define("a_scale", sa), c.define("b_scale", sb)
    pa = c.define("a_offset", np.float32(sa * -np.float32(a.zero_point)), "f32(s_a * -zp_a)")
    pb = c.define("b_offset", np.float32(sb * -np.float32(b.zero_point)), "f32(s_b * -zp_b)")
    segments = []
    for lo_i, hi_i in torch_chunks(a.size, layer.torch_threads):
        n = hi_i - lo_i
        n_vec = (n // layer.vector_block) * layer.vector_block if layer.vector_block else 0
        segments.append((lo_i, lo_i + n_vec, hi_i))
    relu = "        c = fq_relu_float(c);\n" if layer.relu else ""
    loops = []
    for lo_i, mid, hi_i in segments:
        if mid > lo_i:
            loops.append("    for (i = %d; i < %d; i++) {     /* torch's vector body */\n"
                         "        float c = fq_fmaf(%s, (float)a[i], %s) + fq_fmaf(%s, (float)b[i], %s);\n%s"
                         "        y[i] = (%s)fq_round_add_clamp_exact(c * %s, %d, %d, %d);\n    }"
                         % (lo_i, mid, sad, pa, sbd, pb, relu, a.ctype, inv, zy, qmin, qmax))
        if hi_i > mid:
            loops.append("    for (i = %d; i < %d; i++) {     /* its scalar tail */\n"
                         "        float c = (float)(a[i] - %d) * %s + (float)(b[i] - %d) * %s;\n%s"
                         "        y[i] = (%s)fq_round_add_clamp_exact((float)%d + c * %s, 0, %d, %d);\n    }"
                         % (mid, hi_i, a.zero_point, sad, b.zero_point, sbd, relu, a.ctype, zy, inv, qmin, qmax))
    code = "\n".join([
        "/* %s: quantized add%s (torch qadd_kernel, x86 / fbgemm): per element c = s_a (a - zp_a) + s_b (b - zp_b),\n"
        " *   body: each term fmaf(s, (float)q, f32(s * -zp)), y = clamp(rne(f32(c * (1/s_y))) + zp_y)\n"
        " *   tail: each term f32((float)(q - zp) * s),       y = clamp(rne(f32((float)zp_y + f32(c * (1/s_y))))) */"
        % (node, " + ReLU" if layer.relu else ""),
        c.text(),
        _fn(prefix, "const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3),
            "    int32_t i;\n" + "\n".join(loops))])
    return Step(node, prefix + "_run", (a, b), y, code=code, quantized=False), y


def _cat(node, prefix, layer, xs, out_name, c, t):
    dim = layer.dim
    if dim not in (-1, 1):
        raise ExportError("node %r (%s, dim=%d): only a cat along the last dimension of [batch, features] "
                          "values is exported" % (node, t, dim))
    quant = t == "QuantizedCat" or xs[0].kind == "quant"
    kind = "quant" if quant else "float"
    for v in xs:
        if v.kind != kind:
            raise ExportError("node %r receives %s values where %s ones are expected" % (node, v.kind, kind))
    size = sum(v.size for v in xs)
    args = ", ".join("const %s *x%d" % (v.ctype, i) for i, v in enumerate(xs))
    lines, off = [], 0
    if quant:
        dt = xs[0].dtype
        if any(v.dtype != dt for v in xs):
            raise ExportError("node %r: cat of different dtypes" % node)
        scale = float(layer.scale) if t == "QuantizedCat" else float(xs[0].scale)
        zp = int(layer.zero_point) if t == "QuantizedCat" else int(xs[0].zero_point)
        y = Value(out_name, "quant", size, dt, scale, zp)
        qmin, qmax = _QRANGE[dt]
        inv = c.define("inv_scale", np.float32(np.float32(1.0) / np.float32(scale)), "f32(1 / s_y)")
        for i, v in enumerate(xs):
            lines.append("    for (i = 0; i < %d; i++)\n        y[%d + i] = (%s)fq_quantize(fq_dequantize(x%d[i], %d, %s), %s, %d.0f, %d.0f, %d.0f);"
                         % (v.size, off, _CTYPE[dt], i, v.zero_point, _flt(v.scale), inv, zp, qmin, qmax))
            off += v.size
        formula = "every input dequantized, the concatenation quantized with scale %.9g, zero point %d" % (scale, zp)
    else:
        y = Value(out_name, "float", size)
        for i, v in enumerate(xs):
            lines.append("    for (i = 0; i < %d; i++) y[%d + i] = x%d[i];" % (v.size, off, i))
            off += v.size
        formula = "float concatenation"
    code = "\n".join(["/* %s: cat along the last dimension: %s */" % (node, formula), c.text(),
                      _fn(prefix, "%s, %s *y" % (args, y.ctype), "    int32_t i;\n" + "\n".join(lines))])
    return Step(node, prefix + "_run", tuple(xs), y, code=code, quantized=False), y


def _flt(v):
    from .plan import float_literal
    return float_literal(np.float32(v))
