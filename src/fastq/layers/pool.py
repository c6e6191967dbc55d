"""Pooling on quantized NCHW (NCL) values: max pooling and average pooling (torch MaxPool1d/2d,
AvgPool1d/2d and their functional forms on quantized tensors). The output keeps the input's
scale and zero point, as torch's. Formulas: reference.max_pool / reference.avg_pool."""
from __future__ import annotations

import numpy as np

from .. import _kernels, reference
from ..qtensor import QTensor
from ._spec import Spec
from ._base import QUANT, Layer, Setting, check_bool, check_choice, check_int, register
from .pool_explain import explain_max_pool, explain_avg_pool, explain_adaptive_avg_pool
from ._fast import MISS, fast_call
from . import conv_emit
from .conv import check_ints

_F32 = np.float32
_PLANS = 16             # input signatures whose pooling plan a layer remembers


def _plan_for(layer, x, build):
    """The AvgPoolPlan for x's values (shape, dtype, strides) and zero point, built once."""
    v = x.values
    # QNNPACK's multiplier f32(s / f32(s * count)) depends on the scale: its plans are per scale
    scale = x.scale if layer.path == "qnnpack" else None
    key = (v.shape, v.dtype, v.strides, x.zero_point, scale)
    plans = layer.__dict__.setdefault("_plans", {})
    plan = plans.get(key)
    if plan is None:
        if len(plans) >= _PLANS:
            plans.clear()
        plan = plans[key] = build(v, int(x.zero_point), scale)
    return plan


def _make_plan(v, windows, x_zero_point, rules, split):
    return _kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, *windows, x_zero_point, rules, split)


def _bind_plan(plan, x, reshape=None, scale_too=False):
    """A bound callable (layers/_fast.py) running `plan` on QTensors of x's signature (the
    scale too where the plan's constants depend on it): _kernels.AvgPoolBound, the checks and
    the output QTensor without a Python frame."""
    return _kernels.AvgPoolBound(plan, x, None if reshape is None else tuple(reshape), scale_too, MISS)


def _clipped(size, kernel, stride, padding, out):
    """torch's quantized avg_pool windows along one axis: in-bounds [lo, hi) and the extent
    clipped to the padded input (what count_include_pad counts)."""
    start = np.arange(out, dtype=np.int64) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    return np.maximum(start, 0), np.minimum(end, size), end - start


def _empty_out(v, out):
    return np.empty(v.shape[:2] + tuple(out), v.dtype)


def _check_q(x, dims, name):
    if not isinstance(x, QTensor) or x.axis is not None:
        raise TypeError("x: %s takes a per-tensor fastq.QTensor, got %s" % (name, type(x).__name__))
    if x.values.ndim != dims + 2:
        raise ValueError("x: %s (%d-D) expects shape [N, C, %s], got %s"
                         % (name, dims, "L" if dims == 1 else "H, W", x.values.shape))


def _check_dims(value):
    if isinstance(value, bool) or value not in (1, 2):
        raise (TypeError if not isinstance(value, int) else ValueError)("dims: expected 1 or 2, got %r" % (value,))
    return int(value)


