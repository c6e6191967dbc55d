"""Quantized mean over the spatial dims (Tensor.mean / torch.mean with dim [2, 3] or [-2, -1] on
a quantized [N, C, H, W] tensor, as shufflenet_v2 ends). Formula: reference.mean_hw."""
from __future__ import annotations

import numpy as np

from .. import _kernels, reference
from ..qtensor import QTensor
from ._fast import fast_call
from .pool import _PLANS, _bind_plan
from ._spec import Spec
from ._base import QUANT, Layer, Setting, check_bool, check_choice, check_int, register
from .pool_explain import explain_mean_hw


@register
class MeanHW(Layer):
    """Mean over H and W of quantized [N, C, H, W] values; the output keeps the input's scale and
    zero point, shape [N, C] ([N, C, 1, 1] with keepdim). Rounded as torch's path for this input
    rounds it: "nchw" (x86 / fbgemm, contiguous input: the raw sum over H*W divided in float),
    "nhwc" (x86 / fbgemm, channels-last input: dequantize, torch's float sum order, quantize;
    float_lanes: floats per vector of that sum kernel), "qnnpack" (QNNPACK's global average pool)."""
    takes = QUANT
    settings = (
        Setting("keepdim", check_bool("keepdim"), False),
        Setting("path", check_choice("path", reference.MEAN_PATHS), "nchw"),
        Setting("float_lanes", check_int("float_lanes"), 8),
    )
    layout_dependent = True     # the path follows the input's layout: the torch import makes one per call
    reads_layout = True         # the C reads either buffer order (export/layout.py)

    def __init__(self, keepdim=False, path="nchw", float_lanes=8):
        self._set_settings(keepdim=keepdim, path=path, float_lanes=float_lanes)
        if self.float_lanes < 0:
            raise ValueError("float_lanes: expected >= 0, got %d" % self.float_lanes)

    def infer(self, spec):
        if spec.kind != "quant":
            raise TypeError("x: MeanHW takes quantized values, got %s ones" % spec.kind)
        if len(spec.shape) != 4:
            raise ValueError("x: MeanHW expects [N, C, H, W], got shape %s" % (spec.shape,))
        shape = tuple(spec.shape[:2]) + ((1, 1) if self.keepdim else ())
        return Spec("quant", shape, spec.dtype, spec.scale, spec.zero_point)

    def prepare(self, spec):
        return {}

    def __call__(self, x):
        return fast_call(self, self._call, x)

    def _call(self, x):
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: MeanHW takes a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        if x.values.ndim != 4:
            raise ValueError("x: MeanHW expects [N, C, H, W] values, got shape %s" % (x.values.shape,))
        if self.path == "qnnpack" and x.values.dtype != np.uint8:
            raise TypeError("x: path 'qnnpack' takes uint8 values, got %s" % x.values.dtype)
        v = x.values
        if self.path == "nhwc" or v.size == 0:
            y = reference.mean_hw(v, x.scale, int(x.zero_point), self.path, v.dtype.name, self.float_lanes)
            return QTensor._checked(y.reshape(y.shape + (1, 1)) if self.keepdim else y, x.scale, x.zero_point)
        y = self._plan(x)(v)
        return QTensor._checked(y if self.keepdim else y.reshape(v.shape[:2]), x.scale, x.zero_point)

    def _plan(self, x):
        """The integer paths as one pooling window over the plane (layers/pool.py's plans); the
        qnnpack multiplier depends on the scale, so the plan is per scale too."""
        v = x.values
        key = (v.shape, v.dtype, v.strides, x.zero_point, x.scale)
        plans = self.__dict__.setdefault("_plans", {})
        plan = plans.get(key)
        if plan is None:
            n, c, h, w = v.shape
            hw = np.float32(h * w)
            windows = ([0], [h], [0], [w])
            if self.path == "nchw":         # the raw sum divided in float
                plan = _kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, *windows, 0, (("div", hw, 0, 0),) * 2, 0)
            else:
                s = np.float32(x.scale)
                m = np.float32(s / np.float32(s * hw))
                zx = int(x.zero_point)
                plan = _kernels.AvgPoolPlan(v.shape, v.strides, v.dtype, *windows, zx, (("mul", m, 0, zx),) * 2, 0)
            if len(plans) >= _PLANS:
                plans.clear()
            plans[key] = plan
        return plan

    def _bind(self, x):
        v = x.values
        if self.path == "nhwc" or v.size == 0:
            return None
        return _bind_plan(self._plan(x), x, None if self.keepdim else v.shape[:2], scale_too=True)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return emit_mean_hw(self, ctx, inputs[0], output)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x) (the output viewed as [N * C * (OH), OW]): its window,
        the integer sum and the rounding step by step on this layer's path (a PoolTrace;
        trace.index is the element's (n, c, ...), trace.checks the reference and the kernel)."""
        return explain_mean_hw(self, x, row, col)

    def summary_row(self, specs, op_data):
        how = {"nchw": "raw sum / HW in float", "nhwc": "dequantize, float sum (torch order), quantize",
               "qnnpack": "QNNPACK global average pool"}[self.path]
        return {"qparams": "as input", "constants": "-", "arithmetic": "mean over H, W (%s)" % how}


