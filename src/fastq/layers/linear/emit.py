"""The C of the linear family (QuantizedLinear, DynamicQuantizedLinear): the integer core for
FQ_ROWS rows at a time, then each mode's epilogue, one rounding per line. Every constant comes
from the layer's prepare (the same fastq.reference formulas its kernels' constants come from),
so the C and the Python runtime cannot drift apart. Called by the ops' emit_c with the
exporter's context (export/emit.py): names, constants, the Step."""
from __future__ import annotations

import numpy as np

from . import dsp

INT32_MAX = 2**31 - 1
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
CTYPE = {"uint8": "uint8_t", "int8": "int8_t"}


def qrange_x(x):
    return QRANGE[x.dtype]


def check_width(ctx, layer, x):
    """One sample must be one row of K inputs."""
    k = layer.weight.values.shape[1]
    if x.size != k:
        raise ctx.error("takes %d inputs per sample but receives %d (a Flatten of several rows per sample "
                        "cannot be exported)" % (k, x.size))


def _w_zero_points(layer):
    w = layer.weight
    n = w.values.shape[0]
    return np.broadcast_to(np.asarray(w.zero_point, np.int64).reshape(-1), (n,))


def check_acc_bound(node, layer, x_dtype, x_zero_point):
    """int32 cannot overflow: K * max|x - zx| * max|w - zw| <= 2^31 - 1 (zx None: any zero point
    of a uint8 input, as a dynamic layer picks it per call)."""
    w = layer.weight.values.astype(np.int64)
    k = w.shape[1]
    dev_w = int(np.max(np.abs(w - _w_zero_points(layer)[:, None]))) if w.size else 0
    qmin, qmax = QRANGE[x_dtype]
    dev_x = (qmax - qmin) if x_zero_point is None else max(x_zero_point - qmin, qmax - x_zero_point)
    if k * dev_x * dev_w > INT32_MAX:
        raise ValueError("model: node %r: K = %d is large enough for the int32 accumulator to overflow "
                         "(K * %d * %d > 2^31 - 1); split the layer" % (node, k, dev_x, dev_w))


def _weights(c, layer):
    w = np.ascontiguousarray(layer.weight.values)
    ident = c.array("weight", "int8_t", w, "int8 weights w[n][k] at [n * K + k] (torch Linear layout: one row per output)")
    zw = c.column("w_zero_point", "int32_t", _w_zero_points(layer), "weight zero point")
    return ident, zw


def _rows_loop(x_dtype, x_name, weight, k_macro, n_macro, zx, zw, body):
    """The layer loop: the integer core for FQ_ROWS rows at a time (1 for the portable loop, 2
    with the ARM DSP path, 4 with SDOT), then each row's epilogue `body` on its acc."""
    if zw.endswith("[n]"):
        zws, zw1 = "%s + n0" % zw[:-3], "0"
    else:
        zws, zw1 = "NULL", zw
    return ("    int32_t accs[FQ_ROWS], n0, n;\n"
            "    for (n0 = 0; n0 < %s; n0 += FQ_ROWS) {\n"
            "        const int32_t rows = %s - n0 < FQ_ROWS ? %s - n0 : FQ_ROWS;\n"
            "        /* accs[n - n0] = sum_k (x[k] - zx) * (w[n][k] - zw) */\n"
            "        fq_dot_rows_%s(%s, %s + n0 * %s, %s, %s, %s, %s, rows, accs);\n"
            "        for (n = n0; n < n0 + rows; n++) {\n"
            "            int32_t acc = accs[n - n0];\n%s\n"
            "        }\n    }" % (n_macro, n_macro, n_macro, "u8" if x_dtype == "uint8" else "s8", x_name, weight,
                                k_macro, k_macro, zx, zws, zw1, "\n".join("    " + line for line in body)))


