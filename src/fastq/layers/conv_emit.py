"""The C of QuantizedConv (1-D and 2-D, any stride / padding / dilation / groups, each arithmetic).

Outputs are written channels-last (NHWC: y[(oh * OW + ow) * O + o]); the input is read in its own
order through strides (a convolution's output NHWC, the model input NCHW). Weights are stored
[O][KH][KW][C/groups], the order of a channels-last receptive field, so one output pixel is one
inner product of K = KH * KW * C/groups bytes per output channel:
  - a receptive field is gathered into the scratch column `col` (padding = the input zero point,
    which (x - zx) turns into 0), or read in place for a 1x1, stride-1 convolution of a
    channels-last input;
  - the column meets FQ_ROWS weight rows at a time through the runtime's fq_dot_rows kernels
    (the portable loop, SMLAD on ARM DSP, SDOT on Armv8.2; runtime.c.in), so the fast paths are the
    ones the Linear layers already test against their portable twin;
  - depthwise layers (groups == C) run a direct loop over the taps; FBGEMM's saturating int16
    pairs (reference.fbgemm_depthwise_acc) where the layer says torch ran that kernel.
Every constant comes from the layer's prepare (the reference formulas), so C and runtime agree."""
from __future__ import annotations

import re

import numpy as np

from .. import reference
from . import conv_dsp

INT32_MAX = 2**31 - 1
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
CTYPE = {"uint8": "uint8_t", "int8": "int8_t"}


def geometry(x, kernel, stride, padding, dilation):
    """(C, H, W, KH, KW, SH, SW, PH, PW, DH, DW) of a 1-D or 2-D op (1-D: H = 1)."""
    shape = tuple(int(d) for d in x.shape[1:])
    if len(shape) == 2:
        c, h, w = shape[0], 1, shape[1]
        kernel, stride, padding, dilation = ((1,) + tuple(kernel), (1,) + tuple(stride), (0,) + tuple(padding),
                                             (1,) + tuple(dilation))
    else:
        c, h, w = shape
    return (c, h, w) + tuple(kernel) + tuple(stride) + tuple(padding) + tuple(dilation)


def x_index(x, c_expr, h_expr, w_expr, h, w, c):
    """The C index of element (c, h, w) of one sample of x in its buffer order."""
    if x.layout == "nhwc":
        return "((%s) * %d + (%s)) * %d + (%s)" % (h_expr, w, w_expr, c, c_expr)
    return "(%s) * %d + (%s) * %d + (%s)" % (c_expr, h * w, h_expr, w, w_expr)


def c_stride(x, h, w):
    """How far apart two channels of one pixel lie in x's buffer."""
    return 1 if x.layout == "nhwc" else h * w


def check_acc_bound(ctx, k, x, w_dev):
    lo, hi = QRANGE[x.dtype]
    dev_x = max(x.zero_point - lo, hi - x.zero_point)
    if k * dev_x * w_dev > INT32_MAX:
        raise ValueError("model: node %r: K = %d is large enough for the int32 accumulator to overflow "
                         "(K * %d * %d > 2^31 - 1)" % (ctx.name, k, dev_x, w_dev))


BOUNDED = 2.0 ** 22      # |v| below this: rne(v) needs no range check (fq_rne_bounded)


def _bounded(v_max):
    """Whether the value rounded is provably finite and below 2^22 in magnitude: v_max is its bound
    in exact arithmetic; 1% covers every float32 rounding on the way (each at most 2^-24)."""
    return bool(np.isfinite(v_max) and v_max * 1.01 < BOUNDED)


