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

    def summary_row(self, specs, op_data):
        how = {"nchw": "raw sum / HW in float", "nhwc": "dequantize, float sum (torch order), quantize",
               "qnnpack": "QNNPACK global average pool"}[self.path]
        return {"qparams": "as input", "constants": "-", "arithmetic": "mean over H, W (%s)" % how}