# ----------------------------------------------------------------------------- the exported C
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
CTYPE = {"uint8": "uint8_t", "int8": "int8_t"}

# reference.cascade_sum_rows / ilp_sum_rows / _inner_sum on one column of floats, each value
# dequantized where it is read: x[i * stride] for i < n
_SUMS = """static float %(p)s__cascade(const %(t)s *x, int32_t n, int32_t stride)
{
    int32_t power = 0, step, mask, i = 0, j, k;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (k = n - 1; k > 0; k >>= 1) power++;          /* bit length of n - 1 */
    power /= 4;
    if (power < 4) power = 4;
    step = 1 << power;
    mask = step - 1;
    while (i + step <= n) {
        for (k = 0; k < step; k++, i++) acc[0] = acc[0] + %(deq)s;
        for (j = 1; j < 4; j++) {
            acc[j] = acc[j] + acc[j - 1];
            acc[j - 1] = 0.0f;
            if (i & (mask << (j * power))) break;
        }
    }
    for (; i < n; i++) acc[0] = acc[0] + %(deq)s;
    return ((acc[0] + acc[1]) + acc[2]) + acc[3];
}

static float %(p)s__ilp(const %(t)s *x, int32_t n, int32_t stride)
{
    int32_t k = n / 4, i;
    float p0 = k ? %(p)s__cascade(x, k, 4 * stride) : 0.0f;
    for (i = 4 * k; i < n; i++) p0 = p0 + %(deq)s;
    for (i = 1; i < 4; i++) p0 = p0 + (k ? %(p)s__cascade(x + i * stride, k, 4 * stride) : 0.0f);
    return p0;
}"""

_INNER = """
static float %(p)s__inner(const %(t)s *x, int32_t n, int32_t lanes)
{
    int32_t k, i;
    float acc = 0.0f;
    if (lanes == 0 || n < lanes) return %(p)s__ilp(x, n, 1);
    k = n / lanes;
    for (i = k * lanes; i < n; i++) acc = acc + %(deq1)s;
    for (i = 0; i < lanes; i++) acc = acc + %(p)s__ilp(x + i, k, lanes);
    return acc;
}"""


