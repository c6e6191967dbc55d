"""QuantizedLinear: uint8 / int8 QTensor [..., K] -> uint8 / int8 QTensor [..., N] (static
quantization). The weights are packed once; each call is one kernel call."""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ... import _kernels, fixedpoint as _fixedpoint, reference as _reference
from ..._checks import check_scale, check_zero_point, qrange
from ...qtensor import QTensor
from .._spec import Spec
from . import emit as _emit
from . import explain as _explain
from .._fast import MISS
from .._base import (QUANT, Setting, WeightLayer, check_bool, check_choice, check_dtype_name, check_kind,
                    check_scale_setting, check_zero_point_in, padded, register)

MODES = ("fbgemm", "qnnpack", "tflite")


def check_mode(requant):
    if not isinstance(requant, str):
        raise TypeError("requant: expected one of %s, got %r" % (", ".join(MODES), type(requant).__name__))
    if requant not in MODES:
        raise ValueError("requant: expected one of %s, got %r" % (", ".join(MODES), requant))
    return requant



def build_epilogue(packed, mode, x_scale, x_zero_point, w_scales, per_channel, y_scale,
                   y_zero_point, bias=None, relu=False, int_bias=None, rounding="double",
                   out_xor=0, effective_scale="float32", bias_rounding="fused"):
    """The C epilogue of one layer for one input quantization (x_scale, x_zero_point).

    Zero points are in uint8 terms (an int8 zero point z is z + 128 here); out_xor=0x80 turns
    the uint8 result into int8 bytes (int8 y = uint8 y - 128, exactly, in every mode).
    bias_rounding (mode "fbgemm", per-tensor weights): "fused" (the bias term and (float)acc in one
    rounding, fmaf(bias, rcp, acc), as torch 2.13's FBGEMM computes on x86-64), "separate" (bias *
    rcp rounded first) or "divide" (bias / atws, FBGEMM's generic path): reference.fbgemm_params.
    Returns (epilogue, info) where info holds the per-column constants, for explain/inspection."""
    n = packed.n
    npad = packed.n_padded
    w_scales = np.broadcast_to(np.atleast_1d(np.asarray(w_scales, dtype=np.float64)), (n,)) if per_channel \
        else np.atleast_1d(np.asarray(w_scales, dtype=np.float64))[:1]
    out_min = int(y_zero_point) if relu else 0
    info = {}
    if mode == "fbgemm":
        bias_b, bias_r, mult = _reference.fbgemm_params(x_scale, w_scales, y_scale, bias, per_channel,
                                                        bias_rounding)
        mult = np.broadcast_to(mult, (n,))
        col_offset = packed.col_offsets(int(x_zero_point))
        info.update(mult=mult, bias_b=bias_b, bias_r=bias_r)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_FBGEMM, col_offset,
            bias=None if bias_b is None else padded(bias_b, npad, np.float32), bias_mult=float(bias_r),
            scale=padded(mult, npad, np.float32),
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    elif mode == "qnnpack":
        bq, req = _reference.qnnpack_params(x_scale, w_scales, y_scale, bias)
        bq = np.broadcast_to(bq, (n,)) if bias is not None else None
        req = np.broadcast_to(req, (n,))
        col_offset = packed.col_offsets(int(x_zero_point), None if bq is None else bq.astype(np.int32))
        info.update(req=req, int_bias=bq)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_QNNPACK, col_offset, scale=padded(req, npad, np.float32),
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    elif mode == "tflite":
        mult, shift, int_bias = _fixedpoint.tflite_params(x_scale, w_scales, per_channel, y_scale, n, bias, int_bias,
                                              rounding, effective_scale)
        col_offset = packed.col_offsets(int(x_zero_point), int_bias)
        info.update(multiplier=mult, shift=shift, int_bias=int_bias)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_TFLITE, col_offset, multiplier=padded(mult, npad, np.int32),
            shift=padded(shift, npad, np.int32), rounding=_fixedpoint.ROUNDING_CODES[rounding],
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    else:
        check_mode(mode)
        raise AssertionError("unreachable")
    return ep, info


