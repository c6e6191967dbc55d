"""Quantized batch norm left unfused (nnq.BatchNorm2d / BatchNorm3d, nniq.BNReLU2d / BNReLU3d,
torch.ops.quantized.batch_norm*): per channel y = x · alpha + beta in float, alpha / beta folded
by torch from the running statistics and the two scales. Formulas: reference.batch_norm_params,
reference.batch_norm.

An output element is a function of its channel and its one 8-bit input value, so for each input
quantization the layer tabulates fastq.reference's integers once ([C, 256], prepare) and the
kernel, the exported C and explain's check all read that table: exact by construction."""
from __future__ import annotations

import numbers

import numpy as np

from .. import _kernels, reference
from .._checks import as_array
from ..qtensor import QTensor
from ._base import QUANT, Layer, Setting, _known, check_bool, check_int, check_scale_setting, \
    check_zero_point_in, register
from ._spec import Spec
from .batchnorm_explain import explain_batch_norm

ARRAYS = ("weight", "bias", "running_mean", "running_var")
CTYPE = {"uint8": "uint8_t", "int8": "int8_t"}


def _check_eps(value, prior):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError("eps: expected a float, got %r" % (value,))
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError("eps: expected a finite float >= 0, got %r" % (value,))
    return v


def _check_block(value, prior):
    v = check_int("vector_block")(value, prior)
    if v not in reference.BATCH_NORM_BLOCKS:
        raise ValueError("vector_block: expected one of %s (torch's AVX-512, AVX2 or no-AVX build), got %d"
                         % (", ".join(map(str, reference.BATCH_NORM_BLOCKS)), v))
    return v


def _check_dims(value, prior):
    v = check_int("dims")(value, prior)
    if v not in (1, 2, 3):
        raise ValueError("dims: expected 1, 2 or 3 (BatchNorm1d / 2d / 3d), got %d" % v)
    return v


def _codes(dtype):
    """Every 8-bit value in byte order (the table's index: int8 values by their byte)."""
    return np.arange(256, dtype=np.uint8).view(np.int8) if dtype == "int8" else np.arange(256, dtype=np.uint8)