class _Pool(Layer):
    takes = QUANT
    reads_layout = True             # the C reads either buffer order (export/layout.py)

    def _geometry(self, kernel_size, stride, padding):
        dims = self._settings["dims"]
        for name in ("kernel_size", "stride", "padding"):
            v = self._settings[name]
            if len(v) == 1:
                v = v * dims
            if len(v) != dims:
                raise ValueError("%s: expected %d values, got %r" % (name, dims, self._settings[name]))
            self._settings[name] = v
            self._attrs[name] = tuple(v)
        ks = self.kernel_size
        if any(p > k // 2 for p, k in zip(self.padding, ks)):
            raise ValueError("padding: %r must be at most half of kernel_size %r (as torch requires)"
                             % (self.padding, ks))

    def _out(self, spatial, dilation=None):
        d = dilation or (1,) * self.dims
        out = tuple(reference.pool_out_size(s, k, st, p, self.ceil_mode, dd) for s, k, st, p, dd in
                    zip(spatial, self.kernel_size, self.stride, self.padding, d))
        if min(out) < 1:
            raise ValueError("x: spatial size %s gives an empty output for kernel %s" % (spatial, self.kernel_size))
        return out

    def infer(self, spec):
        return Spec(spec.kind, tuple(spec.shape[:2]) + self._out(tuple(spec.shape[2:]), getattr(self, "dilation", None)),
                    spec.dtype, spec.scale, spec.zero_point)

    def prepare(self, spec):
        return {}


@register
class MaxPool(_Pool):
    """Largest value of each window (padding never wins)."""
    settings = (
        Setting("dims", lambda v, prior: _check_dims(v), 2),
        Setting("kernel_size", check_ints("kernel_size", 1)),
        Setting("stride", check_ints("stride", 1)),
        Setting("padding", check_ints("padding", 0), 0),
        Setting("dilation", check_ints("dilation", 1), 1),
        Setting("ceil_mode", check_bool("ceil_mode"), False),
    )

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, dims=2):
        ks = check_ints("kernel_size", 1)(kernel_size, {})
        if stride is None or stride == [] or stride == ():
            stride = ks
        self._set_settings(dims=dims, kernel_size=ks, stride=stride, padding=padding, dilation=dilation,
                           ceil_mode=ceil_mode)
        self._geometry(ks, stride, padding)
        d = self._settings["dilation"]
        self._settings["dilation"] = d * self.dims if len(d) == 1 else d
        if len(self._settings["dilation"]) != self.dims:
            raise ValueError("dilation: expected %d values, got %r" % (self.dims, d))
        self._attrs["dilation"] = tuple(self._settings["dilation"])

    def __call__(self, x):
        return fast_call(self, self._call, x)

    def _call(self, x):
        _check_q(x, self.dims, "MaxPool")
        self._out(x.values.shape[2:], self.dilation)
        # the kernel reads a channels-last view in place (and keeps its layout)
        y = _kernels.max_pool2d(x.values, self.kernel_size, self.stride, self.padding, self.dilation,
                                self.ceil_mode)
        return QTensor._checked(y, x.scale, x.zero_point)

    def _bind(self, x):
        """The pooling for values of x's signature (layers/_fast.py): the geometry checked once;
        the output keeps a channels-last input's layout, so the ops after it see one layout in the
        full run and in the bound one. The max needs no quantization: any scale passes through."""
        v = x.values
        shape, dtype, strides, zx = v.shape, v.dtype, v.strides, x.zero_point
        if v.size == 0:
            return None
        plan = _kernels.MaxPoolPlan(v, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        checked = QTensor._checked

        def run(x):
            if type(x) is not QTensor or x._axis is not None or x._zero_point != zx:
                return MISS
            v = x._values
            if v.shape != shape or v.dtype is not dtype or v.strides != strides:
                return MISS
            return checked(plan(v), x._scale, zx)
        return run

    def reference(self, x):
        """The same output from fastq.reference (the oracle the kernel is held to)."""
        _check_q(x, self.dims, "MaxPool")
        self._out(x.values.shape[2:], self.dilation)
        return QTensor._checked(reference.max_pool(x.values, self.kernel_size, self.stride, self.padding,
                                                   self.dilation, self.ceil_mode), x.scale, x.zero_point)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return conv_emit.emit_max_pool(self, ctx, inputs[0], output)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x) (the output viewed as [N * C * (OH), OW]): its window,
        the integer sum and the rounding step by step on this layer's path (a PoolTrace;
        trace.index is the element's (n, c, ...), trace.checks the reference and the kernel)."""
        return explain_max_pool(self, x, row, col)

    def summary_row(self, specs, op_data):
        return {"qparams": "as input", "constants": "k%s s%s p%s" % (self.kernel_size, self.stride, self.padding),
                "arithmetic": "max"}


def _check_divisor(value, prior):
    if value is None:
        return None
    v = check_int("divisor_override")(value, prior)
    if v == 0:
        raise ValueError("divisor_override: must not be 0")
    return v


