"""The C of the arith family (layers/arith.py): each function writes one node's loop from the
op's prepared constants, following the fastq.reference function named in its comment, one
rounding per line. A sample is one C-order buffer; the quantized binary ops take inputs of one
shape (as the runtime does), the float ones broadcast as numpy and torch do; cat joins along
any axis but the batch."""
from __future__ import annotations

import numpy as np

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


QNNPACK_ADD_BLOCK = 4096   # the tiles pytorch_qnnp_run_operator hands the add kernel (reference.qadd_qnnpack)


def qadd_qnnpack(ctx, relu, zy, a, b, y, params):
    """QNNPACK's q8 add, integer only (reference.qadd_qnnpack). A shift of 32..35 (a scale ratio
    below 2^-10) is run as x86 runs it: the mask from the count mod 32, the vector psrad of the
    long tiles filling with the sign (a shift by 31), the scalar sar of a last tile of 1..7
    elements by the count mod 32. Every shift in the C is in [0, 31]."""
    zpp, am, bm, shift = params
    lo = zy if relu else 0
    n = a.size
    mask = (1 << (shift % 32)) - 1
    n_long = n - n % QNNPACK_ADD_BLOCK if 0 < n % QNNPACK_ADD_BLOCK < 8 else n
    loops = []
    for begin, end, s in ((0, n_long, min(shift, 31)), (n_long, n, shift % 32)):
        if end > begin:
            loops.append("    for (i = %d; i < %d; i++) {%s\n"
                         "        int32_t acc = fq_wrap_add(fq_wrap_add(%s, a[i] * %d), b[i] * %d);\n"
                         "        int32_t rem = (int32_t)((uint32_t)acc & %du) - (acc < 0);\n"
                         "        acc = fq_asr(acc, %d) + (rem > %d);\n"
                         "        y[i] = (uint8_t)fq_clamp(acc + %d, %d, 255);\n    }"
                         % (begin, end, "" if begin == 0 else "     /* the short last tile: a scalar sar */",
                            _int(zpp), am, bm, mask, s, mask >> 1, zy, lo))
    code = "\n".join([
        "/* %s: quantized add%s, QNNPACK q8 add (integer only):\n"
        " *   acc = %d + a * %d + b * %d (wrapping); acc = round_half_away(acc / 2^%d), mask 2^%d - 1\n"
        " *   y = clamp(acc + %d, %d, 255) */" % (ctx.node, " + ReLU" if relu else "", zpp, am, bm, shift,
                                                shift % 32, zy, lo),
        ctx.fn("const uint8_t *a, const uint8_t *b, uint8_t *y", "    int32_t i;\n" + "\n".join(loops))])
    return ctx.step((a, b), y, code, cost="binary")


