"""Quantized convolution, 1-D and 2-D (torch nnq.Conv1d / Conv2d / ConvReLU1d / ConvReLU2d).

NCHW (NCL) at the API, as torch. The arithmetic is a per-layer setting, so a saved model computes
the same integers on every machine: "onednn" (what torch 2.13's x86 engine runs for convolutions
it packs for oneDNN), "fbgemm" (FBGEMM, including its saturating int16 pairs in the depthwise
kernel), "qnnpack", "tflite" (fixed point). Formulas: reference.py, "convolution and pooling";
docs/ARITHMETIC.md §18."""
from __future__ import annotations

import numpy as np

from .. import _kernels, reference
from . import conv_emit
from .._checks import as_array
from ._fast import MISS
from ..fixedpoint import ROUNDING_CODES
from ..qtensor import QTensor
from ._spec import Spec
from .conv_explain import explain_conv
from ._base import (QUANT, Setting, WeightState, check_bool, check_choice, check_dtype_name, check_int,
                    check_scale_setting, check_zero_point_in, register)

ARITHMETICS = reference.CONV_ARITHMETICS
SATURATION = ("auto", "on", "off")


def check_ints(name, minimum):
    def check(value, prior):
        vs = [value] if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
        if not isinstance(vs, (list, tuple)) or not vs or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in vs):
            raise TypeError("%s: expected an int or a list of ints, got %r" % (name, value))
        if any(v < minimum for v in vs):
            raise ValueError("%s: expected values >= %d, got %r" % (name, minimum, value))
        return [int(v) for v in vs]
    return check


def _per_dim(values, dims, name):
    if len(values) == 1:
        return values * dims
    if len(values) != dims:
        raise ValueError("%s: expected %d values for a %d-D convolution, got %r" % (name, dims, dims, values))
    return values


def check_conv_weight(weight):
    if not isinstance(weight, QTensor):
        raise TypeError("weight: expected a fastq.QTensor of int8 values, got %s" % type(weight).__name__)
    if weight.values.dtype != np.int8:
        raise TypeError("weight: expected int8 values, got %s" % weight.values.dtype)
    if weight.values.ndim not in (3, 4):
        raise ValueError("weight: expected shape [out, in/groups, K] (1-D) or [out, in/groups, KH, KW] (2-D), "
                         "got %s" % (weight.values.shape,))
    if weight.axis not in (None, 0):
        raise ValueError("weight: per-channel quantization must be along axis 0 (output channels), got axis %r"
                         % weight.axis)
    if 0 in weight.values.shape:
        raise ValueError("weight: empty shape %s" % (weight.values.shape,))
    return weight