class FixedPointParams(NamedTuple):
    """What a fixed-point (TFLite / CMSIS-NN) firmware needs for one fully connected layer.

    y[m, n] = clamp(MultiplyByQuantizedMultiplier(acc[m, n], multiplier[n], shift[n])
                    + output_zero_point, act_min, act_max)
    acc[m, n] = bias[n] + sum_k (x[m, k] - input_zero_point) * (w[n, k] - w_zero_point[n])
              = folded_bias[n] + sum_k x[m, k] * (w[n, k] - w_zero_point[n])
    Zero points and act_min / act_max are in the layer's own dtypes (int8 values for int8)."""
    multiplier: np.ndarray        # int32 [N], Q31
    shift: np.ndarray             # int32 [N], > 0 = left shift (TFLite's convention)
    bias: np.ndarray              # int32 [N] (zeros without bias)
    output_zero_point: int
    act_min: int
    act_max: int
    rounding: str                 # "double" | "single" | "double_up"
    input_scale: float
    input_zero_point: Optional[int]
    folded_bias: Optional[np.ndarray]   # int32 [N] (wrapping), only when input_zero_point is known


def _check_input_zero_point(value, prior):
    if value is None:
        return None
    if prior["input_scale"] is None:
        raise ValueError("input_zero_point: given without input_scale")
    return check_zero_point(value, -128, 255, "input_zero_point")


