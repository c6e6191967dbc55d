"""The C of the arith family (layers/arith.py): each function writes one node's loop from the
op's prepared constants, following the fastq.reference function named in its comment, one
rounding per line. A sample is one flat buffer; inputs of one size (no broadcasting)."""
from __future__ import annotations

import numpy as np

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def qadd_qnnpack(ctx, relu, zy, a, b, y, params):
    """QNNPACK's q8 add, integer only (reference.qnnpack_add)."""
    zpp, am, bm, shift = params
    lo = zy if relu else 0
    code = "\n".join([
        "/* %s: quantized add%s, QNNPACK q8 add (integer only):\n"
        " *   acc = %d + a * %d + b * %d (wrapping); acc = round_half_away(acc / 2^%d)\n"
        " *   y = clamp(acc + %d, %d, 255) */" % (ctx.node, " + ReLU" if relu else "", zpp, am, bm, shift, zy, lo),
        ctx.fn("const uint8_t *a, const uint8_t *b, uint8_t *y",
               "    const int32_t mask = (1 << %d) - 1;\n    int32_t i;\n    for (i = 0; i < %d; i++) {\n"
               "        int32_t acc = fq_wrap_add(fq_wrap_add(%d, a[i] * %d), b[i] * %d);\n"
               "        int32_t rem = (acc & mask) - (acc < 0);\n"
               "        acc = (acc >> %d) + (rem > (mask >> 1));\n"
               "        y[i] = (uint8_t)fq_clamp(acc + %d, %d, 255);\n    }"
               % (shift, a.size, zpp, am, bm, shift, zy, lo))])
    return ctx.step((a, b), y, code, cost="binary")