@register
class QuantizedBatchNorm(Layer):
    """Quantized batch norm into (scale, zero_point), values keeping their dtype.

    weight, bias, running_mean, running_var: float [C] (torch's module holds float32; wider
    values are rounded to float32 as torch does). eps: the module's eps. relu: BNReLU (max with
    the output zero point). vector_block: how torch's kernel splits each pixel's channels into
    its vector body and scalar tail (64: AVX-512 build, 32: AVX2, 0: a build without AVX, where
    a·d + b rounds twice). dims: 1, 2 or 3 (inputs [N, C] or [N, C, L]; [N, C, H, W]; [N, C, D, H, W])."""
    takes = QUANT
    settings = (
        Setting("scale", check_scale_setting("scale")),
        Setting("zero_point", check_zero_point_in("zero_point", lo=-128, hi=255)),
        Setting("eps", _check_eps, 1e-5),
        Setting("relu", check_bool("relu"), False),
        Setting("vector_block", _check_block, 64),
        Setting("dims", _check_dims, 2),
    )
    arrays = ARRAYS

    def __init__(self, weight, bias, running_mean, running_var, scale, zero_point, eps=1e-5, relu=False,
                 vector_block=64, dims=2):
        self._set_settings(scale=scale, zero_point=zero_point, eps=eps, relu=relu, vector_block=vector_block,
                           dims=dims)
        arrays = {}
        for name, value in zip(ARRAYS, (weight, bias, running_mean, running_var)):
            a = as_array(value, name)
            if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
                raise TypeError("%s: expected floats, got dtype %s" % (name, a.dtype))
            if a.ndim != 1 or a.shape[0] < 1:
                raise ValueError("%s: expected shape (C,) with C >= 1, got %s" % (name, a.shape))
            with np.errstate(over="ignore"):
                a32 = np.ascontiguousarray(a, dtype=np.float32)
            if not np.all(np.isfinite(a32)):
                raise ValueError("%s: values must be finite float32 numbers" % name)
            arrays[name] = a32
        c = arrays["weight"].shape[0]
        for name in ARRAYS[1:]:
            if arrays[name].shape[0] != c:
                raise ValueError("%s: expected shape (%d,) like weight, got %s" % (name, c, arrays[name].shape))
        low = arrays["running_var"] + np.float32(self.eps)
        if np.any(low <= 0):
            i = int(np.flatnonzero(low <= 0)[0])
            raise ValueError("running_var: channel %d has running_var + eps = %r <= 0 (no square root)"
                             % (i, float(low[i])))
        self.__dict__.update(arrays)
        self.channels = c

    # ------------------------------------------------------------------ state
    def get_arrays(self):
        return {name: getattr(self, name).copy() for name in ARRAYS}

    @classmethod
    def from_state(cls, settings, arrays):
        if not isinstance(arrays, dict):
            raise TypeError("arrays: expected a dict, got %s" % type(arrays).__name__)
        missing = [n for n in ARRAYS if n not in arrays]
        extra = set(arrays) - set(ARRAYS)
        if missing or extra:
            raise ValueError("arrays: QuantizedBatchNorm holds %s; missing %s, unknown %s"
                             % (", ".join(ARRAYS), sorted(missing), sorted(extra)))
        return cls(*(arrays[n] for n in ARRAYS), **_known(cls, settings))

    def _repr_head(self):
        return ["channels=%d" % self.channels]

    # ------------------------------------------------------------------ the op protocol
    def _check_spec(self, shape, dtype, name="x"):
        dims = self.dims
        ok = len(shape) in ((2, 3) if dims == 1 else (dims + 2,))
        if not ok:
            want = {1: "[N, C] or [N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}[dims]
            raise ValueError("%s: QuantizedBatchNorm(dims=%d) expects shape %s, got %s" % (name, dims, want,
                                                                                         tuple(shape)))
        if shape[1] is not None and shape[1] != self.channels:
            raise ValueError("%s: QuantizedBatchNorm has %d channels, got %d (shape %s)"
                             % (name, self.channels, shape[1], tuple(shape)))
        if dtype not in ("uint8", "int8"):
            raise TypeError("%s: QuantizedBatchNorm takes uint8 or int8 values, got %s" % (name, dtype))
        lo, hi = reference._qrange(dtype)
        if not lo <= self.zero_point <= hi:
            raise ValueError("zero_point: %d is outside the %s range of the input [%d, %d]"
                             % (self.zero_point, dtype, lo, hi))

    def infer(self, spec):
        if spec.kind != "quant":
            raise TypeError("x: QuantizedBatchNorm takes quantized values, got %s ones" % spec.kind)
        self._check_spec(spec.shape, spec.dtype)
        return Spec("quant", spec.shape, spec.dtype, self.scale, self.zero_point)

    def params(self, x_scale):
        """(alpha, beta): torch's per-channel float32 factors for an input of scale x_scale."""
        return reference.batch_norm_params(self.weight, self.bias, self.running_mean, self.running_var, self.eps,
                                           x_scale, self.scale)

    def prepare(self, spec):
        """{"alpha", "beta", "table"}: table[c, byte] = fastq.reference's output for channel c and
        the input value of that byte, for inputs quantized as spec."""
        self._check_spec(spec.shape, spec.dtype)

        def build():
            alpha, beta = self.params(spec.scale)
            codes = np.broadcast_to(_codes(spec.dtype), (1, self.channels, 256))
            table = reference.batch_norm(codes, alpha, beta, spec.zero_point, self.zero_point, self.relu,
                                         self.vector_block, spec.dtype)[0]
            return {"alpha": alpha, "beta": beta, "table": np.ascontiguousarray(table)}
        return self._op_data((float(spec.scale), int(spec.zero_point), spec.dtype), build)

    def _checked_input(self, x):
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: QuantizedBatchNorm takes a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        self._check_spec(x.values.shape, x.values.dtype.name)
        return self.prepare(Spec("quant", x.values.shape, x.values.dtype.name, x.scale, x.zero_point))

    def __call__(self, x):
        data = self._checked_input(x)
        y = _kernels.channel_table(x.values, data["table"])
        return QTensor._checked(y, self.scale, self.zero_point)

    def reference(self, x):
        """fastq.reference's output, computed element by element (no table)."""
        self._checked_input(x)
        alpha, beta = self.params(x.scale)
        y = reference.batch_norm(x.values, alpha, beta, x.zero_point, self.zero_point, self.relu, self.vector_block,
                                 x.values.dtype.name)
        return QTensor._checked(y, self.scale, self.zero_point)

    def explain(self, x, row=0, col=0, node=None):
        return explain_batch_norm(self, x, row, col)

    def summary_row(self, specs, op_data):
        where = {64: "AVX-512 build", 32: "AVX2 build", 0: "build without AVX: a*d + b rounded twice"}
        consts = "%d channels, eps=%g" % (self.channels, self.eps)
        if op_data is not None:
            a = op_data["alpha"]
            consts += ", alpha in [%.4g, %.4g]" % (float(a.min()), float(a.max()))
        return {"qparams": "%.6g / %d" % (self.scale, self.zero_point), "constants": consts,
                "arithmetic": "per channel rne(fma(alpha, x - zx, beta)) + zy%s (torch's qbatch_norm, %s), "
                              "as a [C][256] table" % (", ReLU" if self.relu else "", where[self.vector_block])}

    def emit_c(self, ctx, node, inputs, output, op_data):
        x, y = inputs[0], output
        if x.kind != "quant":
            raise ctx.error("receives %s values where quantized ones are expected" % x.kind)
        shape = ctx.shape_of(x)
        c = self.channels
        if not shape or shape[0] != c:
            raise ctx.error("an input of shape %s per sample; the layer has %d channels" % (shape, c))
        pixels = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        data = op_data if op_data is not None else self.prepare(
            Spec("quant", (None,) + tuple(shape), x.dtype, x.scale, x.zero_point))
        ct = CTYPE[x.dtype]
        tb = ctx.consts.array("table", ct, data["table"], "y for channel c and input byte b at [c * 256 + b]: "
                              "fastq.reference's integers")
        if getattr(x, "layout", None) == "nhwc" and pixels > 1:
            body = ["    int32_t p, c;", "    for (p = 0; p < %d; p++)" % pixels,
                    "        for (c = 0; c < %d; c++)" % c,
                    "            y[p * %d + c] = %s[c * 256 + (uint8_t)x[p * %d + c]];" % (c, tb, c)]
        else:
            body = ["    int32_t p, c;", "    for (c = 0; c < %d; c++)" % c,
                    "        for (p = 0; p < %d; p++)" % pixels,
                    "            y[c * %d + p] = %s[c * 256 + (uint8_t)x[c * %d + p]];" % (pixels, tb, pixels)]
        head = ("/* %s: quantized batch norm%s, %d channels, as per-channel 256-entry tables of fastq.reference's "
                "integers (x scale %s, zero point %d -> scale %s, zero point %d) */"
                % (ctx.node, " + ReLU" if self.relu else "", c, ctx.float_literal(x.scale), x.zero_point,
                   ctx.float_literal(self.scale), self.zero_point))
        code = "\n".join([head, ctx.consts.text(), ctx.fn("const %s *x, %s *y" % (ct, ct), "\n".join(body))])
        return ctx.step((x,), y, code, quantized=True)
