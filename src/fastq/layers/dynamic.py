"""Dynamic quantization: DynamicQuantizedLinear, float32 in, float32 out (torch nnqd.Linear).

The weights are quantized once (int8, per tensor or per output channel); the activations are
quantized on every call from their own range. What torch 2.13 computes, measured on this
machine kind against `torch.ao.quantization.quantize_dynamic` (0 mismatching float32 outputs
over ~770 000 values, engines x86, fbgemm and qnnpack, per-tensor and per-channel weights,
with and without bias, inputs from 1e-6 to 100 in magnitude):

1. Range: x_min, x_max over the whole input (all rows), widened to contain 0.
2. Input qparams, torch `quant_utils::ChooseQuantizationParams` (not MinMaxObserver):
     qmin, qmax = 0, 255; with reduce_range 0, 127 (x86 / fbgemm pass reduce_range=True;
     qnnpack ignores it)
     scale = (double)(x_max - x_min) / (qmax - qmin)            in double
     scale = 0.1 when (float)scale == 0 or 1/(float)scale is inf
     scale < 6.1e-5f: scale = 6.1e-5f and the range is stretched by the same factor (float)
     zero_point = rne(qmin - x_min/scale) or rne(qmax - x_max/scale) (double), whichever
                  end has the smaller error |q| - |x/scale|; clamped to [qmin, qmax]
     every later step uses sx = (float)scale.
3. Quantize: q = clamp(rne(min(fmaf(x, 1/sx, zp), 2147483520)), 0, 255) (FBGEMM's
   QuantizeAvx2<uint8, LEGACY> and torch.quantize_per_tensor agree; the clamp is [0, 255]
   even with reduce_range).
4. Integer core: acc = sum_k (q - zp)(w - zw[n]), exact int32 (docs/ARITHMETIC.md §2).
5. Float output, s[n] = f32(sx * (float)w_scale[n]), f = (float)acc:
     x86 / fbgemm: y = fmaf(f, s[n], bias[n])          one rounding. FBGEMM's source writes
                   mul then add (requantizeForFloatAvx2), but the compiled library fuses them;
                   a two-rounding version mismatches ~10% of outputs by 1 ulp.
                   Without bias: y = f32(f * s[n]).
     qnnpack:      y = f32(f32(f * s[n]) + bias[n])    (q8gemm_dq: mul, then add)
   The bias stays float32; fused ReLU (nniqd.LinearReLU): y = max(y, 0).
"""
from __future__ import annotations

import numpy as np

from .. import _kernels, reference
from .._checks import as_array
from ._base import FLOAT, Setting, WeightLayer, check_bool, check_choice, check_kind, padded, register
from ._spec import Spec
from .linear import emit as _emit
from .linear import explain as _explain

MODES = ("fbgemm", "qnnpack")


def _check_reduce_range(value, prior):
    if value is None:
        return prior["mode"] == "fbgemm"      # what nnqd.Linear passes; qnnpack ignores it
    return check_bool("reduce_range")(value, prior)