def epilogue(ctx, layer, data, x, n_out, acc_max):
    """(C lines computing y_q from int32 `acc` for output channel o, the formula, float free).
    Each line is one of the reference's roundings (reference.conv_requant). acc_max bounds |acc|;
    when it bounds the value rounded below 2^22, the rounding is fq_rne_bounded (no checks: one
    VCVTR on a VFP unit) and ReLU becomes the integer clamp at the zero point (exact: every step
    from f to y is monotone, so y(max(f, 0)) = max(y(f), y(0)) = max(y(f), zy))."""
    c = ctx.consts
    out = layer.dtype.name
    qmin, qmax = QRANGE[out]
    zy = int(layer.zero_point)
    a = layer.arithmetic
    hi = c.define("y_max", qmax)
    zyd = c.define("y_zero_point", zy, "output %s, scale %.9g" % (out, layer.scale))
    ct = CTYPE[out]
    full = lambda v: np.broadcast_to(np.asarray(v).reshape(-1) if np.ndim(v) else v, (n_out,))  # noqa: E731
    amax = lambda v: float(np.max(np.abs(np.asarray(v, np.float64)))) if v is not None else 0.0  # noqa: E731
    lines = []
    if a == "onednn":
        f_max = acc_max * amax(data["s_src"]) * amax(data["sw"]) + amax(layer.bias)
        fast = _bounded(f_max * amax(data["inv_y"]) + abs(zy))
        lo = c.define("y_min", max(qmin, zy) if (fast and layer.relu) else qmin)
        s_src = c.define("s_src", np.float32(data["s_src"]), "f32(1 / f32(1 / s_x))")
        sw = c.column("w_scale", "float", full(data["sw"]), "f32(weight scale)")
        inv_y = c.define("inv_y", np.float32(data["inv_y"]), "f32(1 / s_y)")
        lines += ["float f = (float)acc * %s;" % s_src, "f = f * %s;" % sw]
        formula = "f = f32(f32((float)acc * s_src) * sw[n])"
        if layer.bias is not None:
            b = c.column("bias", "float", layer.bias, "float bias")
            lines.append("f = f + %s;" % b)
            formula += ", f = f32(f + bias[n])"
        if layer.relu and not fast:
            lines.append("f = fq_relu_float(f);")
            formula += ", relu"
        if fast:
            # f + 0.0f is f (but for -0, which rounds to 0 all the same): no add for zy = 0
            add = "" if zy == 0 else " + (float)%s" % zyd
            lines.append("y[o] = (%s)fq_clamp(fq_rne_bounded(f * %s%s), %s, %s);" % (ct, inv_y, add, lo, hi))
            formula += ", y = clamp(rne(f32(f32(f * inv_y) + zy))%s)" % (", ReLU: at zy" if layer.relu else "")
            return lines, formula, False
        lines.append("y[o] = (%s)fq_round_add_clamp(f * %s + (float)%s, 0, %s, %s);" % (ct, inv_y, zyd, lo, hi))
        formula += ", y = clamp(rne(f32(f32(f * inv_y) + zy)))"
        return lines, formula, False
    lo = c.define("y_min", max(qmin, zy) if layer.relu else qmin, "ReLU: clamp at the zero point" if layer.relu else None)
    if a == "fbgemm":
        bias_b, bias_r, mult = data["bias_b"], data["bias_r"], data["mult"]
        m = c.column("mult", "float", full(mult).astype(np.float32), "f32(f32(s_x * s_w) / s_y)")
        f_max = acc_max + (amax(bias_b) * (amax(bias_r) if bias_r is not None else 1.0) if bias_b is not None else 0.0)
        rnd = "fq_clamp(fq_rne_bounded(f * %s) + %s, %s, %s)" % (m, zyd, lo, hi) if _bounded(f_max * amax(mult)) \
            else "fq_round_add_clamp(f * %s, %s, %s, %s)" % (m, zyd, lo, hi)
        if bias_b is None:
            lines.append("float f = (float)acc;")
            formula = "y = clamp(rne(f32((float)acc * mult[n])) + zy)"
        elif np.all(np.asarray(bias_r, np.float32) == 1):
            bb = c.column("bias", "float", full(bias_b).astype(np.float32), "the bias term")
            lines.append("float f = (float)acc + %s;" % bb)
            formula = "y = clamp(rne(f32(f32((float)acc + bias_b[n]) * mult[n])) + zy)"
        else:
            bb = c.column("bias", "float", full(bias_b).astype(np.float32), "float bias")
            rr = c.column("bias_rcp", "float", full(bias_r).astype(np.float32), "f32(1 / f32(s_x * s_w))")
            lines.append("float f = fq_fmaf(%s, %s, (float)acc);" % (bb, rr))
            formula = "y = clamp(rne(f32(fmaf(bias[n], rcp[n], (float)acc) * mult[n])) + zy)"
        lines.append("y[o] = (%s)%s;" % (ct, rnd))
        return lines, formula, False
    if a == "qnnpack":
        r = c.column("req", "float", full(data["req"]).astype(np.float32), "f32(f32(s_w * s_x) * f32(1 / s_y))")
        formula = "y = clamp(rne(f32((float)acc * req[n])) + zy)"
        has_bias = data["bq"] is not None and layer.bias is not None
        a_max = acc_max + (amax(data["bq"]) if has_bias else 0.0)
        if has_bias:
            bq = c.column("bias", "int32_t", full(data["bq"]).astype(np.int64), "int32 bias rne(bias / f32(s_x * s_w))")
            lines.append("acc = fq_wrap_add(acc, %s);" % bq)
            formula = "y = clamp(rne(f32((float)(acc + bias_q[n]) * req[n])) + zy)"
        if a_max < 2.0 ** 31 and _bounded(a_max * amax(data["req"])):
            lines.append("y[o] = (%s)fq_clamp(fq_rne_bounded((float)acc * %s) + %s, %s, %s);" % (ct, r, zyd, lo, hi))
        else:
            lines.append("y[o] = (%s)fq_round_add_clamp((float)acc * %s, %s, %s, %s);" % (ct, r, zyd, lo, hi))
        return lines, formula, False
    if a == "tflite":
        q = c.column("multiplier", "int32_t", full(data["multiplier"]).astype(np.int64), "Q31 multiplier")
        s = c.column("shift", "int32_t", full(data["shift"]).astype(np.int64), "shift, > 0 = left")
        fn = {"double": "fq_mbqm_double", "single": "fq_mbqm_single", "double_up": "fq_mbqm_double_up"}[layer.rounding]
        formula = "y = clamp(MBQM(acc, multiplier[n], shift[n]) + zy)"
        if data["int_bias"] is not None:
            b = np.asarray(data["int_bias"], np.int64)
            if b.size and (b.min() < -(2**31) or b.max() > INT32_MAX):
                raise ctx.error("an int32 bias outside int32")
            bq = c.column("bias", "int32_t", full(b), "int32 bias")
            lines.append("acc = fq_wrap_add(acc, %s);" % bq)
            formula = "y = clamp(MBQM(acc + bias[n], multiplier[n], shift[n]) + zy)"
        lines.append("y[o] = (%s)fq_add_clamp(%s(acc, %s, %s), %s, %s, %s);" % (ct, fn, q, s, zyd, lo, hi))
        return lines, formula + " (MBQM rounding %r)" % layer.rounding, True
    raise ctx.error("arithmetic %r" % a)         # pragma: no cover - the layer checks its setting