def _int(v):
    """An int32 literal (INT32_MIN written as an expression)."""
    v = int(v)
    return "(-2147483647 - 1)" if v == -2**31 else str(v)


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
                         "        float t = c * %s;\n"
                         "        if (!(t <= 2147483520.0f)) t = 2147483520.0f;     /* min(t, 2^31 - 128), NaN too */\n"
                         "        y[i] = (%s)fq_cvt_add_clamp(t, %d, %d, %d);\n    }"
                         % (lo_i, mid, sad, pa, sbd, pb, relu_line, inv, a.ctype, zy, qmin, qmax))
        if hi_i > mid:
            loops.append("    for (i = %d; i < %d; i++) {     /* its scalar tail */\n"
                         "        float c = (float)(a[i] - %d) * %s + (float)(b[i] - %d) * %s;\n%s"
                         "        y[i] = (%s)fq_round_add_clamp_exact((float)%d + c * %s, 0, %d, %d);\n    }"
                         % (mid, hi_i, a.zero_point, sad, b.zero_point, sbd, relu_line, a.ctype, zy, inv, qmin, qmax))
    code = "\n".join([
        "/* %s: quantized add%s (torch qadd_kernel, x86 / fbgemm): per element c = s_a (a - zp_a) + s_b (b - zp_b),\n"
        " *   body: each term fmaf(s, (float)q, f32(s * -zp)), y = clamp(wrap32(cvt(min(f32(c * (1/s_y)), 2^31 - 128)) + zp_y))\n"
        " *   tail: each term f32((float)(q - zp) * s),       y = clamp(rne(f32((float)zp_y + f32(c * (1/s_y))))) */"
        % (ctx.node, " + ReLU" if relu else ""),
        c.text(),
        ctx.fn("const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3), "    int32_t i;\n" + "\n".join(loops))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def qmul(ctx, relu, zy, a, b, y, multiplier, segments):
    """torch's qmul_kernel (reference.qmul): t = f32((float)((a - za)(b - zb)) * m), then per
    torch chunk (segments: [(begin, body end, end)]) the vector body's cvtps2dq (INT32_MIN
    beyond int32) and wrapping add of zp, and the scalar tail's lrintf into int64; relu:
    max(y, zp) after the clamp."""
    qmin, qmax = QRANGE[a.dtype]
    m = ctx.consts.define("multiplier", multiplier, "f32(f32(s_a * s_b) * f32(1 / s_y))")
    lo = max(qmin, zy) if relu else qmin
    loops = []
    for begin, mid, end in segments:
        for first, last, fn, what in ((begin, mid, "fq_cvt_add_clamp", "torch's vector body"),
                                      (mid, end, "fq_lrint_add_clamp", "its scalar tail")):
            if last > first:
                loops.append("    for (i = %d; i < %d; i++) {     /* %s */\n"
                             "        int32_t p = (a[i] - %d) * (b[i] - %d);\n"
                             "        y[i] = (%s)%s((float)p * %s, %d, %d, %d);\n    }"
                             % (first, last, what, a.zero_point, b.zero_point, a.ctype, fn, m, zy, lo, qmax))
    code = "\n".join([
        "/* %s: quantized mul%s (torch qmul_kernel): t = f32((float)((a - %d)(b - %d)) * m),\n"
        " *   body: y = clamp(wrap32(cvt(t) + %d), %d, %d); tail: y = clamp(lrintf(t) + %d, %d, %d) */"
        % (ctx.node, " + ReLU" if relu else "", a.zero_point, b.zero_point, zy, lo, qmax, zy, lo, qmax),
        ctx.consts.text(),
        ctx.fn("const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3), "    int32_t i;\n" + "\n".join(loops))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def qmul_broadcast(ctx, relu, zy, a, b, y, multiplier, segments):
    """qmul of inputs of different shapes per sample (squeeze-excitation: [C, 1, 1] by [C, H, W]),
    broadcast as numpy and torch do; each output element o (C order, one sample) rounds as the
    runtime's broadcast product does: torch's vector body or its scalar tail by o's place in
    segments."""
    qmin, qmax = QRANGE[a.dtype]
    sa, sb, sy = ctx.shape_of(a), ctx.shape_of(b), ctx.shape_of(y)
    if len(sa) != len(sb):
        raise ctx.error("inputs of shapes %s and %s per sample: of different ranks" % (sa, sb))
    strides = []
    for s in (sa, sb):
        st = ctx.strides_of(s)
        strides.append(tuple(0 if d == 1 and o != 1 else st[k] for k, (d, o) in enumerate(zip(s, sy))))
    m = ctx.consts.define("multiplier", multiplier, "f32(f32(s_a * s_b) * f32(1 / s_y))")
    lo = max(qmin, zy) if relu else qmin
    tails = [(mid, end) for _, mid, end in segments if end > mid]
    cond = " || ".join("(o >= %d && o < %d)" % t for t in tails) or "0"
    body = ("{{ int32_t p = (a[{0}] - %d) * (b[{1}] - %d); y[{o}] = (%s)(%s ? fq_lrint_add_clamp((float)p * %s, %d, %d, %d)"
            " : fq_cvt_add_clamp((float)p * %s, %d, %d, %d)); }}"
            % (a.zero_point, b.zero_point, a.ctype, cond, m, zy, lo, qmax, m, zy, lo, qmax))
    code = "\n".join([
        "/* %s: quantized mul%s broadcast from %s and %s to %s per sample (torch qmul_kernel):\n"
        " *   t = f32((float)((a - %d)(b - %d)) * m); body: y = clamp(wrap32(cvt(t) + %d), %d, %d);\n"
        " *   scalar tail (%s): y = clamp(lrintf(t) + %d, %d, %d) */"
        % (ctx.node, " + ReLU" if relu else "", sa, sb, sy, a.zero_point, b.zero_point, zy, lo, qmax,
           ", ".join("%d..%d" % (t[0], t[1] - 1) for t in tails) or "none", zy, lo, qmax),
        ctx.consts.text(),
        ctx.fn("const %s *a, const %s *b, %s *y" % ((a.ctype,) * 3), "\n".join(ctx.loop_nest(sy, strides, body)))])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def qadd_scalar(ctx, value, x, y, params):
    """torch's add_scalar requantizing path (reference.add_scalar_qparams)."""
    qmin, qmax = QRANGE[x.dtype]
    c_q, s2, z2, _ = params
    m = ctx.consts.define("multiplier", np.float32(np.float32(x.scale) * np.float32(np.float32(1.0) / np.float32(s2))),
                          "f32(s * f32(1 / s'))")
    code = "\n".join([
        "/* %s: quantized add_scalar(%s): y = clamp(rne(f32((float)(q - %d + %d) * m)) + %d, %d, %d) */"
        % (ctx.node, ctx.float_literal(value)[:-1], x.zero_point, c_q, z2, qmin, qmax),
        ctx.consts.text(),
        ctx.fn("const %s *x, %s *y" % (x.ctype, x.ctype),
               "    int32_t i;\n    for (i = 0; i < %d; i++)\n"
               "        y[i] = (%s)fq_round_add_clamp_exact((float)((int64_t)x[i] - %d + (int64_t)%s) * %s, %d, %d, %d);"
               % (x.size, x.ctype, x.zero_point, _int(c_q), m, z2, qmin, qmax))])
    return ctx.step((x,), y, code, quantized=False)


def qmul_scalar(ctx, value, x, y, mode):
    """torch's mul_scalar when it moves the integers: all zero, or reflected (q -> qmax + qmin - q)."""
    qmin, qmax = QRANGE[x.dtype]
    expr = "0" if mode == "zero" else "(%s)(%d - x[i])" % (x.ctype, qmax + qmin)
    code = "\n".join([
        "/* %s: quantized mul_scalar(%s): %s */" % (ctx.node, ctx.float_literal(value)[:-1], "y = 0" if mode == "zero" else
                                                    "y = %d - q" % (qmax + qmin)),
        ctx.fn("const %s *x, %s *y" % (x.ctype, x.ctype),
               "    int32_t i;\n%s    for (i = 0; i < %d; i++)\n        y[i] = %s;" % (
                   "    (void)x;\n" if mode == "zero" else "", x.size, expr))])
    return ctx.step((x,), y, code)


def float_binary(ctx, op, relu, a, b, y):
    """Float a (op) b, one float32 rounding; relu: max(., 0) after. Inputs of different shapes
    broadcast as numpy and torch do (a dimension of size 1 repeats), the batch excepted."""
    for v in (a, b):
        if v.kind != "float":
            raise ctx.error("receives %s values where float ones are expected" % v.kind)
    sa, sb, sy = ctx.shape_of(a), ctx.shape_of(b), ctx.shape_of(y)
    words = "a + b" if op == "+" else "a * b"
    if sa == sb:
        expr = "a[i] %s b[i]" % op
        line = ("        y[i] = fq_relu_float(%s);" % expr) if relu else ("        y[i] = %s;" % expr)
        body = "    int32_t i;\n    for (i = 0; i < %d; i++)\n%s" % (a.size, line)
    else:
        if len(sa) != len(sb):
            raise ctx.error("inputs of shapes %s and %s per sample: of different ranks, the batch dimensions "
                            "would not line up" % (sa, sb))
        strides = []
        for s in (sa, sb):
            st = ctx.strides_of(s)
            strides.append(tuple(0 if d == 1 and o != 1 else st[k] for k, (d, o) in enumerate(zip(s, sy))))
        expr = "a[{0}] %s b[{1}]" % op
        body = "\n".join(ctx.loop_nest(sy, strides, ("y[{o}] = fq_relu_float(%s);" if relu else "y[{o}] = %s;")
                                       % expr))
        words += " broadcast from %s and %s to %s per sample" % (sa, sb, sy)
    code = "\n".join(["/* %s: float %s%s */" % (ctx.node, words, ", then max(., 0)" if relu else ""),
                      ctx.fn("const float *a, const float *b, float *y", body)])
    return ctx.step((a, b), y, code, quantized=False, cost="binary")


def float_scalar(ctx, op, value, x, y):
    """Float x (op) f32(value)."""
    v = ctx.consts.define("value", np.float32(value), "float32(%r)" % value)
    code = "\n".join(["/* %s: float x %s %s */" % (ctx.node, op, ctx.float_literal(value)), ctx.consts.text(),
                      ctx.fn("const float *x, float *y",
                             "    int32_t i;\n    for (i = 0; i < %d; i++)\n        y[i] = x[i] %s %s;" % (x.size, op, v))])
    return ctx.step((x,), y, code, quantized=False)


def cat(ctx, dim, xs, y, qparams):
    """Concatenation along dim (any axis but the batch), of C-order samples: for each index of
    the dimensions before dim, each input's block of the dimensions from dim on, in turn.
    qparams: None for floats, else (scale, zero_point, inv_scale) of the output (every input
    dequantized, the concatenation quantized once: torch's quantized cat)."""
    kind = "float" if qparams is None else "quant"
    for v in xs:
        if v.kind != kind:
            raise ctx.error("receives %s values where %s ones are expected" % (v.kind, kind))
    shapes = [ctx.shape_of(v) for v in xs]
    nd = len(shapes[0]) + 1
    if not -nd <= dim < nd:
        raise ctx.error("dim %d is out of range for values of %d dimensions" % (dim, nd))
    d = dim % nd
    if d == 0:
        raise ctx.error("cat along the batch dimension; the C export runs one sample per call")
    k = d - 1
    for s in shapes:
        if len(s) != len(shapes[0]) or s[:k] != shapes[0][:k] or s[k + 1:] != shapes[0][k + 1:]:
            raise ctx.error("inputs of shapes %s per sample differ outside dim %d" % (" and ".join(map(str, shapes)), dim))
    outer = int(np.prod(shapes[0][:k], dtype=np.int64))
    inner = [int(np.prod(s[k:], dtype=np.int64)) for s in shapes]
    total = sum(inner)
    args = ", ".join("const %s *x%d" % (v.ctype, i) for i, v in enumerate(xs))
    if qparams is not None:
        if any(v.dtype != xs[0].dtype for v in xs):
            raise ctx.error("cat of different dtypes")
        scale, zp, inv_scale = qparams
        qmin, qmax = QRANGE[xs[0].dtype]
        inv = ctx.consts.define("inv_scale", inv_scale, "f32(1 / s_y)")
        value = lambda i, v, src: ("(%s)fq_quantize(fq_dequantize(%s, %d, %s), %s, %d.0f, %d.0f, %d.0f)"  # noqa: E731
                                   % (y.ctype, src, v.zero_point, ctx.float_literal(v.scale), inv, zp, qmin, qmax))
        formula = "every input dequantized, the concatenation quantized with scale %s, zero point %d" % (
            ctx.float_literal(scale), zp)
    else:
        value = lambda i, v, src: src  # noqa: E731
        formula = "float concatenation"
    lines, off = [], 0
    for i, (v, n) in enumerate(zip(xs, inner)):
        src = "x%d[o * %d + i]" % (i, n) if outer > 1 else "x%d[i]" % i
        dst = "y[o * %d + %d + i]" % (total, off) if outer > 1 else "y[%d + i]" % off
        lines.append("%s    for (i = 0; i < %d; i++)\n%s        %s = %s;" % ("    " if outer > 1 else "", n,
                                                                         "    " if outer > 1 else "", dst,
                                                                         value(i, v, src)))
        off += n
    if outer > 1:
        body = "    int32_t o, i;\n    for (o = 0; o < %d; o++) {\n%s\n    }" % (outer, "\n".join(lines))
    else:
        body = "    int32_t i;\n" + "\n".join(lines)
    code = "\n".join(["/* %s: cat along dim %d of samples of shapes %s: %s */"
                      % (ctx.node, dim, ", ".join(map(str, shapes)), formula), ctx.consts.text(),
                      ctx.fn("%s, %s *y" % (args, y.ctype), body)])
    return ctx.step(tuple(xs), y, code, quantized=False, cost="binary")