def emit_static(ctx, layer, x, y, data):
    """A static layer, any requant mode, uint8 / int8 in and out; data: the layer's prepare(x)."""
    node = ctx.name
    check_width(ctx, layer, x)
    if layer.input_scale is not None and (x.scale != layer.input_scale or (
            layer.input_zero_point is not None and x.zero_point != layer.input_zero_point)):
        raise ValueError("model: node %r was built for input_scale=%r, input_zero_point=%r but receives "
                         "scale %r, zero point %r" % (node, layer.input_scale, layer.input_zero_point,
                                                     x.scale, x.zero_point))
    check_acc_bound(node, layer, x.dtype, x.zero_point)
    n_out, k = layer.weight.values.shape
    out_dtype = layer.dtype.name
    qmin, qmax = QRANGE[out_dtype]
    zy = int(layer.zero_point)
    lo = max(qmin, zy) if layer.relu else qmin
    c = ctx.consts
    kk = c.define("k", k, "inputs")
    nn = c.define("n", n_out, "outputs")
    zx = c.define("x_zero_point", x.zero_point, "input %s, scale %.9g" % (x.dtype, x.scale))
    zyd = c.define("y_zero_point", zy, "output %s, scale %.9g" % (out_dtype, layer.scale))
    ymin = c.define("y_min", lo, "ReLU: clamp at the zero point" if layer.relu else None)
    ymax = c.define("y_max", qmax)
    wcon = type(c)(c.prefix)         # the portable loop's int8 weights (the DSP path stores its own)
    weight, zw = _weights(wcon, layer)
    w64 = layer.weight.values.astype(np.int64) - _w_zero_points(layer)[:, None]
    # |acc| bound: when it bounds the value rounded below 2^22 the rounding needs no range checks
    acc_max = float(k * max(x.zero_point - qrange_x(x)[0], qrange_x(x)[1] - x.zero_point) * (np.max(np.abs(w64)) if w64.size else 0))
    amax = lambda v: float(np.max(np.abs(np.asarray(v, np.float64)))) if v is not None else 0.0  # noqa: E731
    bounded = lambda v_max: bool(np.isfinite(v_max) and v_max * 1.01 < 2.0 ** 22)  # noqa: E731
    pc = layer.per_channel
    sw = np.atleast_1d(np.asarray(layer.weight.scale, dtype=np.float64))
    mode = layer.requant
    body = []
    if mode == "fbgemm":
        params = data.params
        if len(params) == 3:           # (bias_b, bias_r, mult): f = fmaf(bias_b, bias_r, (float)acc)
            bias_b, bias_r, mult = params
        else:                          # (bias_term, mult): f = f32((float)acc + bias_term)
            (bias_b, mult), bias_r = params, np.float32(1.0)
        m = c.column("mult", "float", np.broadcast_to(mult, (n_out,)), "f32(f32(s_x * s_w) / s_y)")
        if bias_b is None:
            formula = "y[n] = clamp(rne(f32((float)acc * mult)) + zy, y_min, y_max)"
            body.append("        float f = (float)acc;")
        elif np.float32(bias_r) == 1:  # fmaf(b, 1, acc) is the plain sum: no fma needed
            bb = c.column("bias", "float", bias_b, "f32(bias / f32(s_x * s_w[n]))" if pc else "the bias term")
            formula = "y[n] = clamp(rne(f32(f32((float)acc + bias_b[n]) * mult)) + zy, y_min, y_max)"
            body.append("        float f = (float)acc + %s;" % bb)
        else:                          # FBGEMM's (float)acc + bias * rcp, contracted to one fma
            bb = c.column("bias", "float", bias_b, "float bias")
            rr = c.define("bias_rcp", np.float32(bias_r), "f32(1 / (double)f32(s_x * s_w))")
            formula = "y[n] = clamp(rne(f32(fmaf(bias[n], rcp, (float)acc) * mult)) + zy, y_min, y_max)"
            body.append("        float f = fq_fmaf(%s, %s, (float)acc);" % (bb, rr))
        f_max = acc_max + (amax(bias_b) * amax(bias_r) if bias_b is not None else 0.0)
        if bounded(f_max * amax(mult)):
            body.append("        y[n] = (%s)fq_clamp(fq_rne_bounded(f * %s) + %s, %s, %s);" % (CTYPE[out_dtype], m, zyd, ymin, ymax))
        else:
            body.append("        y[n] = (%s)fq_round_add_clamp(f * %s, %s, %s, %s);" % (CTYPE[out_dtype], m, zyd, ymin, ymax))
        float_free = False
    elif mode == "qnnpack":
        bq, req = data.params
        r = c.column("req", "float", np.broadcast_to(req, (n_out,)), "f32(f32(s_w * s_x) * f32(1 / s_y))")
        if layer.bias is None:
            formula = "y[n] = clamp(rne(f32((float)acc * req)) + zy, y_min, y_max)"
        else:
            bqe = c.column("bias", "int32_t", np.broadcast_to(bq, (n_out,)), "int32 bias rne(bias / f32(s_x * s_w))")
            formula = "y[n] = clamp(rne(f32((float)(acc + bias_q) * req)) + zy, y_min, y_max)"
            body.append("        acc = fq_wrap_add(acc, %s);" % bqe)
        a_max = acc_max + (amax(bq) if layer.bias is not None else 0.0)
        if a_max < 2.0 ** 31 and bounded(a_max * amax(req)):
            body.append("        y[n] = (%s)fq_clamp(fq_rne_bounded((float)acc * %s) + %s, %s, %s);" % (CTYPE[out_dtype], r, zyd, ymin, ymax))
        else:
            body.append("        y[n] = (%s)fq_round_add_clamp((float)acc * %s, %s, %s, %s);" % (CTYPE[out_dtype], r, zyd, ymin, ymax))
        float_free = False
    elif mode == "tflite":
        p = data.params
        q = c.column("multiplier", "int32_t", p.multiplier, "Q31 multiplier")
        s = c.column("shift", "int32_t", p.shift, "shift, > 0 = left")
        fn = {"double": "fq_mbqm_double", "single": "fq_mbqm_single", "double_up": "fq_mbqm_double_up"}[p.rounding]
        if layer.bias is None and layer.int_bias is None:
            formula = "y[n] = clamp(MBQM(acc, multiplier, shift) + zy, y_min, y_max)"
        else:
            bqe = c.column("bias", "int32_t", p.bias, "int32 bias (TFLite's quantized bias)")
            formula = "y[n] = clamp(MBQM(acc + bias, multiplier, shift) + zy, y_min, y_max)"
            body.append("        acc = fq_wrap_add(acc, %s);" % bqe)
        body.append("        y[n] = (%s)fq_add_clamp(%s(acc, %s, %s), %s, %s, %s);" % (
            CTYPE[out_dtype], fn, q, s, zyd, ymin, ymax))
        formula += "   (MBQM: TFLite MultiplyByQuantizedMultiplier, rounding %r)" % p.rounding
        float_free = True
    else:                               # pragma: no cover - the layer checks its mode
        raise ctx.error("requant %r" % mode)
    node = ctx.node                     # the name's safe form, for the C comment
    head = ("/* %s: %s %d -> %d, requant %s, %s weights%s, %s -> %s\n"
            " *   acc  = sum_k (x[k] - zx) * (w[n][k] - zw)\n *   %s */"
            % (node, ctx.op, k, n_out, mode, "per-channel" if pc else "per-tensor", ", ReLU" if layer.relu else "",
               x.dtype, out_dtype, formula))
    words, n4, k4 = dsp.weight_words(w64)
    wname = ctx.prefix + "__weight_dsp"      # the node's names: prefix + "__" + a name
    dsp_lines, scratch = dsp.body(x.dtype, zx, k, n_out, n4, k4, wname, body)
    portable = _rows_loop(x.dtype, "x", weight, kk, nn, zx, zw, body)
    fn = ctx.fn("const %s *x, %s *y, uint8_t *scratch" % (CTYPE[x.dtype], CTYPE[out_dtype]),
                "#if defined(FQ_ARM_DSP)\n%s\n#else\n    (void)scratch;\n%s\n#endif" % (
                    "\n".join("    " + line for line in dsp_lines), portable))
    code = "\n".join([head, c.text(),
                      "#if defined(FQ_ARM_DSP)\n%s\n#else\n%s\n#endif" % (
                          dsp.words_array(wname, words, "w - zw as int16 for the SMLAD path: [row / 4][k / 4][row]"
                                                        "[(k0, k2), (k1, k3)]"), wcon.text()), fn])
    return ctx.step((x,), y, code, scratch=scratch, quantized=float_free, cost="linear",
                    flash=c.flash + max(wcon.flash, 4 * len(words)))