def _out_with_columns(epi, consts_text, out_fn, yt):
    """The epilogue as a function of its per-channel constants: ([(array name, C type)], C of
    <out_fn>_k(acc, o, y, k0, k1, ...)) where k_i stands for array_i[o]. A kernel looping over
    one channel's pixels loads the constants once into locals (registers) and calls this."""
    names = []
    for line in epi:
        for nm in re.findall(r"(\w+)\[n\]", line):
            if nm not in names:
                names.append(nm)
    cols = []
    for nm in names:
        m = re.search(r"static const (\w+) %s\[" % nm, consts_text)
        if m is None:                  # pragma: no cover - every column is an array of Consts
            raise AssertionError("no array %s" % nm)
        cols.append((nm, m.group(1)))
    body = []
    for line in epi:
        for i, (nm, _) in enumerate(cols):
            line = line.replace("%s[n]" % nm, "k%d" % i)
        body.append(line)
    args = "".join(", %s k%d" % (t, i) for i, (_, t) in enumerate(cols))
    code = "/* the same, the channel's constants passed in */\nstatic inline void %s_k(int32_t acc, int32_t o, %s *y%s)\n{\n%s\n}" % (
        out_fn, yt, args, _indent(body, 4))
    return cols, code


def _indent(lines, n):
    return "\n".join(" " * n + line for line in lines)