@register
class AvgPool(_Pool):
    """Average of each window, rounded as torch's path for this input rounds it:
    path "nchw" (a contiguous input), "nhwc" (a channels-last input: any convolution's output),
    "qnnpack" (engine qnnpack: count_include_pad and divisor_override are ignored, as torch does);
    vector_channels: channels per vector of torch's channels-last kernel (16 AVX-512, 8 AVX2)."""
    settings = (
        Setting("dims", lambda v, prior: _check_dims(v), 2),
        Setting("kernel_size", check_ints("kernel_size", 1)),
        Setting("stride", check_ints("stride", 1)),
        Setting("padding", check_ints("padding", 0), 0),
        Setting("ceil_mode", check_bool("ceil_mode"), False),
        Setting("count_include_pad", check_bool("count_include_pad"), True),
        Setting("divisor_override", _check_divisor, None),
        Setting("path", check_choice("path", reference.AVG_POOL_PATHS), "nchw"),
        Setting("vector_channels", check_int("vector_channels"), 16),
    )

    # torch rounds by the input's memory layout, which a module called twice may see both of:
    # the torch import makes one AvgPool per call (fx_convert)
    layout_dependent = True

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, path="nchw", vector_channels=16, dims=2):
        ks = check_ints("kernel_size", 1)(kernel_size, {})
        if stride is None or stride == [] or stride == ():
            stride = ks
        self._set_settings(dims=dims, kernel_size=ks, stride=stride, padding=padding, ceil_mode=ceil_mode,
                           count_include_pad=count_include_pad, divisor_override=divisor_override, path=path,
                           vector_channels=vector_channels)
        if self.vector_channels < 0:
            raise ValueError("vector_channels: expected >= 0, got %d" % self.vector_channels)
        self._geometry(ks, stride, padding)

    def _check(self, x):
        _check_q(x, self.dims, "AvgPool")
        self._out(x.values.shape[2:])
        if self.path == "qnnpack" and x.values.dtype != np.uint8:
            raise TypeError("x: path 'qnnpack' takes uint8 values, got %s" % x.values.dtype)

    def __call__(self, x):
        return fast_call(self, self._call, x)

    def _call(self, x):
        self._check(x)
        v = x.values
        if v.size == 0:
            return QTensor._checked(_empty_out(v, self._out(v.shape[2:])), x.scale, x.zero_point)
        return QTensor._checked(_plan_for(self, x, self._build)(v), x.scale, x.zero_point)

    def _bind(self, x):
        return None if x.values.size == 0 else _bind_plan(_plan_for(self, x, self._build), x,
                                                                  scale_too=self.path == "qnnpack")

    def _build(self, v, zx, scale):
        """The pooling plan of this path for values like v (reference.avg_pool's formulas)."""
        out = self._out(v.shape[2:])
        k, st, pd, size = self.kernel_size, self.stride, self.padding, v.shape[2:]
        if self.dims == 1:
            k, st, pd, size, out = (1,) + k, (1,) + st, (0,) + pd, (1,) + size, (1,) + tuple(out)
        lh, hh, eh = _clipped(size[0], k[0], st[0], pd[0], out[0])
        lw, hw, ew = _clipped(size[1], k[1], st[1], pd[1], out[1])
        if self.path == "qnnpack":           # torch's qnnpack kernel: always the whole window
            div = np.full((out[0], out[1]), k[0] * k[1], np.int64)
        elif self.divisor_override is not None:
            div = np.full((out[0], out[1]), self.divisor_override, np.int64)
        elif self.count_include_pad:
            div = eh[:, None] * ew[None, :]
        else:
            div = np.maximum(hh - lh, 0)[:, None] * np.maximum(hw - lw, 0)[None, :]
        m = (_F32(1.0) / div.astype(_F32)).astype(_F32)
        if self.path == "nchw":
            rules, split = (("mul", m, zx, 0),) * 2, 0
        elif self.path == "qnnpack":
            rules, split = (("mul", reference.qnnpack_pool_multiplier(scale, div), 0, zx),) * 2, 0
        else:
            inv = (_F32(1.0) / (_F32(1.0) / m).astype(_F32)).astype(_F32)
            rules = (("mul", m, 0, zx), ("mul", inv, zx, 0))
            vc = self.vector_channels
            split = v.shape[1] // vc * vc if vc else 0
        return _make_plan(v, (lh, hh, lw, hw), zx, rules, split)

    def reference(self, x):
        """The same output from fastq.reference (the oracle the kernels are held to)."""
        self._check(x)
        y = reference.avg_pool(x.values, int(x.zero_point), self.kernel_size, self.stride, self.padding,
                               self.ceil_mode, self.count_include_pad, self.divisor_override, self.path,
                               self.vector_channels, x.values.dtype.name, x.scale)
        return QTensor._checked(y, x.scale, x.zero_point)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return conv_emit.emit_avg_pool(self, ctx, inputs[0], output)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x) (the output viewed as [N * C * (OH), OW]): its window,
        the integer sum and the rounding step by step on this layer's path (a PoolTrace;
        trace.index is the element's (n, c, ...), trace.checks the reference and the kernel)."""
        return explain_avg_pool(self, x, row, col)

    def summary_row(self, specs, op_data):
        return {"qparams": "as input",
                "constants": "k%s s%s p%s%s" % (self.kernel_size, self.stride, self.padding,
                                                ", ceil" if self.ceil_mode else ""),
                "arithmetic": "avg (%s)" % self.path}