def emit_dynamic(ctx, layer, x, y):
    """A dynamic layer: float in, float out, the input quantized per call."""
    node = ctx.node
    check_width(ctx, layer, x)
    check_acc_bound(ctx.name, layer, "uint8", None)
    n_out, k = layer.weight.values.shape
    c = ctx.consts
    kk = c.define("k", k, "inputs")
    nn = c.define("n", n_out, "outputs")
    qmax = c.define("x_qmax", 127 if layer.reduce_range else 255,
                    "input range [0, %d]%s" % (127 if layer.reduce_range else 255,
                                              " (reduce_range)" if layer.reduce_range else ""))
    weight, zw = _weights(c, layer)
    sw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight.scale, np.float64)).astype(np.float32), (n_out,))
    swe = c.column("w_scale", "float", sw, "weight scale")
    body = ["        float s = sx * %s;                   /* f32(s_x * s_w) */" % swe,
            "        float f = (float)acc;"]
    if layer.bias is None:
        formula = "y[n] = f32((float)acc * s)"
        body.append("        float v = f * s;")
    else:
        be = c.column("bias", "float", layer.bias, "float bias")
        if layer.mode == "fbgemm":
            formula = "y[n] = fmaf((float)acc, s, bias[n])   (x86 / fbgemm: one rounding)"
            body.append("        float v = fq_fmaf(f, s, %s);" % be)
        else:
            formula = "y[n] = f32(f32((float)acc * s) + bias[n])   (qnnpack: two roundings)"
            body += ["        float v = f * s;", "        v = v + %s;" % be]
    if layer.relu:
        formula += ", then ReLU: y < 0 -> 0"
        body.append("        if (v < 0.0f) v = 0.0f;")
    body.append("        y[n] = v;")
    head = ("/* %s: %s %d -> %d, mode %s, %s weights%s, float -> float\n"
            " *   (s_x, zx) = ChooseQuantizationParams(min(x, 0), max(x, 0)), x_q = quantize(x, s_x, zx)\n"
            " *   acc  = sum_k (x_q[k] - zx) * (w[n][k] - zw),  s = f32(s_x * s_w)\n *   %s */"
            % (node, ctx.op, k, n_out, layer.mode, "per-channel" if layer.per_channel else "per-tensor",
               ", ReLU" if layer.relu else "", formula))
    func = ctx.func
    code = "\n".join([head, c.text(),
                      "static int %s(const float *in, float *y, uint8_t *x)\n{\n"
                      "    float sx, inv;\n    int32_t zx, i;\n%s\n"
                      "    if (fq_choose_qparams_dynamic(in, %s, %s, &sx, &zx)) return 1;\n"
                      "    inv = 1.0f / sx;\n"
                      "    for (i = 0; i < %s; i++) x[i] = (uint8_t)fq_quantize(in[i], inv, (float)zx, 0.0f, 255.0f);\n"
                      "%s\n    return 0;\n}"
                      % (func, _rows_loop("uint8", "x", weight, kk, nn, "zx", zw, body).split("\n", 1)[0],
                         kk, qmax, kk, _rows_loop("uint8", "x", weight, kk, nn, "zx", zw, body).split("\n", 1)[1])])
    return ctx.step((x,), y, code, scratch=k, returns_status=True, quantized=False, cost="dynamic")