def emit_conv(layer, ctx, x, y, data):
    if x.kind != "quant" or x.shape is None or len(x.shape) != layer.dims + 2:
        raise ctx.error("needs a quantized [N, C, %s] input with a known shape (export with input_shape=...)"
                        % ("L" if layer.dims == 1 else "H, W"))
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = geometry(x, layer.kernel_size, layer.stride, layer.padding,
                                                       layer.dilation)
    O, G = layer.out_channels, layer.groups
    CG, OG = C // G, O // G
    oshape = tuple(int(d) for d in y.shape[2:])
    OH, OW = (1, oshape[0]) if len(oshape) == 1 else oshape
    y.layout = "nhwc"
    zw_all = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight.zero_point, np.int64)), (O,))
    w = layer.weight.values.reshape(O, CG, KH, KW).astype(np.int64)
    w_dev = int(np.max(np.abs(w - zw_all[:, None, None, None])))
    c = ctx.consts
    xt, yt = CTYPE[x.dtype], CTYPE[layer.dtype.name]
    zx = int(x.zero_point)
    depthwise = G == C and CG == 1 and (G > 1 or bool(data.get("saturates")))     # C = 1, G = 1: a plain conv
    saturates = bool(data.get("saturates"))
    if saturates and not depthwise:
        raise ctx.error("FBGEMM's saturating int16 pairs on a layer that is not depthwise")
    K = KH * KW * CG
    dev_x = max(zx - QRANGE[x.dtype][0], QRANGE[x.dtype][1] - zx)
    if saturates:          # acc = s - (zx + flip)(sum w - zw KK) - zw sum x: s sums int16-saturated pairs
        kk, zmax = KH * KW, int(np.max(np.abs(zw_all)))
        acc_max = (kk + 1) // 2 * 32768 + 255 * (int(np.max(np.abs(w.reshape(O, -1).sum(1)))) + zmax * kk) \
            + zmax * 255 * kk
    else:
        acc_max = K * dev_x * w_dev
    epi, formula, float_free = epilogue(ctx, layer, data, x, O, acc_max)
    # the DSP paths (conv_dsp.py) where they apply; the portable loop's constants then sit under
    # #if !defined(FQ_ARM_DSP) (pc), the DSP path's under #if defined(FQ_ARM_DSP)
    dw_ok = depthwise and O == C and C % 4 == 0 and x.layout == "nhwc"
    dsp = "conv" if not depthwise else ("depthwise" if dw_ok and not saturates else (
        "saturating" if dw_ok and not np.any(zw_all) else None))
    pc = type(c)(c.prefix) if dsp else c
    zwd = pc.column("w_zero_point", "int32_t", zw_all, "weight zero point")
    zw_expr = zwd.replace("[n]", "[o]")
    out_fn = ctx.prefix + "__out"      # the node's names: prefix + "__" + a name (export/emit.Consts)
    out_code = "/* y[o] from acc, output channel o */\nstatic inline void %s(int32_t acc, int32_t o, %s *y)\n{\n%s\n}" % (
        out_fn, yt, _indent([b.replace("[n]", "[o]") for b in epi], 4))
    body = ["%s(acc, o, y);" % out_fn]
    guarded = []           # constants of one path only, each under its #if
    flash = None
    xi = lambda ce, he, we: x_index(x, ce, he, we, H, W, C)  # noqa: E731
    geo = "k %dx%d, stride %d,%d, padding %d,%d, dilation %d,%d, groups %d" % (KH, KW, SH, SW, PH, PW, DH, DW, G)
    head = ("/* %s: %s %dx%dx%d -> %dx%dx%d (C x H x W), %s, arithmetic %s%s, %s -> %s, input %s, output NHWC\n"
            " *   acc = sum_{kh, kw, c} (x[c][oh*s - p + kh*d][ow*s - p + kw*d] - zx) * (w[o][c][kh][kw] - zw)%s\n"
            " *   %s */" % (ctx.node, ctx.op, C, H, W, O, OH, OW, geo, layer.arithmetic, ", ReLU" if layer.relu else "",
                           x.dtype, layer.dtype.name, (x.layout or "nchw").upper(),
                           "\n *   (FBGEMM's depthwise kernel: raw products summed in int16 pairs that saturate)"
                           if saturates else "", formula))
    outer = ["int32_t oh, ow, o;", "for (oh = 0; oh < %d; oh++) {" % OH, "    for (ow = 0; ow < %d; ow++) {" % OW]
    close = ["    }", "}"]
    if depthwise:
        wd = pc.array("weight", "int8_t", w.reshape(O, KH * KW).astype(np.int8),
                     "int8 weights w[o][kh * KW + kw] (depthwise: one input channel per output)")
        mult = OG
        xr = "(int32_t)x[%s]" % xi("ci", "ih", "iw")
        flip = 128 if x.dtype == "int8" else 0
        colsum = pc.array("w_sum", "int32_t", w.reshape(O, -1).sum(1), "sum of the raw weights of each output") \
            if saturates else None
        if not saturates:
            check_acc_bound(ctx, K, x, w_dev)
            taps = ["int32_t acc = 0, kh, kw;",
                    "const int32_t ci = o / %d;" % mult if mult > 1 else "const int32_t ci = o;",
                    "for (kh = 0; kh < %d; kh++) {" % KH,
                    "    const int32_t ih = oh * %d - %d + kh * %d;" % (SH, PH, DH),
                    "    if (ih < 0 || ih >= %d) continue;      /* padding: x - zx = 0 */" % H,
                    "    for (kw = 0; kw < %d; kw++) {" % KW,
                    "        const int32_t iw = ow * %d - %d + kw * %d;" % (SW, PW, DW),
                    "        if (iw < 0 || iw >= %d) continue;" % W,
                    "        acc += (%s - %d) * ((int32_t)%s[o * %d + kh * %d + kw] - %s);" % (xr, zx, wd, KH * KW, KW, zw_expr),
                    "    }", "}"]
        else:
            kk = KH * KW
            taps = ["int32_t t, s = 0, sx = 0, acc;",
                    "int32_t xt[%d];" % kk,
                    "const int32_t ci = o / %d;" % mult if mult > 1 else "const int32_t ci = o;",
                    "const int8_t *wo = %s + o * %d;" % (wd, kk),
                    "for (t = 0; t < %d; t++) {      /* raw uint8 taps, padding = zx */" % kk,
                    "    const int32_t ih = oh * %d - %d + t / %d * %d, iw = ow * %d - %d + t %% %d * %d;" % (SH, PH, KW, DH, SW, PW, KW, DW),
                    "    xt[t] = (ih < 0 || ih >= %d || iw < 0 || iw >= %d) ? %d : %s + %d;" % (H, W, zx + flip, xr, flip),
                    "    sx += xt[t];", "}",
                    "for (t = 0; t + 1 < %d; t += 2) s += fq_clamp(xt[t] * wo[t] + xt[t + 1] * wo[t + 1], -32768, 32767);" % kk]
            if kk % 2:
                taps.append("s += xt[%d] * wo[%d];" % (kk - 1, kk - 1))
            taps.append("acc = s - %d * (%s[o] - %s * %d) - %s * sx;" % (zx + flip, colsum, zw_expr, kk, zw_expr))
        kk = KH * KW
        cs = c_stride(x, H, W)
        # constant offsets of the taps from the window's corner, in x's buffer order
        offs = [(kh * DH * W + kw * DW) * (C if x.layout == "nhwc" else 1) for kh in range(KH) for kw in range(KW)]
        ci = "o / %d" % mult if mult > 1 else "o"
        if not saturates:
            wq = pc.array("w_minus_zw", "int16_t", (w.reshape(O, kk) - zw_all[:, None]).astype(np.int16),
                         "w - zw of each tap (interior windows)")
            wsum = pc.array("w_minus_zw_sum", "int32_t", (w.reshape(O, kk) - zw_all[:, None]).sum(1),
                           "sum over the taps of w - zw")
            fast = ["const int16_t *wo = %s + o * %d;" % (wq, kk),
                    "int32_t acc = -(%d) * %s[o];      /* sum (x - zx) w' = sum x w' - zx sum w' */" % (zx, wsum)]
            fast += ["acc += (int32_t)xc[%d] * wo[%d];" % (off, t) for t, off in enumerate(offs)]
        else:
            zero_zw = not np.any(zw_all)
            fast = ["const int8_t *wo = %s + o * %d;" % (wd, kk), "int32_t s = 0, acc;"]
            u = lambda t: "((int32_t)xc[%d] + %d)" % (offs[t], flip) if flip else "(int32_t)xc[%d]" % offs[t]  # noqa: E731
            for t in range(0, kk - 1, 2):
                fast.append("s += fq_clamp(%s * wo[%d] + %s * wo[%d], -32768, 32767);" % (u(t), t, u(t + 1), t + 1))
            if kk % 2:
                fast.append("s += %s * wo[%d];" % (u(kk - 1), kk - 1))
            if zero_zw:
                fast.append("acc = s - %d * %s[o];      /* zw = 0: no sum of x */" % (zx + flip, colsum))
            else:
                fast.append("{ int32_t sx = %d * %d%s;" % (flip, kk, "".join(" + xc[%d]" % off for off in offs)))
                fast.append("  acc = s - %d * (%s[o] - %s * %d) - %s * sx; }" % (zx + flip, colsum, zw_expr, kk, zw_expr))
        code_body = ["int32_t oh, ow, o;",
                     "for (oh = 0; oh < %d; oh++) {" % OH,
                     "    const int32_t ih0 = oh * %d - %d;" % (SH, PH),
                     "    const int rows_in = ih0 >= 0 && ih0 + %d < %d;" % ((KH - 1) * DH, H),
                     "    for (ow = 0; ow < %d; ow++) {" % OW,
                     "        const int32_t iw0 = ow * %d - %d;" % (SW, PW),
                     "        if (rows_in && iw0 >= 0 && iw0 + %d < %d) {      /* every tap inside: unrolled */" % ((KW - 1) * DW, W),
                     "            const %s *xp = x + %s;" % (xt, x_index(x, "0", "ih0", "iw0", H, W, C)),
                     "            for (o = 0; o < %d; o++) {" % O,
                     "                const %s *xc = xp + (%s) * %d;" % (xt, ci, cs)]
        code_body += ["                " + t for t in fast] + ["                " + b for b in body]
        code_body += ["            }", "        } else {                  /* a window over the padding */",
                      "            for (o = 0; o < %d; o++) {" % O]
        code_body += ["                " + t for t in taps] + ["                " + b for b in body]
        code_body += ["            }", "        }", "        y += %d;" % O, "    }", "}"]
        scratch = 0
        if dsp:
            wname = ctx.prefix + "__weight_dsp"
            gd = {"geo": (C, H, W, KH, KW, SH, SW, PH, PW, DH, DW), "OH": OH, "OW": OW, "xt": xt, "zx": zx,
                  "wname": wname, "flip": flip, "offname": ctx.prefix + "__sat_offset"}
            if dsp == "depthwise" and conv_dsp.depthwise_rows_ok(gd["geo"]):
                words = conv_dsp.depthwise_row_words(w.reshape(O, kk) - zw_all[:, None], KH)
                text = conv_dsp.words_array(wname, words, "w - zw as int16 pairs for the row kernel: [channel][kh]"
                                                          "[(w0, w1), (w1, w2)]")
                gd["yt"] = yt
                gd["cols"], out_k = _out_with_columns(epi, c.text(), out_fn, yt)
                dsp_lines = conv_dsp.depthwise_rows_body(gd, out_fn + "_k")
                out_code += "\n" + out_k
                scratch = conv_dsp.depthwise_rows_scratch(gd["geo"], OW)
                code_body = ["(void)scratch;"] + code_body
            elif dsp == "saturating" and conv_dsp.depthwise_rows_ok(gd["geo"]) and KH == 3:
                words = conv_dsp.depthwise_sat_row_words(w.reshape(O, kk))
                dc = type(c)(c.prefix)
                dc.array("sat_offset", "int32_t", (zx + flip) * w.reshape(O, -1).sum(1), "(zx + flip) * sum of the raw weights")
                text = conv_dsp.words_array(wname, words, "raw int8 weights as int16 pairs of taps (w_t, w_t+1) for "
                                                          "SMUAD: [channel][pair], then the last tap") + "\n" + dc.text()
                words = np.concatenate([words, np.zeros(O, np.uint32)])
                gd["yt"] = yt
                gd["cols"], out_k = _out_with_columns(epi, c.text(), out_fn, yt)
                dsp_lines = conv_dsp.depthwise_rows_body(gd, out_fn + "_k", sat=True)
                out_code += "\n" + out_k
                scratch = conv_dsp.depthwise_rows_scratch(gd["geo"], OW)
                code_body = ["(void)scratch;"] + code_body
            elif dsp == "depthwise":
                words = conv_dsp.depthwise_words(w.reshape(O, kk) - zw_all[:, None])
                text = conv_dsp.words_array(wname, words, "w - zw as int16 for the SMLAD path: [channel / 4][tap]"
                                                          "[(c0, c2), (c1, c3)]")
                dsp_lines = conv_dsp.depthwise_body(gd, out_fn)
            else:
                words = conv_dsp.depthwise_sat_words(w.reshape(O, kk))
                dc = type(c)(c.prefix)
                dc.array("sat_offset", "int32_t", (zx + flip) * w.reshape(O, -1).sum(1), "(zx + flip) * sum of the raw weights")
                text = conv_dsp.words_array(wname, words, "raw int8 weights as int16 pairs of taps for SMUAD: [channel / 4]"
                                                          "[tap pair][c0, c2, c1, c3][(w_t, w_t+1)], then the last tap") \
                    + "\n" + dc.text()
                words = np.concatenate([words, np.zeros(O, np.uint32)])
                dsp_lines = conv_dsp.depthwise_sat_body(gd, out_fn)
            guarded.append(("defined(FQ_ARM_DSP)", text))
            code_body = ["#if defined(FQ_ARM_DSP)"] + dsp_lines + ["#else"] + code_body + ["#endif"]
            flash = c.flash + max(pc.flash, 4 * len(words))
    else:
        check_acc_bound(ctx, K, x, w_dev)
        wr = w.transpose(0, 2, 3, 1).reshape(O, K)          # [o][kh][kw][c]
        geo = (C, H, W, KH, KW, SH, SW, PH, PW, DH, DW)
        kwp = conv_dsp.row_width(geo, x.layout == "nhwc")
        if kwp:        # a channels-first input read a kernel row per word: k = [c][kh][kw < KWP]
            w_dsp = conv_dsp.row_weights(w - zw_all[:, None, None, None], kwp)
            order = "[c][kh][kw padded to %d]" % kwp
        else:
            w_dsp, order = wr - zw_all[:, None], "[kh][kw][c]"
        words, og2, k4 = conv_dsp.weight_words(w_dsp, G)
        wname = ctx.prefix + "__weight_dsp"
        dsp_lines, dsp_scratch = conv_dsp.conv_body(
            {"geo": geo, "G": G, "O": O, "OG": OG, "OG2": og2, "K": w_dsp.shape[1], "K4": k4, "KWP": kwp,
             "OH": OH, "OW": OW, "xt": xt, "yt": yt, "zx": zx, "wname": wname, "nhwc": x.layout == "nhwc"}, out_fn)
        guarded.append(("defined(FQ_ARM_DSP)", conv_dsp.words_array(
            wname, words, "w - zw as int16 for the SMLAD path: [channel pair][k / 4][channel][(k0, k2), (k1, k3)], "
                          "k = %s" % order)))
        wd = pc.array("weight", "int8_t", wr.astype(np.int8),
                      "int8 weights w[o][(kh * KW + kw) * C/groups + c] (channels-last order)")
        flash = c.flash + max(pc.flash, 4 * len(words))
        per_row = zwd.endswith("[n]")
        zwarr = zwd[:-3] if per_row else None
        direct = KH == KW == 1 and SH == SW == 1 and PH == PW == 0 and G == 1 and x.layout == "nhwc"
        cs = c_stride(x, H, W)
        lines = ["int32_t accs[FQ_ROWS], oh, ow, g, n0, r, o;"]
        if not direct:
            lines.append("%s *col = (%s *)(void *)scratch;     /* one receptive field */" % (xt, xt))
        lines += ["for (oh = 0; oh < %d; oh++) {" % OH, "    for (ow = 0; ow < %d; ow++) {" % OW]
        if direct:
            lines += ["        const %s *src = x + (oh * %d + ow) * %d;      /* 1x1: the pixel's channels */" % (xt, W, C)]
        lines += ["        for (g = 0; g < %d; g++) {" % G]
        if not direct:
            lines += ["            const %s *src = col;" % xt,
                      "            int32_t kh, kw, ci, k = 0;",
                      "            for (kh = 0; kh < %d; kh++) {" % KH,
                      "                const int32_t ih = oh * %d - %d + kh * %d;" % (SH, PH, DH),
                      "                for (kw = 0; kw < %d; kw++) {" % KW,
                      "                    const int32_t iw = ow * %d - %d + kw * %d;" % (SW, PW, DW),
                      "                    if (ih < 0 || ih >= %d || iw < 0 || iw >= %d) {" % (H, W),
                      "                        for (ci = 0; ci < %d; ci++) col[k++] = (%s)%d;     /* padding: zx */" % (CG, xt, zx),
                      "                    } else {",
                      "                        const %s *xp = x + %s;" % (xt, xi("g * %d" % CG, "ih", "iw")),
                      "                        for (ci = 0; ci < %d; ci++) col[k++] = xp[ci * %d];" % (CG, cs),
                      "                    }", "                }", "            }"]
        zws = "%s + g * %d + n0" % (zwarr, OG) if per_row else "NULL"
        zw1 = "0" if per_row else zwd
        lines += ["            for (n0 = 0; n0 < %d; n0 += FQ_ROWS) {" % OG,
                  "                const int32_t rows = %d - n0 < FQ_ROWS ? %d - n0 : FQ_ROWS;" % (OG, OG),
                  "                fq_dot_rows_%s(src, %s + (g * %d + n0) * %d, %d, %d, %s, %s, rows, accs);"
                  % ("u8" if x.dtype == "uint8" else "s8", wd, OG, K, K, zx, zws, zw1),
                  "                for (r = 0; r < rows; r++) {",
                  "                    int32_t acc = accs[r];",
                  "                    o = g * %d + n0 + r;" % OG]
        lines += ["                    " + b for b in body]
        lines += ["                }", "            }", "        }", "        y += %d;" % O, "    }", "}"]
        if direct:
            lines.insert(0, "(void)scratch;")
        code_body = ["#if defined(FQ_ARM_DSP)"] + dsp_lines + ["#else"] + lines + ["#endif"]
        scratch = max(dsp_scratch, 0 if direct else K)
    args = "const %s *x, %s *y%s" % (xt, yt, ", uint8_t *scratch" if scratch else "")
    fn = ctx.fn(args, "\n".join(l if l.startswith("#") else "    " + l for l in code_body))
    if dsp:
        guarded.append(("!defined(FQ_ARM_DSP)", pc.text()))
    code = "\n".join([head, c.text()] + ["#if %s\n%s\n#endif" % g for g in guarded if g[1]] + [out_code, fn])
    kw = {} if flash is None else {"flash": flash}
    return ctx.step((x,), y, code, scratch=scratch, quantized=float_free, cost="conv", **kw)