def emit_mean_hw(layer, ctx, x, y):
    """MeanHW's C, per path as reference.mean_hw: the raw integer sum divided in float ("nchw"),
    QNNPACK's multiplier ("qnnpack"), or the dequantized values summed in torch's float order and
    quantized ("nhwc")."""
    if x.kind != "quant" or x.shape is None or len(x.shape) != 4:
        raise ctx.error("needs a quantized [N, C, H, W] input with a known shape (export with input_shape=...)")
    if layer.path == "qnnpack" and x.dtype != "uint8":
        raise ctx.error("path 'qnnpack' takes uint8 values, got %s" % x.dtype)
    C, H, W = ctx.shape_of(x)
    hw = H * W
    path = reference.mean_path(layer.path, C, H, W)
    lo, hi = QRANGE[x.dtype]
    if max(abs(lo), hi) * hw > 2**31 - 1:
        raise ctx.error("H * W = %d: the int32 sum could overflow" % hw)
    xt, zx = CTYPE[x.dtype], int(x.zero_point)
    nhwc = x.layout == "nhwc" and hw > 1
    cs, ps = (1, C) if nhwc else (hw, 1)            # channel and pixel strides in x's buffer
    c, p = ctx.consts, ctx.prefix
    if path in ("nchw", "qnnpack"):
        lines = ["    int32_t ch, i;", "    for (ch = 0; ch < %d; ch++) {" % C,
                 "        int32_t acc = 0;",
                 "        for (i = 0; i < %d; i++) acc += x[ch * %d + i * %d];" % (hw, cs, ps)]
        if path == "nchw":
            formula = "y = clamp(rne(f32((float)sum(x) / (float)(H*W))))"
            lines.append("        y[ch] = (%s)fq_round_add_clamp_exact((float)acc / %s, 0, %d, %d);"
                         % (xt, ctx.float_literal(float(hw)), lo, hi))
        else:
            m = c.define("multiplier", reference.qnnpack_pool_multiplier(x.scale, hw), "f32(s / f32(s * H*W))")
            formula = "y = clamp(rne(f32((float)(sum(x) - H*W*zx) * m)) + zx), m = f32(s / f32(s * H*W))"
            lines.append("        y[ch] = (%s)fq_round_add_clamp_exact((float)(acc - %d) * %s, %d, %d, %d);"
                         % (xt, hw * zx, m, zx, lo, hi))
        lines.append("    }")
        helpers = ""
    else:
        deq = "fq_dequantize(x[i * stride], %d, %s)" % (zx, c.define("scale", np.float32(x.scale)))
        inv = c.define("inv_scale", np.float32(np.float32(1.0) / np.float32(x.scale)), "f32(1 / s)")
        lanes = layer.float_lanes
        group = 4 * lanes if lanes and C >= lanes else 4
        cut = C // group * group
        helpers = _SUMS % {"p": p, "t": xt, "deq": deq}
        if C == 1:
            helpers += _INNER % {"p": p, "t": xt, "deq1": deq.replace("i * stride", "i")}
            sums = ["        float s = %s__inner(x + ch * %d, %d, %d);" % (p, cs, hw, lanes)]
        else:
            sums = ["        float s = ch < %d ? %s__cascade(x + ch * %d, %d, %d)     /* whole groups of %d channels */"
                    % (cut, p, cs, hw, ps, group),
                    "                          : %s__ilp(x + ch * %d, %d, %d);     /* the rest: 4 partial sums */"
                    % (p, cs, hw, ps)]
        formula = ("y = quantize(f32(s / (float)(H*W))), s = the dequantized values summed in torch's order "
                   "(reference.outer_sum)")
        lines = ["    int32_t ch;", "    for (ch = 0; ch < %d; ch++) {" % C] + sums + [
            "        y[ch] = (%s)fq_quantize(s / %s, %s, %d.0f, %d.0f, %d.0f);"
            % (xt, ctx.float_literal(float(hw)), inv, zx, lo, hi), "    }"]
    head = ("/* %s: mean over H, W (%d x %d) of %d channels, path %s, input %s, qparams kept:\n *   %s */"
            % (ctx.node, H, W, C, path, "NHWC" if nhwc else "NCHW", formula))
    parts = [head, c.text()] + ([helpers] if helpers else []) + [ctx.fn("const %s *x, %s *y" % (xt, xt),
                                                                        "\n".join(lines))]
    return ctx.step((x,), y, "\n".join(part for part in parts if part), quantized=False,
                    cost="pool")