@register
class DynamicQuantizedLinear(WeightLayer):
    """y = float epilogue(sum_k (q(x) - zx)(w - zw)), x float [..., K] -> float32 [..., N].

    weight: int8 QTensor [N, K], per tensor or per channel (axis 0). bias: float [N] or None.
    relu: fused ReLU on the float output. mode: "fbgemm" (torch engines x86 / fbgemm) or
    "qnnpack". reduce_range: input quantized to [0, 127]; default True for "fbgemm" (what
    nnqd.Linear passes), False for "qnnpack" (which ignores it)."""

    settings = (
        Setting("relu", check_bool("relu"), False, doc="fused ReLU on the float output"),
        Setting("mode", check_choice("mode", MODES), "fbgemm", doc="float epilogue of this torch engine"),
        Setting("reduce_range", _check_reduce_range, None, doc="input quantized to [0, 127]"),
        Setting("per_channel", check_bool("per_channel"), False, init=False,
                doc="per-channel weights (from weight.axis)"),
    )
    takes = FLOAT

    def __init__(self, weight, bias=None, relu=False, mode="fbgemm", reduce_range=None):
        self._set_settings(relu=relu, mode=mode, reduce_range=reduce_range,
                           per_channel=getattr(weight, "axis", None) is not None)
        self._set_weight(weight, bias)
        npad = self._packed.n_padded
        sw = np.atleast_1d(np.asarray(weight.scale, dtype=np.float64)).astype(np.float32)
        self._w_scales = np.broadcast_to(sw, (self.out_features,)).copy()
        self._bias_padded = None if self.bias is None else padded(self.bias, npad, np.float32)
        self._epilogues = {}

    @classmethod
    def from_torch(cls, module, engine=None):
        """From torch.ao.nn.quantized.dynamic.Linear / torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU."""
        from ..importers.torch_quantized import dynamic_linear_from_torch
        return dynamic_linear_from_torch(module, engine=engine)

    def input_qparams(self, x):
        """(scale, zero_point) this layer picks for the float input x (step 2 of the docstring)."""
        x, lo, hi = self._as_input(x)
        if not x.size:
            lo, hi = 0.0, 0.0
        return reference.choose_qparams_dynamic(lo, hi, self.reduce_range)

    def _as_input(self, x):
        """x as C-contiguous float32 with its min and max (one C pass, which also checks
        that every value is finite)."""
        x = as_array(x, "x")
        if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
            raise TypeError("x: expected a float array, got dtype %s" % x.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError("x: expected shape [..., %d], got %s" % (self.in_features, x.shape))
        x = np.ascontiguousarray(x, dtype=np.float32)
        lo, hi, finite = _kernels.minmax(x)
        if not finite:
            raise ValueError("x: dynamic quantization needs finite values (got NaN or inf)")
        return x, lo, hi

    def _epilogue(self, x_scale, x_zero_point):
        def build():
            npad = self._packed.n_padded
            s = (np.float32(x_scale) * self._w_scales).astype(np.float32)
            return _kernels.Epilogue(
                self._packed, _kernels.EPI_FLOAT, self._packed.col_offsets(int(x_zero_point)),
                bias=self._bias_padded, scale=padded(s, npad, np.float32),
                float_fma=self.mode == "fbgemm", float_relu=self.relu)
        return self._cached_epilogue((x_scale, x_zero_point), build)

    def __call__(self, x):
        x, lo, hi = self._as_input(x)
        out_shape = x.shape[:-1] + (self.out_features,)
        a = x.reshape(int(np.prod(x.shape[:-1])), self.in_features)      # (K = 0 too)
        if a.shape[0] == 0:
            return np.zeros(out_shape, np.float32)
        sx, zx = reference.choose_qparams_dynamic(lo, hi, self.reduce_range)
        inv = np.float32(1.0) / np.float32(sx)
        x_q = _kernels.quantize(a, float(inv), float(zx), 0, 255, False)
        self._check_no_overflow(x_q, zx, "x")
        out = _kernels.gemm(self._packed, self._epilogue(sx, zx), x_q)
        return out.reshape(out_shape)

    # ------------------------------------------------------------------ the op protocol
    def infer(self, x):
        check_kind(x, ("float",), "DynamicQuantizedLinear")
        if not x.shape or (x.shape[-1] is not None and x.shape[-1] != self.in_features):
            raise ValueError("x: expected shape [..., %d], got %s" % (self.in_features, x.shape))
        return Spec("float", tuple(x.shape[:-1]) + (self.out_features,))

    # prepare: None (the input's quantization is chosen per call, from its values)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _emit.emit_dynamic(ctx, self, inputs[0], output)

    def summary_row(self, specs, op_data):
        return dict(qparams="dynamic", constants="per-batch x qparams%s" % (", reduce_range" if self.reduce_range else ""),
                    arithmetic="%s dynamic linear" % self.mode)

    def explain(self, x, row=0, col=0, node=None):
        """Output element [row, col] of self(x), every integer and rounding: a fastq.explain.Trace."""
        return _explain.explain_dynamic(self, x, row, col)

    def with_mode(self, mode, rounding="double"):
        """This layer with the other torch engine's float epilogue (and its default reduce_range)."""
        settings = dict(self.get_settings())
        settings.update(mode=mode, reduce_range=None)
        return type(self).from_state(settings, self.get_arrays())