def _pool_geometry(layer, x):
    dims = layer.dims
    dil = getattr(layer, "dilation", (1,) * dims)
    return geometry(x, layer.kernel_size, layer.stride, layer.padding, dil)


def _out_hw(y):
    s = tuple(int(d) for d in y.shape[2:])
    return (1, s[0]) if len(s) == 1 else s


def emit_max_pool(layer, ctx, x, y):
    if x.kind != "quant" or x.shape is None or len(x.shape) != layer.dims + 2:
        raise ctx.error("needs a quantized input with a known shape (export with input_shape=...)")
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = _pool_geometry(layer, x)
    OH, OW = _out_hw(y)
    y.layout = "nhwc"
    xt = CTYPE[x.dtype]
    lo = QRANGE[x.dtype][0]
    body = ["int32_t oh, ow, ch, kh, kw;",
            "for (oh = 0; oh < %d; oh++) {" % OH,
            "    for (ow = 0; ow < %d; ow++) {" % OW,
            "        for (ch = 0; ch < %d; ch++) {" % C,
            "            int32_t m = %d;" % lo,
            "            for (kh = 0; kh < %d; kh++) {" % KH,
            "                const int32_t ih = oh * %d - %d + kh * %d;" % (SH, PH, DH),
            "                if (ih < 0 || ih >= %d) continue;      /* padding never wins */" % H,
            "                for (kw = 0; kw < %d; kw++) {" % KW,
            "                    const int32_t iw = ow * %d - %d + kw * %d;" % (SW, PW, DW),
            "                    if (iw >= 0 && iw < %d && x[%s] > m) m = x[%s];" % (W, x_index(x, "ch", "ih", "iw", H, W, C),
                                                                                x_index(x, "ch", "ih", "iw", H, W, C)),
            "                }", "            }",
            "            y[(oh * %d + ow) * %d + ch] = (%s)m;" % (OW, C, xt),
            "        }", "    }", "}"]
    head = "/* %s: MaxPool k %dx%d s %d,%d p %d,%d d %d,%d over %dx%dx%d, output NHWC */" % (
        ctx.node, KH, KW, SH, SW, PH, PW, DH, DW, C, H, W)
    code = "\n".join([head, ctx.fn("const %s *x, %s *y" % (xt, xt), _indent(body, 4))])
    return ctx.step((x,), y, code, quantized=True, cost="pool")