def qadd_fbgemm(ctx, relu, zy, a, b, y, data):
    """torch's qadd_kernel (x86 / fbgemm): per chunk a vector body and a scalar tail."""
    qmin, qmax = QRANGE[a.dtype]
    c = ctx.consts
    inv = c.define("inv_scale", data.inv_scale, "f32(1 / s_y)")
    sad, sbd = c.define("a_scale", data.a_scale), c.define("b_scale", data.b_scale)
    pa = c.define("a_offset", data.a_offset, "f32(s_a * -zp_a)")
    pb = c.define("b_offset", data.b_offset, "f32(s_b * -zp_b)")
    relu_line = "        c = fq_relu_float(c);\n" if relu else ""
    loops = []
    for lo_i, mid, hi_i in data.segments:
        if mid > lo_i:
            loops.append("    for (i = %d; i < %d; i++) {     /* torch's vector body */\n"
                         "        float c = fq_fmaf(%s, (float)a[i], %s) + fq_fmaf(%s, (float)b[i], %s);\n%s"
                         "        y[i] = (%s)fq_round_add_clamp_exact(c * %s, %d, %d, %d);\n    }"
                         % (lo_i, mid, sad, pa, sbd, pb, relu_line, a.ctype, inv, zy, qmin, qmax))
        if hi_i > mid:
            loops.append("    for (i = %d; i < %d; i++) {     /* its scalar tail */\n"
                         "        float c = (float)(a[i] - %d) * %s + (float)(b[i] - %d) * %s;\n%s"
                         "        y[i] = (%s)fq_round_add_clamp_exact((float)%d + c * %s, 0, %d, %d);\n    }"
                         % (mid, hi_i, a.zero_point, sad, b.zero_point, sbd, relu_line, a.ctype, zy, inv, qmin, qmax))
    code = "\n".join([
        "/* %s: quantized add%s (torch qadd_kernel, x86 / fbgemm): per element c = s_a (a - zp_a) + s_b (b - zp_b),\n"
        " *   body: each term fmaf(s, (float)q, f32(s * -zp)), y = clamp(rne(f32(c * (1/s_y))) + zp_y)\n"
        " *   tail: each term f32((float)(q - zp) * s),       y = clamp(rne(f32((float)zp_y + f32(c * (1/s_y))))) */"
        % (ctx.node, " + ReLU" if relu else ""),
        c.text(),
        ctx.fn("const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3), "    int32_t i;\n" + "\n".join(loops))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def qmul(ctx, relu, zy, a, b, y, multiplier):
    """torch's qmul_kernel: y = clamp(rne(f32((float)((a - za)(b - zb)) * m)) + zy)."""
    qmin, qmax = QRANGE[a.dtype]
    m = ctx.consts.define("multiplier", multiplier, "f32(f32(s_a * s_b) * f32(1 / s_y))")
    lo = max(qmin, zy) if relu else qmin
    code = "\n".join([
        "/* %s: quantized mul%s (torch qmul_kernel): y = clamp(rne(f32((float)((a - %d)(b - %d)) * m)) + %d, %d, %d) */"
        % (ctx.node, " + ReLU" if relu else "", a.zero_point, b.zero_point, zy, lo, qmax),
        ctx.consts.text(),
        ctx.fn("const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3),
               "    int32_t i;\n    for (i = 0; i < %d; i++) {\n"
               "        int32_t p = (a[i] - %d) * (b[i] - %d);\n"
               "        y[i] = (%s)fq_round_add_clamp_exact((float)p * %s, %d, %d, %d);\n    }"
               % (a.size, a.zero_point, b.zero_point, a.ctype, m, zy, lo, qmax))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def qadd_scalar(ctx, value, x, y, params):
    """torch's add_scalar requantizing path (reference.add_scalar_qparams)."""
    qmin, qmax = QRANGE[x.dtype]
    c_q, s2, z2, _ = params
    m = ctx.consts.define("multiplier", np.float32(np.float32(x.scale) * np.float32(np.float32(1.0) / np.float32(s2))),
                          "f32(s * f32(1 / s'))")
    code = "\n".join([
        "/* %s: quantized add_scalar(%r): y = clamp(rne(f32((float)(q - %d + %d) * m)) + %d, %d, %d) */"
        % (ctx.node, value, x.zero_point, c_q, z2, qmin, qmax),
        ctx.consts.text(),
        ctx.fn("const %s *x, %s *y" % (x.ctype, x.ctype),
               "    int32_t i;\n    for (i = 0; i < %d; i++)\n"
               "        y[i] = (%s)fq_round_add_clamp_exact((float)(x[i] - %d + %d) * %s, %d, %d, %d);"
               % (x.size, x.ctype, x.zero_point, c_q, m, z2, qmin, qmax))])
    return ctx.step((x,), y, code, quantized=False)


def qmul_scalar(ctx, value, x, y, mode):
    """torch's mul_scalar when it moves the integers: all zero, or reflected (q -> qmax + qmin - q)."""
    qmin, qmax = QRANGE[x.dtype]
    expr = "0" if mode == "zero" else "(%s)(%d - x[i])" % (x.ctype, qmax + qmin)
    code = "\n".join([
        "/* %s: quantized mul_scalar(%r): %s */" % (ctx.node, value, "y = 0" if mode == "zero" else
                                                    "y = %d - q" % (qmax + qmin)),
        ctx.fn("const %s *x, %s *y" % (x.ctype, x.ctype),
               "    int32_t i;\n%s    for (i = 0; i < %d; i++)\n        y[i] = %s;" % (
                   "    (void)x;\n" if mode == "zero" else "", x.size, expr))])
    return ctx.step((x,), y, code)


def float_binary(ctx, op, relu, a, b, y):
    """Float a (op) b, one float32 rounding; relu: max(., 0) after."""
    expr = "a[i] %s b[i]" % op
    line = ("        y[i] = fq_relu_float(%s);" % expr) if relu else ("        y[i] = %s;" % expr)
    code = "\n".join(["/* %s: float %s%s */" % (ctx.node, "a + b" if op == "+" else "a * b",
                                                 ", then max(., 0)" if relu else ""),
                      ctx.fn("const float *a, const float *b, float *y",
                             "    int32_t i;\n    for (i = 0; i < %d; i++)\n%s" % (a.size, line))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def float_scalar(ctx, op, value, x, y):
    """Float x (op) f32(value)."""
    v = ctx.consts.define("value", np.float32(value), "float32(%r)" % value)
    code = "\n".join(["/* %s: float x %s %r */" % (ctx.node, op, value), ctx.consts.text(),
                      ctx.fn("const float *x, float *y",
                             "    int32_t i;\n    for (i = 0; i < %d; i++)\n        y[i] = x[i] %s %s;" % (x.size, op, v))])
    return ctx.step((x,), y, code, quantized=False)


def cat_last(ctx, dim, xs, y, qparams):
    """Concatenation along the last dimension of [batch, features] values. qparams: None for
    floats, else (scale, zero_point, inv_scale) of the output (every input dequantized, the
    concatenation quantized once: torch's quantized cat)."""
    if dim not in (-1, 1):
        raise ctx.error("dim=%d: only a cat along the last dimension of [batch, features] values is exported" % dim)
    kind = "float" if qparams is None else "quant"
    for v in xs:
        if v.kind != kind:
            raise ctx.error("receives %s values where %s ones are expected" % (v.kind, kind))
    args = ", ".join("const %s *x%d" % (v.ctype, i) for i, v in enumerate(xs))
    lines, off = [], 0
    if qparams is not None:
        if any(v.dtype != xs[0].dtype for v in xs):
            raise ctx.error("cat of different dtypes")
        scale, zp, inv_scale = qparams
        qmin, qmax = QRANGE[xs[0].dtype]
        inv = ctx.consts.define("inv_scale", inv_scale, "f32(1 / s_y)")
        for i, v in enumerate(xs):
            lines.append("    for (i = 0; i < %d; i++)\n        y[%d + i] = (%s)fq_quantize(fq_dequantize(x%d[i], %d, %s), "
                         "%s, %d.0f, %d.0f, %d.0f);"
                         % (v.size, off, y.ctype, i, v.zero_point, ctx.float_literal(v.scale), inv, zp, qmin, qmax))
            off += v.size
        formula = "every input dequantized, the concatenation quantized with scale %.9g, zero point %d" % (scale, zp)
    else:
        for i, v in enumerate(xs):
            lines.append("    for (i = 0; i < %d; i++) y[%d + i] = x%d[i];" % (v.size, off, i))
            off += v.size
        formula = "float concatenation"
    code = "\n".join(["/* %s: cat along the last dimension: %s */" % (ctx.node, formula), ctx.consts.text(),
                      ctx.fn("%s, %s *y" % (args, y.ctype), "    int32_t i;\n" + "\n".join(lines))])
    return ctx.step(tuple(xs), y, code, quantized=False, cost="binary")