@register
class QuantizedConv(WeightState):
    """y = requant(conv(x - zx, w - zw) [+ bias]) for a uint8 / int8 QTensor x (NCL or NCHW).

    weight: int8 QTensor [O, C/groups, K] or [O, C/groups, KH, KW], per tensor or per output channel;
    bias: float [O] or None (tflite: also an int32 [O], used as is)."""
    settings = (
        Setting("stride", check_ints("stride", 1), 1),
        Setting("padding", check_ints("padding", 0), 0),
        Setting("dilation", check_ints("dilation", 1), 1),
        Setting("groups", check_int("groups"), 1),
        Setting("dtype", check_dtype_name("dtype"), "uint8", attr=np.dtype, doc="output dtype"),
        Setting("scale", check_scale_setting("scale"), doc="output scale"),
        Setting("zero_point", check_zero_point_in("zero_point", "dtype"), doc="output zero point"),
        Setting("relu", check_bool("relu"), False, doc="fused ReLU"),
        Setting("arithmetic", check_choice("arithmetic", ARITHMETICS), "fbgemm",
                doc="whose requantization: onednn | fbgemm | qnnpack | tflite"),
        Setting("depthwise_saturation", check_choice("depthwise_saturation", SATURATION), "auto",
                doc="FBGEMM's int16-pair saturation: auto (where FBGEMM's depthwise kernel runs), on, off"),
        Setting("rounding", check_choice("rounding", tuple(reference.MBQM)), "double", doc="tflite rounding"),
        Setting("per_channel", check_bool("per_channel"), False, init=False),
    )
    arrays = ("weight", "weight_scale", "weight_zero_point", "bias", "int_bias")
    takes = QUANT
    reads_layout = True             # the C reads either buffer order (export/layout.py)

    def __init__(self, weight, bias, scale, zero_point, stride=1, padding=0, dilation=1, groups=1, relu=False,
                 arithmetic="fbgemm", dtype="uint8", depthwise_saturation="auto", rounding="double"):
        check_conv_weight(weight)
        per_channel = weight.axis is not None
        self._set_settings(stride=stride, padding=padding, dilation=dilation, groups=groups, dtype=dtype,
                           scale=scale, zero_point=zero_point, relu=relu, arithmetic=arithmetic,
                           depthwise_saturation=depthwise_saturation, rounding=rounding, per_channel=per_channel)
        w = weight.values
        self.dims = w.ndim - 2
        self.kernel_size = tuple(int(k) for k in w.shape[2:])
        for name in ("stride", "padding", "dilation"):
            self._settings[name] = _per_dim(self._settings[name], self.dims, name)
            self._attrs[name] = tuple(self._settings[name])
        if self.groups < 1 or w.shape[0] % self.groups:
            raise ValueError("groups: %d must be >= 1 and divide the %d output channels" % (self.groups, w.shape[0]))
        self.weight = weight
        self.out_channels = int(w.shape[0])
        self.in_channels = int(w.shape[1]) * self.groups
        zw = np.atleast_1d(np.asarray(weight.zero_point, np.int64))
        if arithmetic == "onednn" and np.any(zw != 0):
            raise ValueError("arithmetic: 'onednn' needs symmetric weights (every weight zero point 0), got zero "
                             "points %s; torch packs such a convolution for FBGEMM: use 'fbgemm'" % np.unique(zw))
        self.bias, self.int_bias = None, None
        if bias is not None:
            b = as_array(bias, "bias")
            if b.ndim != 1 or b.shape[0] != self.out_channels:
                raise ValueError("bias: expected shape (%d,), got %s" % (self.out_channels, b.shape))
            if b.dtype.kind in "iu":
                if arithmetic != "tflite":
                    raise TypeError("bias: an integer bias is only taken by arithmetic='tflite'; pass floats")
                if b.size and (b.min() < -(2**31) or b.max() > 2**31 - 1):
                    raise ValueError("bias: an integer bias must fit int32, got range [%d, %d]" % (b.min(), b.max()))
                self.int_bias = b.astype(np.int32)
            elif b.dtype.kind == "f":
                with np.errstate(over="ignore"):
                    b32 = b.astype(np.float32)
                if not np.all(np.isfinite(b32)):
                    raise ValueError("bias: values must be finite and fit float32")
                self.bias = b32
            else:
                raise TypeError("bias: expected floats, got dtype %s" % b.dtype)

    # ------------------------------------------------------------------ the protocol
    def _out_spatial(self, spatial):
        return tuple(reference.conv_out_size(s, k, st, p, d) for s, k, st, p, d in
                     zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation))

    def _check_input(self, x):
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: expected a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        if x.values.dtype not in (np.uint8, np.int8):
            raise TypeError("x: expected uint8 or int8 values, got %s" % x.values.dtype)
        if x.values.ndim != self.dims + 2 or x.values.shape[1] != self.in_channels:
            raise ValueError("x: expected shape [N, %d, %s], got %s" % (
                self.in_channels, ", ".join(["L"] if self.dims == 1 else ["H", "W"]), x.values.shape))
        out = self._out_spatial(x.values.shape[2:])
        if min(out) < 1:
            raise ValueError("x: spatial size %s is too small for kernel %s, dilation %s, padding %s"
                             % (x.values.shape[2:], self.kernel_size, self.dilation, self.padding))
        return out

    def infer(self, spec):
        if spec.kind != "quant":
            raise TypeError("x: QuantizedConv takes a quantized value, got %s" % spec.kind)
        spatial = tuple(spec.shape[2:])
        return Spec("quant", (spec.shape[0], self.out_channels) + self._out_spatial(spatial),
                    self.dtype.name, self.scale, self.zero_point)

    def saturates(self, in_channels=None):
        """Whether the accumulator is FBGEMM's saturating depthwise one."""
        if self.depthwise_saturation != "auto":
            return self.depthwise_saturation == "on"
        if self.arithmetic != "fbgemm" or self.dims != 2:
            return False
        return reference.fbgemm_depthwise_fast_path(self.in_channels, self.out_channels, self.groups,
                                                    self.kernel_size, self.stride, self.padding, self.dilation)

    def _weights(self):
        """The packed weights (ConvWeights), built once per layer."""
        cw = self.__dict__.get("_cw")
        if cw is None:
            zw = np.atleast_1d(np.asarray(self.weight.zero_point, np.int64))
            cw = _kernels.ConvWeights(np.ascontiguousarray(self.weight.values), zw if zw.size > 1 else int(zw[0]),
                                      groups=self.groups)
            object.__setattr__(self, "_cw", cw)
        return cw

    def _path(self, saturates):
        if not saturates:
            # one input channel and many outputs (DS-CNN's stem: 1 -> 64, 10x4): "depthwise" by
            # the letter, but the direct kernel replicates the input 64 times and takes two taps
            # per instruction, while the GEMM reads the taps as K once (2.2x faster there); the
            # accumulators are exact either way, so the integers are the same
            if self.in_channels == 1 and self.groups == 1 and self.out_channels >= 32:
                return "gemm"
            return "auto"
        if self.dims != 2 or self.in_channels != self.groups:
            raise ValueError("depthwise_saturation: 'on' applies to depthwise 2-D convolutions only (in_channels == "
                             "groups), got %d-D, in_channels %d, groups %d" % (self.dims, self.in_channels, self.groups))
        return "depthwise_saturate"

    def prepare(self, spec):
        """The requantization constants and the compiled epilogue for an input of scale
        spec.scale, zero point spec.zero_point and dtype spec.dtype (built once per input
        quantization): read by __call__, explain and summary_row alike."""
        x_dtype = np.dtype(spec.dtype or "uint8").name
        key = (float(spec.scale), int(spec.zero_point), x_dtype)
        return self._op_data(key, lambda: self._build_op_data(*key))

    def _build_op_data(self, sx, zx, x_dtype):
        ws = np.atleast_1d(np.asarray(self.weight.scale, np.float64))
        a, o = self.arithmetic, self.out_channels
        zy = int(self.zero_point)
        common = dict(out_zero_point=zy, out_min=zy if self.relu else None, out_dtype=self.dtype,
                      path=self._path(self.saturates()))
        cw = self._weights()
        if a == "onednn":
            s_src, sw, inv_y = reference.onednn_params(sx, ws, self.scale)
            data = {"s_src": s_src, "sw": sw, "inv_y": inv_y}
            ep = cw.epilogue(zx, x_dtype, kind="onednn", scale=sw, bias=self.bias, x_scale=sx, out_scale=self.scale,
                             **common)
        elif a == "fbgemm":
            bias_b, bias_r, mult = reference.fbgemm_params(sx, ws, self.scale, self.bias, self.per_channel)
            data = {"bias_b": bias_b, "bias_r": bias_r, "mult": mult}
            ep = cw.epilogue(zx, x_dtype, kind="fbgemm", bias=bias_b, bias_mult=float(bias_r),
                             scale=np.broadcast_to(np.asarray(mult, np.float32), (o,)).copy(), **common)
        elif a == "qnnpack":
            bq, req = reference.qnnpack_params(sx, ws, self.scale, self.bias)
            data = {"bq": bq, "req": req}
            ep = cw.epilogue(zx, x_dtype, kind="qnnpack",
                             int_bias=None if bq is None else np.broadcast_to(bq, (o,)).astype(np.int32),
                             scale=np.broadcast_to(np.asarray(req, np.float32), (o,)).copy(), **common)
        else:
            mult, shift = reference.tflite_multipliers(sx, ws, self.scale, self.per_channel, self.rounding)
            ib = self.int_bias if self.int_bias is not None else (
                None if self.bias is None else reference.tflite_bias(self.bias, sx, ws))
            data = {"multiplier": mult, "shift": shift, "int_bias": ib}
            ep = cw.epilogue(zx, x_dtype, kind="tflite",
                             int_bias=None if ib is None else np.asarray(ib, np.int64).astype(np.int32),
                             multiplier=np.broadcast_to(np.asarray(mult, np.int32), (o,)).copy(),
                             shift=np.broadcast_to(np.asarray(shift, np.int32), (o,)).copy(),
                             rounding=ROUNDING_CODES[self.rounding], **common)
        data["saturates"] = ep.path == "depthwise_saturate"
        data["epilogue"] = ep
        return data

    def reference(self, x):
        """The same output from fastq.reference's numpy formulas (the oracle the kernels are held to)."""
        self._check_input(x)
        bias = self.int_bias if self.int_bias is not None else self.bias
        w = self.weight
        sat = self.saturates()
        self._path(sat)
        y = reference.conv(x.values, x.scale, x.zero_point, w.values, w.scale, w.zero_point, bias, self.scale,
                           self.zero_point, self.stride, self.padding, self.dilation, self.groups, self.relu,
                           self.arithmetic, self.per_channel, self.dtype.name, sat, rounding=self.rounding)
        return QTensor._checked(y, self.scale, self.zero_point)

    def __call__(self, x):
        f = self.__dict__.get("_fast")
        if f is not None:
            y = f(x)
            if y is not MISS:
                return y
        y = self._call(x)
        self.__dict__["_fast"] = self._bind(x)
        return y

    def _layout(self):
        return ((0, 2, 3, 1), (0, 3, 1, 2)) if self.dims == 2 else ((0, 2, 1), (0, 2, 1))

    def _geometry_args(self):
        if self.dims == 1:
            return self.stride[-1], self.padding[-1], self.dilation[-1]
        return self.stride, self.padding, self.dilation

    def _call(self, x):
        self._check_input(x)
        v = x.values
        key = (float(x.scale), int(x.zero_point), v.dtype.name)
        ep = self._op_data(key, lambda: self._build_op_data(*key))["epilogue"]
        # Activations stay channels last between convolutions, as torch keeps them: the output is
        # the kernel's NHWC array seen as NCHW (a transposed view), and an input that is such a
        # view goes to the kernel as NHWC without a copy. Values are the same either way.
        to_last, to_first = self._layout()
        vl = v.transpose(to_last)
        last = vl.flags.c_contiguous
        y = _kernels.conv2d(vl if last else np.ascontiguousarray(v), ep, *self._geometry_args(),
                            layout_in="nhwc" if last else "nchw", layout_out="nhwc")
        return QTensor._checked(y.transpose(to_first), self.scale, self.zero_point)

    def _bind(self, x):
        """The call for inputs of x's signature (layers/_fast.py): the epilogue of x's
        quantization, the geometry, the output shape and the input layout decided once
        (_kernels.ConvBound, _conv_bound.pxi); a checked x only."""
        v = x.values
        key = (float(x.scale), int(x.zero_point), v.dtype.name)
        ep = self._op_data(key, lambda: self._build_op_data(*key))["epilogue"]
        return _kernels.ConvBound(x, ep, *self._geometry_args(), self.scale, self.zero_point, MISS)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x) (the output viewed as [N * O * (OH), OW]): its
        receptive field as one inner product, then the requantization step by step (a Trace;
        trace.index is the element's (n, o, oh, ow), trace.checks the reference and the kernel)."""
        return explain_conv(self, x, row, col, node)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return conv_emit.emit_conv(self, ctx, inputs[0], output, op_data)

    def summary_row(self, specs, op_data):
        k = "x".join(str(v) for v in self.kernel_size)
        geo = "k%s s%s p%s d%s g%d" % (k, ",".join(map(str, self.stride)), ",".join(map(str, self.padding)),
                                      ",".join(map(str, self.dilation)), self.groups)
        sat = ", int16 pairs saturate" if op_data.get("saturates") else ""
        return {"qparams": "y: scale %.6g zp %d %s" % (self.scale, self.zero_point, self.dtype.name),
                "constants": "%s; weights %s%s" % (geo, "per channel" if self.per_channel else "per tensor",
                                                   ", relu" if self.relu else ""),
                "arithmetic": self.arithmetic + sat}

    # ------------------------------------------------------------------ state
    def _repr_head(self):
        return ["in_channels=%d" % self.in_channels, "out_channels=%d" % self.out_channels,
                "kernel_size=%r" % (self.kernel_size,)]