def emit_avg_pool(layer, ctx, x, y):
    if x.kind != "quant" or x.shape is None or len(x.shape) != layer.dims + 2:
        raise ctx.error("needs a quantized input with a known shape (export with input_shape=...)")
    if layer.path == "qnnpack" and x.dtype != "uint8":
        raise ctx.error("path 'qnnpack' takes uint8 values, got %s" % x.dtype)
    C, H, W, KH, KW, SH, SW, PH, PW, _, _ = _pool_geometry(layer, x)
    OH, OW = _out_hw(y)
    y.layout = "nhwc"
    xt = CTYPE[x.dtype]
    qmin, qmax = QRANGE[x.dtype]
    zx = int(x.zero_point)
    path = layer.path
    if path == "qnnpack":       # QNNPACK's multiplier f32(s / f32(s * KH*KW)), s the input scale
        mq = ctx.float_literal(reference.qnnpack_pool_multiplier(x.scale, KH * KW))
        div, formula = None, "y = clamp(rne(f32((float)acc * m)) + zx), m = f32(s / f32(s * (KH*KW)))"
    else:
        clip = "(he - hs) * (we - ws)" if layer.count_include_pad else "(h1 - h0) * (w1 - w0)"
        div = "%d" % layer.divisor_override if layer.divisor_override else clip
    nb = C // layer.vector_channels * layer.vector_channels if (path == "nhwc" and layer.vector_channels) else 0
    if path == "nchw":
        rnd = ["y[(oh * %d + ow) * %d + ch] = (%s)fq_round_add_clamp_exact((float)acc * m + (float)%d, 0, %d, %d);"
               % (OW, C, xt, zx, qmin, qmax)]
        formula = "y = clamp(rne(f32(f32((float)acc * m) + zx))), m = f32(1 / divisor)"
    elif path == "qnnpack":
        rnd = ["y[(oh * %d + ow) * %d + ch] = (%s)fq_round_add_clamp_exact((float)acc * m, %d, %d, %d);"
               % (OW, C, xt, zx, qmin, qmax)]
    else:
        rnd = ["if (ch < %d)    /* torch's vector body: the zero point after rounding */" % nb,
               "    y[(oh * %d + ow) * %d + ch] = (%s)fq_round_add_clamp_exact((float)acc * m, %d, %d, %d);"
               % (OW, C, xt, zx, qmin, qmax),
               "else           /* its scalar tail: f32(1 / f32(1 / m)), the zero point before rounding */",
               "    y[(oh * %d + ow) * %d + ch] = (%s)fq_round_add_clamp_exact((float)acc * mt + (float)%d, 0, %d, %d);"
               % (OW, C, xt, zx, qmin, qmax)]
        formula = ("channels < %d: y = clamp(rne(f32((float)acc * m)) + zx); the rest: "
                   "y = clamp(rne(f32(f32((float)acc * f32(1 / f32(1 / m))) + zx)))" % nb)
    body = ["int32_t oh, ow, ch, ih, iw;",
            "for (oh = 0; oh < %d; oh++) {" % OH,
            "    const int32_t hs = oh * %d - %d, he = hs + %d < %d ? hs + %d : %d;" % (SH, PH, KH, H + PH, KH, H + PH),
            "    const int32_t h0 = hs > 0 ? hs : 0, h1 = he < %d ? he : %d;" % (H, H),
            "    for (ow = 0; ow < %d; ow++) {" % OW,
            "        const int32_t ws = ow * %d - %d, we = ws + %d < %d ? ws + %d : %d;" % (SW, PW, KW, W + PW, KW, W + PW),
            "        const int32_t w0 = ws > 0 ? ws : 0, w1 = we < %d ? we : %d;" % (W, W),
            "        const int32_t size = (h1 > h0 ? h1 - h0 : 0) * (w1 > w0 ? w1 - w0 : 0);",
            ("        const float m = 1.0f / (float)(%s);" % div) if div else "        const float m = %s;" % mq,
            "        const float mt = 1.0f / (1.0f / m);",
            "        (void)mt; (void)size;",
            "        for (ch = 0; ch < %d; ch++) {" % C,
            "            int32_t acc = 0;",
            "            for (ih = h0; ih < h1; ih++)",
            "                for (iw = w0; iw < w1; iw++) acc += x[%s];" % x_index(x, "ch", "ih", "iw", H, W, C),
            "            acc -= size * %d;" % zx] + ["            " + r for r in rnd] + ["        }", "    }", "}"]
    head = ("/* %s: AvgPool k %dx%d s %d,%d p %d,%d over %dx%dx%d, path %s, output NHWC, qparams kept\n"
            " *   acc = sum over the window's inputs of (x - zx); %s */"
            % (ctx.node, KH, KW, SH, SW, PH, PW, C, H, W, path, formula))
    code = "\n".join([head, ctx.fn("const %s *x, %s *y" % (xt, xt), _indent(body, 4))])
    return ctx.step((x,), y, code, quantized=False, cost="pool")


__all__ = ["emit_conv", "emit_max_pool", "emit_avg_pool", "reference"]