def _check_output_size(value, prior):
    v = check_ints("output_size", 1)(value, prior)
    if any(o < 1 for o in v):
        raise ValueError("output_size: expected sizes >= 1, got %r" % (value,))
    return v


@register
class AdaptiveAvgPool(Layer):
    """Adaptive average pooling (torch AdaptiveAvgPool1d/2d, F.adaptive_avg_pool2d) on quantized
    values; the output keeps the input's scale and zero point. Rounded as torch's path for this
    input rounds it (reference.adaptive_avg_pool): path "nchw" (a contiguous input), "nhwc" (a
    channels-last input: any convolution's output; vector_channels as AvgPool's), "qnnpack"
    (engine qnnpack, sizes multiples of output_size)."""
    takes = QUANT
    settings = (
        Setting("dims", lambda v, prior: _check_dims(v), 2),
        Setting("output_size", _check_output_size),
        Setting("path", check_choice("path", reference.ADAPTIVE_POOL_PATHS), "nchw"),
        Setting("vector_channels", check_int("vector_channels"), 16),
    )
    layout_dependent = True     # as AvgPool: the torch import makes one per call
    reads_layout = True         # the C reads either buffer order (export/layout.py)

    def __init__(self, output_size, path="nchw", vector_channels=16, dims=2):
        self._set_settings(dims=dims, output_size=output_size, path=path, vector_channels=vector_channels)
        o = self._settings["output_size"]
        if len(o) == 1:
            o = o * self.dims
        if len(o) != self.dims:
            raise ValueError("output_size: expected %d values, got %r" % (self.dims, self._settings["output_size"]))
        self._settings["output_size"] = o
        self._attrs["output_size"] = tuple(o)
        if self.vector_channels < 0:
            raise ValueError("vector_channels: expected >= 0, got %d" % self.vector_channels)

    def _check_sizes(self, spatial):
        if self.path == "qnnpack" and any(s % o for s, o in zip(spatial, self.output_size)):
            raise ValueError("x: path 'qnnpack' needs spatial sizes %s that are multiples of output_size %s"
                             % (tuple(spatial), self.output_size))

    def infer(self, spec):
        if len(spec.shape) != self.dims + 2:
            raise ValueError("x: AdaptiveAvgPool (%d-D) expects %d dimensions, got shape %s"
                             % (self.dims, self.dims + 2, spec.shape))
        if None not in spec.shape[2:]:
            self._check_sizes(spec.shape[2:])
        return Spec(spec.kind, tuple(spec.shape[:2]) + self.output_size, spec.dtype, spec.scale, spec.zero_point)

    def prepare(self, spec):
        return {}

    def __call__(self, x):
        return fast_call(self, self._call, x)

    def _call(self, x):
        _check_q(x, self.dims, "AdaptiveAvgPool")
        self._check_sizes(x.values.shape[2:])
        if self.path == "qnnpack" and x.values.dtype != np.uint8:
            raise TypeError("x: path 'qnnpack' takes uint8 values, got %s" % x.values.dtype)
        v = x.values
        if v.size == 0:
            return QTensor._checked(_empty_out(v, self.output_size), x.scale, x.zero_point)
        return QTensor._checked(_plan_for(self, x, self._build)(v), x.scale, x.zero_point)

    def _bind(self, x):
        return None if x.values.size == 0 else _bind_plan(_plan_for(self, x, self._build), x,
                                                                  scale_too=self.path == "qnnpack")

    def _build(self, v, zx, scale):
        """The pooling plan of this path for values like v (reference.adaptive_avg_pool's formulas)."""
        size, out = tuple(v.shape[2:]), tuple(self.output_size)
        if self.dims == 1:
            size, out = (1,) + size, (1,) + out
        wh, ww = reference.adaptive_windows(size[0], out[0]), reference.adaptive_windows(size[1], out[1])
        lh, hh = (np.array(a, np.int64) for a in zip(*wh))
        lw, hw = (np.array(a, np.int64) for a in zip(*ww))
        kh, kw = (hh - lh).astype(_F32), (hw - lw).astype(_F32)
        m = (_F32(1.0) / (kh[:, None] * kw[None, :]).astype(_F32)).astype(_F32)
        if self.path == "nchw":     # the raw sum: the zero point averages to itself
            r = ((_F32(1.0) / kh).astype(_F32)[:, None] / kw[None, :]).astype(_F32)
            return _make_plan(v, (lh, hh, lw, hw), 0, (("mul", r, 0, 0),) * 2, 0)
        if self.path == "qnnpack":
            m = reference.qnnpack_pool_multiplier(scale, (hh - lh)[:, None] * (hw - lw)[None, :])
            return _make_plan(v, (lh, hh, lw, hw), zx, (("mul", m, 0, zx),) * 2, 0)
        inv = (_F32(1.0) / (_F32(1.0) / m).astype(_F32)).astype(_F32)
        vc = self.vector_channels
        return _make_plan(v, (lh, hh, lw, hw), zx, (("fma", inv, zx, 0), ("mul", inv, zx, 0)),
                          v.shape[1] // vc * vc if vc else 0)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return emit_adaptive_avg_pool(self, ctx, inputs[0], output)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x) (the output viewed as [N * C * (OH), OW]): its window,
        the integer sum and the rounding step by step on this layer's path (a PoolTrace;
        trace.index is the element's (n, c, ...), trace.checks the reference and the kernel)."""
        return explain_adaptive_avg_pool(self, x, row, col)

    def summary_row(self, specs, op_data):
        return {"qparams": "as input", "constants": "output %s" % (self.output_size,),
                "arithmetic": "adaptive avg (%s)" % self.path}


def emit_adaptive_avg_pool(layer, ctx, x, y):
    """AdaptiveAvgPool's C, per path as reference.adaptive_avg_pool; windows [floor(o*H/OH),
    ceil((o+1)*H/OH)) computed in integers, each window's multiplier in float as torch does."""
    if x.kind != "quant" or x.shape is None or len(x.shape) != layer.dims + 2:
        raise ctx.error("needs a quantized input with a known shape (export with input_shape=...)")
    if layer.path == "qnnpack" and x.dtype != "uint8":
        raise ctx.error("path 'qnnpack' takes uint8 values, got %s" % x.dtype)
    shape = ctx.shape_of(x)
    C, H, W = (shape[0], 1, shape[1]) if layer.dims == 1 else shape
    OH, OW = (1,) + tuple(layer.output_size) if layer.dims == 1 else tuple(layer.output_size)
    if layer.path == "qnnpack" and (H % OH or W % OW):
        raise ctx.error("path 'qnnpack' needs sizes %s that are multiples of output_size %s" % ((H, W), (OH, OW)))
    y.layout = "nhwc"
    xt = conv_emit.CTYPE[x.dtype]
    qmin, qmax = conv_emit.QRANGE[x.dtype]
    zx = int(x.zero_point)
    out = "y[(oh * %d + ow) * %d + ch]" % (OW, C)
    if layer.path == "nchw":
        mult = ["const float r = (1.0f / (float)(h1 - h0)) / (float)(w1 - w0);"]
        rnd = ["%s = (%s)fq_round_add_clamp_exact((float)raw * r, 0, %d, %d);" % (out, xt, qmin, qmax)]
        formula = "y = clamp(rne(f32((float)sum(x) * r))), r = f32(f32(1 / KH) / KW) of the window"
    elif layer.path == "qnnpack":
        mq = ctx.float_literal(reference.qnnpack_pool_multiplier(x.scale, (H // OH) * (W // OW)))
        mult = ["const float m = %s;     /* f32(s / f32(s * KH*KW)) */" % mq]
        rnd = ["%s = (%s)fq_round_add_clamp_exact((float)acc * m, %d, %d, %d);" % (out, xt, zx, qmin, qmax)]
        formula = "y = clamp(rne(f32((float)acc * m)) + zx), m = f32(s / f32(s * KH*KW))"
    else:
        nb = C // layer.vector_channels * layer.vector_channels if layer.vector_channels else 0
        mult = ["const float inv = 1.0f / (1.0f / (1.0f / (float)size));"]
        rnd = ["if (ch < %d)    /* torch's vector body: one fma */" % nb,
               "    %s = (%s)fq_round_add_clamp_exact(fq_fmaf((float)acc, inv, %d.0f), 0, %d, %d);"
               % (out, xt, zx, qmin, qmax),
               "else           /* its channel tail: the zero point added in float */",
               "    %s = (%s)fq_round_add_clamp_exact((float)acc * inv + (float)%d, 0, %d, %d);"
               % (out, xt, zx, qmin, qmax)]
        formula = ("channels < %d: y = clamp(rne(fmaf((float)acc, inv, zx))); the rest: "
                   "y = clamp(rne(f32(f32((float)acc * inv) + zx))), inv = f32(1 / f32(1 / f32(1 / size)))" % nb)
    idx = conv_emit.x_index(x, "ch", "ih", "iw", H, W, C)
    body = ["int32_t oh, ow, ch, ih, iw;",
            "for (oh = 0; oh < %d; oh++) {" % OH,
            "    const int32_t h0 = oh * %d / %d, h1 = ((oh + 1) * %d + %d) / %d;" % (H, OH, H, OH - 1, OH),
            "    for (ow = 0; ow < %d; ow++) {" % OW,
            "        const int32_t w0 = ow * %d / %d, w1 = ((ow + 1) * %d + %d) / %d;" % (W, OW, W, OW - 1, OW),
            "        const int32_t size = (h1 - h0) * (w1 - w0);"] + ["        " + m for m in mult] + [
            "        (void)size;",
            "        for (ch = 0; ch < %d; ch++) {" % C,
            "            int32_t raw = 0, acc;",
            "            for (ih = h0; ih < h1; ih++)",
            "                for (iw = w0; iw < w1; iw++) raw += x[%s];" % idx,
            "            acc = raw - size * %d;" % zx,
            "            (void)acc;"] + ["            " + r for r in rnd] + ["        }", "    }", "}"]
    head = ("/* %s: AdaptiveAvgPool %dx%d -> %dx%d of %d channels, path %s, output NHWC, qparams kept\n"
            " *   raw = sum of the window, acc = raw - size * zx; %s */"
            % (ctx.node, H, W, OH, OW, C, layer.path, formula))
    code = "\n".join([head, ctx.fn("const %s *x, %s *y" % (xt, xt), "\n".join("    " + b for b in body))])
    return ctx.step((x,), y, code, quantized=False, cost="pool")