@register
class QuantizedLinear(WeightLayer):
    """y = requant(sum_k (x - zx)(w - zw) [+ bias]) with the output's scale and zero point.

    weight: int8 QTensor [N, K], per tensor or per channel (axis 0).
    bias: float [N] or None ("tflite" also takes an integer array, used as is as the int32 bias;
        a float bias is quantized as TFLite's converter does, see reference.tflite_bias).
    scale, zero_point: the output quantization; zero_point in the range of `dtype`.
    relu: fused ReLU (clamp at zero_point).
    requant: "fbgemm" | "qnnpack" | "tflite" (see docs/ARITHMETIC.md §6-§8).
    rounding: "double" | "single" | "double_up", the fixed-point rounding of requant="tflite"
        (see fastq.multiply_by_quantized_multiplier).
    effective_scale: "float32" | "float64", how requant="tflite" computes a per-tensor layer's
        s_in * s_w / s_out: with a float32 product (TFLite's GetQuantizedConvolutionMultipler,
        the default) or all in double (PopulateConvolutionQuantizationParams; per-channel
        layers always use this). LiteRT 2.3.0's reference kernels are rounding="single",
        effective_scale="float64"; see README "TensorFlow Lite / gemmlowp / CMSIS-NN fixed point".
    dtype: "uint8" (default) or "int8", the output dtype. Inputs may be uint8 or int8 QTensors
        (per tensor) whatever dtype is: int8 x with zero point z is exactly uint8 x + 128 with
        zero point z + 128, so one uint8 kernel serves both.
    input_scale, input_zero_point: optional, the input quantization the layer is meant for
        (as in a .tflite model). When given, calls with another input quantization raise
        ValueError, and layer.multipliers / shifts / bias_int32 describe the layer as a
        firmware would hold it (see fixed_point_params)."""

    settings = (
        Setting("dtype", check_dtype_name("dtype"), "uint8", attr=np.dtype, doc="output dtype"),
        Setting("scale", check_scale_setting("scale"), 1.0, doc="output scale"),
        Setting("zero_point", check_zero_point_in("zero_point", "dtype"), 0, doc="output zero point"),
        Setting("relu", check_bool("relu"), False, doc="fused ReLU: clamp at zero_point"),
        Setting("requant", check_choice("requant", MODES), "fbgemm", doc="requantization mode"),
        Setting("rounding", check_choice("rounding", _fixedpoint.ROUNDINGS), "double",
                doc="fixed-point rounding (requant='tflite')"),
        Setting("effective_scale", check_choice("effective_scale", _fixedpoint.EFFECTIVE_SCALES), "float32",
                doc="how requant='tflite' forms a per-tensor s_in*s_w/s_out"),
        Setting("bias_rounding", check_choice("bias_rounding", _reference.BIAS_ROUNDINGS), "fused",
                doc="how requant='fbgemm' adds a float bias to a per-tensor layer's accumulator"),
        Setting("input_scale", check_scale_setting("input_scale", optional=True), None,
                doc="the input scale the layer is built for (None: any)"),
        Setting("input_zero_point", _check_input_zero_point, None,
                doc="the input zero point the layer is built for (None: any)"),
        Setting("per_channel", check_bool("per_channel"), False, init=False,
                doc="per-channel weights (from weight.axis)"),
    )
    arrays = ("weight", "weight_scale", "weight_zero_point", "bias", "int_bias")
    takes = QUANT

    def __init__(self, weight, bias=None, scale=1.0, zero_point=0, relu=False, requant="fbgemm",
                 rounding="double", dtype="uint8", input_scale=None, input_zero_point=None,
                 effective_scale="float32", bias_rounding="fused"):
        self._set_settings(dtype=dtype, scale=scale, zero_point=zero_point, relu=relu, requant=requant,
                           rounding=rounding, effective_scale=effective_scale, bias_rounding=bias_rounding,
                           input_scale=input_scale,
                           input_zero_point=input_zero_point, per_channel=getattr(weight, "axis", None) is not None)
        self._set_weight(weight, bias, int_bias_ok=self.requant == "tflite")
        # The call path (validation of x, cached epilogue, the C call) lives in Cython for every
        # mode: uint8 / int8 in and out, any or a pinned input quantization.
        self._core = _kernels.LinearCore(self._packed, QTensor, self.scale, self.zero_point, self._epilogue,
                                         self._check_no_overflow, out_signed=self.dtype == np.int8,
                                         input_scale=self.input_scale, input_zero_point=self.input_zero_point)
        if self.input_scale is not None and self.requant == "tflite":
            self.fixed_point_params(self.input_scale)      # a too-large scale fails here, not later

    def fixed_point_params(self, x_scale=None, x_zero_point=None):
        """The integers a TFLite / CMSIS-NN firmware holds for this layer (requant="tflite"),
        for inputs of scale x_scale (default: the layer's input_scale). The multipliers depend
        on the input scale only; pass x_zero_point (in the input's dtype) to also get
        folded_bias, the bias with the input zero point folded in. Returns FixedPointParams."""
        if self.requant != "tflite":
            raise ValueError("requant: fixed-point parameters exist for requant='tflite' only, not %r"
                             % self.requant)
        if x_scale is None:
            if self.input_scale is None:
                raise ValueError("x_scale: required (this layer has no input_scale)")
            x_scale = self.input_scale
            if x_zero_point is None:
                x_zero_point = self.input_zero_point
        x_scale = check_scale(x_scale, "x_scale")
        mult, shift, int_bias = _fixedpoint.tflite_params(
            x_scale, self.weight.scale, self.per_channel, self.scale, self.out_features,
            self.bias, self.int_bias, self.rounding, self.effective_scale)
        bias = np.zeros(self.out_features, np.int32) if int_bias is None else np.array(int_bias, np.int32)
        qmin, qmax = qrange(self.dtype)
        folded = None
        if x_zero_point is not None:
            zx = check_zero_point(x_zero_point, -128, 255, "x_zero_point")
            w = self.weight.values.astype(np.int64)
            zw = np.broadcast_to(np.asarray(self.weight.zero_point, np.int64).reshape(-1), (self.out_features,))
            dev_sums = w.sum(axis=1) - w.shape[1] * zw
            folded = ((bias.astype(np.int64) - zx * dev_sums + 2**31) % 2**32 - 2**31).astype(np.int32)
        return FixedPointParams(mult.copy(), shift.copy(), bias, self.zero_point,
                                max(qmin, self.zero_point) if self.relu else qmin, qmax,
                                self.rounding, x_scale, x_zero_point, folded)

    def _firmware_params(self):
        if self.input_scale is None:
            raise ValueError("input_scale: these depend on the input scale; construct the layer with "
                             "input_scale=..., or call layer.fixed_point_params(x_scale)")
        return self.fixed_point_params()

    @property
    def multipliers(self):
        """int32 [N] Q31 multipliers (requant="tflite", needs input_scale)."""
        return self._firmware_params().multiplier

    @property
    def shifts(self):
        """int32 [N] shifts, > 0 = left (requant="tflite", needs input_scale)."""
        return self._firmware_params().shift

    @property
    def bias_int32(self):
        """int32 [N] bias the kernel adds (requant="tflite", needs input_scale)."""
        return self._firmware_params().bias

    @classmethod
    def from_torch(cls, module, engine=None):
        """From torch.ao.nn.quantized.Linear / torch.ao.nn.intrinsic.quantized.LinearReLU."""
        from ...importers.torch_quantized import linear_from_torch
        return linear_from_torch(module, engine=engine)

    def _epilogue(self, x_scale, x_zero_point_u8):
        signed_out = self.dtype == np.int8
        return self._cached_epilogue((x_scale, x_zero_point_u8), lambda: build_epilogue(
            self._packed, self.requant, x_scale, x_zero_point_u8, self.weight.scale, self.per_channel,
            self.scale, self.zero_point + (128 if signed_out else 0), bias=self.bias, relu=self.relu,
            int_bias=self.int_bias, rounding=self.rounding,
            out_xor=0x80 if signed_out else 0, effective_scale=self.effective_scale,
            bias_rounding=self.bias_rounding)[0])

    # y_q = layer(x_q): x is a uint8 / int8 QTensor [..., K] (per tensor), y a QTensor [..., N] of dtype.
    # Checks x (TypeError / ValueError naming "x"), refuses K large enough to overflow int32,
    # then one kernel call with the epilogue cached for (x.scale, x.zero_point).
    __call__ = _kernels.linear_call

    def _bind(self, x):
        """The call for per-tensor QTensors of x's shape and dtype (layers/_fast.py): the layer's
        LinearCore, which checks the quantization and caches its epilogue itself."""
        core = getattr(self, "_core", None)
        if core is None or type(x) is not QTensor or x._axis is not None:
            return None
        shape, dtype = x._values.shape, x._values.dtype

        def run(x):
            if type(x) is not QTensor or x._axis is not None:
                return MISS
            v = x._values
            if v.shape != shape or v.dtype is not dtype:
                return MISS
            return core(x)
        return run

    def _call_python(self, x):
        """The same call in Python (the reference for LinearCore.call)."""
        if not isinstance(x, QTensor):
            raise TypeError("x: expected a fastq.QTensor, got %s" % type(x).__name__)
        if x.axis is not None:
            raise ValueError("x: expected per-tensor quantized activations")
        v = x.values
        if v.ndim < 1 or v.shape[-1] != self.in_features:
            raise ValueError("x: expected shape [..., %d], got %s" % (self.in_features, v.shape))
        if self.input_scale is not None and (
                x.scale != self.input_scale
                or (self.input_zero_point is not None and x.zero_point != self.input_zero_point)):
            raise ValueError("x: quantized with scale %r, zero point %d; this layer was built for "
                             "input_scale=%r, input_zero_point=%r"
                             % (x.scale, x.zero_point, self.input_scale, self.input_zero_point))
        a = np.ascontiguousarray(v.reshape(int(np.prod(v.shape[:-1])), self.in_features))  # K = 0 too
        zx = x.zero_point
        if v.dtype == np.int8:
            # int8 x, zero point z  ==  uint8 x + 128 (the same bits with the top one flipped), z + 128
            a = a.view(np.uint8) ^ np.uint8(0x80)
            zx += 128
        elif v.dtype != np.uint8:  # pragma: no cover - QTensor holds uint8 / int8 only
            raise TypeError("x: expected uint8 or int8 values, got %s" % v.dtype)
        self._check_no_overflow(a, zx, "x")
        out = _kernels.gemm(self._packed, self._epilogue(x.scale, zx), a)
        if self.dtype == np.int8:
            out = out.view(np.int8)
        return QTensor(out.reshape(v.shape[:-1] + (self.out_features,)), self.scale, self.zero_point)

    # ------------------------------------------------------------------ the op protocol
    def infer(self, x):
        check_kind(x, ("quant",), "QuantizedLinear")
        if not x.shape or (x.shape[-1] is not None and x.shape[-1] != self.in_features):
            raise ValueError("x: expected shape [..., %d], got %s" % (self.in_features, x.shape))
        return Spec("quant", tuple(x.shape[:-1]) + (self.out_features,), self.dtype.name, float(self.scale),
                    int(self.zero_point))

    def prepare(self, x):
        """LinearData: the requantization constants of this layer's mode for inputs of x's scale
        (fbgemm: reference.fbgemm_params; qnnpack: qnnpack_params; tflite: fixed_point_params)."""
        return self._op_data((x.scale, x.zero_point, x.dtype), lambda: LinearData(self.requant, self._params(x.scale)))

    def _params(self, x_scale):
        pc = self.per_channel
        sw = np.atleast_1d(np.asarray(self.weight.scale, dtype=np.float64))
        if self.requant == "fbgemm":
            return _reference.fbgemm_params(x_scale, sw if pc else sw[:1], self.scale, self.bias, pc, self.bias_rounding)
        if self.requant == "qnnpack":
            return _reference.qnnpack_params(x_scale, sw if pc else sw[:1], self.scale, self.bias)
        return self.fixed_point_params(x_scale)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _emit.emit_static(ctx, self, inputs[0], output, op_data)

    def summary_row(self, specs, op_data):
        w = self.weight
        ws = "per-channel %d" % len(w.scale) if self.per_channel else "w %.6g/%d" % (w.scale, w.zero_point)
        q = "%.6g/%d" % (self.scale, self.zero_point)
        x = specs[0] if specs else None
        if self.requant == "tflite" and self.input_scale is not None:
            m, s = self.multipliers, self.shifts
            const = "mult %d shift %d" % (m[0], s[0]) if m.size == 1 or np.all(m == m[0]) else \
                "mult [%d..%d] shift [%d..%d]" % (m.min(), m.max(), s.min(), s.max())
        elif x is not None and x.scale is not None:
            m = np.float32(x.scale) * np.asarray(w.scale, np.float32) / np.float32(self.scale)
            const = "%s; M = s_x*s_w/s_y = %s" % (ws, "%.6g" % m if np.ndim(m) == 0 else
                                                  "[%.6g..%.6g]" % (np.min(m), np.max(m)))
        else:
            const = "%s; M = s_x*s_w/s_y (float, per input scale)" % ws
        arith = {"fbgemm": "fbgemm float requant (x86/fbgemm)", "qnnpack": "qnnpack float requant",
                 "tflite": "TFLite fixed point (%s rounding)" % self.rounding}[self.requant]
        return dict(qparams=q, constants=const + (", relu" if self.relu else ""), arithmetic=arith)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x), every integer and rounding: a fastq.explain.Trace."""
        return _explain.explain_static(self, x, row, col)

    def with_mode(self, requant, rounding="double"):
        """This layer (every other setting and array kept) requantized by another mode / rounding."""
        settings, arrays = dict(self.get_settings()), self.get_arrays()
        if self.int_bias is not None and requant != "tflite":
            raise ValueError("requant: this layer's bias is given as int32 (tflite only); cannot run it as %r"
                             % (requant,))
        settings.update(requant=requant, rounding=rounding)
        return type(self).from_state(settings, arrays)


class LinearData(NamedTuple):
    """QuantizedLinear's constants for one input quantization: its mode and that mode's params."""
    mode: str
    params: tuple
