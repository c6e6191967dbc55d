"""Quantized activations computed through float, as torch's quantized kernels compute them:
Hardswish (nnq.Hardswish, torch.ops.quantized.hardswish) and Hardsigmoid (nn.Hardsigmoid /
F.hardsigmoid on a quantized tensor). Formulas: reference.hardswish, reference.hardsigmoid."""
from __future__ import annotations

import numpy as np

from .. import reference
from ..qtensor import QTensor
from ._spec import Spec
from ._base import QUANT, Layer, Setting, check_choice, check_dtype_name, check_scale_setting, \
    check_zero_point_in, register
from .arith import check_torch_threads, check_vector_block, segments

LAYOUTS = ("nchw", "nhwc")
CTYPE = {"uint8": "uint8_t", "int8": "int8_t"}


def vector_mask(shape, layout, vector_block, torch_threads):
    """bool array of `shape`: whether torch's elementwise loop reaches each element in its vector
    body. torch walks the tensor in memory order (NHWC for a channels-last 4-D value), per thread
    chunk, whole blocks of vector_block elements first, then a scalar tail."""
    n = int(np.prod(shape))
    flat = np.zeros(n, bool)
    for lo, body, _ in segments(n, torch_threads, vector_block):
        flat[lo:body] = True
    if layout == "nhwc" and len(shape) == 4:
        nn, c, h, w = shape
        return flat.reshape(nn, h, w, c).transpose(0, 3, 1, 2)
    return flat.reshape(shape)


@register
class Hardswish(Layer):
    """Quantized hardswish into (scale, zero_point): path "vector" is torch's x86 / fbgemm kernel
    (dequantize with fma, float hardswish, quantize; its scalar tail rounds with the zero point
    added first), "qnnpack" QNNPACK's lookup table. layout / vector_block / torch_threads say which
    elements torch's loop leaves to the scalar tail."""
    takes = QUANT
    settings = (
        Setting("scale", check_scale_setting("scale")),
        Setting("zero_point", check_zero_point_in("zero_point", lo=-128, hi=255)),
        Setting("dtype", check_dtype_name("dtype"), "uint8"),
        Setting("path", check_choice("path", reference.HARDSWISH_PATHS), "vector"),
        Setting("layout", check_choice("layout", LAYOUTS), "nchw"),
        Setting("vector_block", check_vector_block, 64),
        Setting("torch_threads", check_torch_threads, 1),
    )
    layout_dependent = True

    def __init__(self, scale, zero_point, dtype="uint8", path="vector", layout="nchw", vector_block=64,
                 torch_threads=1):
        self._set_settings(scale=scale, zero_point=zero_point, dtype=dtype, path=path, layout=layout,
                           vector_block=vector_block, torch_threads=torch_threads)
        check_zero_point_in("zero_point", "dtype")(self._settings["zero_point"], self._settings)

    def infer(self, spec):
        if spec.kind != "quant":
            raise TypeError("x: Hardswish takes quantized values, got %s ones" % spec.kind)
        return Spec("quant", spec.shape, self._settings["dtype"], self.scale, self.zero_point)

    def prepare(self, spec):
        return {}

    def __call__(self, x):
        mask = _checked_mask(self, x)
        y = reference.hardswish(x.values, x.scale, x.zero_point, self.scale, self.zero_point, self.path, mask,
                                self._settings["dtype"])
        return QTensor._checked(y, self.scale, self.zero_point)

    def emit_c(self, ctx, node, inputs, output, op_data):
        x, dt = inputs[0], self._settings["dtype"]
        return emit_table(self, ctx, x, output, lambda m: reference.hardswish(
            _codes(dt), x.scale, x.zero_point, self.scale, self.zero_point, self.path, m, dt), "hardswish")

    def summary_row(self, specs, op_data):
        return {"qparams": "%.6g / %d" % (self.scale, self.zero_point), "constants": "-",
                "arithmetic": "hardswish via float (%s%s)" % (self.path,
                                                              ", %s tail" % self.layout if self.path == "vector" else "")}


def _checked_mask(layer, x):
    """Checks x against the layer's dtype; the vector-body mask of its path (None for qnnpack)."""
    name, dtype = type(layer).__name__, layer._settings["dtype"]
    if not isinstance(x, QTensor) or x.axis is not None:
        raise TypeError("x: %s takes a per-tensor fastq.QTensor, got %s" % (name, type(x).__name__))
    if x.values.dtype.name != dtype:
        raise TypeError("x: %s(dtype=%r) takes %s values, got %s" % (name, dtype, dtype, x.values.dtype))
    if layer.path != "vector":
        return None
    return vector_mask(x.values.shape, layer.layout, layer.vector_block, layer.torch_threads)


@register
class Hardsigmoid(Layer):
    """Quantized hardsigmoid: output scale 1/256 and zero point 0 (uint8) or -128 (int8), fixed by
    torch. Paths, layout, vector_block and torch_threads as Hardswish (torch's kernels share the
    dequantize / quantize steps; the power-of-two output scale makes only the dequantize differ
    between body and tail)."""
    takes = QUANT
    settings = (
        Setting("dtype", check_dtype_name("dtype"), "uint8"),
        Setting("path", check_choice("path", reference.HARDSWISH_PATHS), "vector"),
        Setting("layout", check_choice("layout", LAYOUTS), "nchw"),
        Setting("vector_block", check_vector_block, 64),
        Setting("torch_threads", check_torch_threads, 1),
    )
    layout_dependent = True

    def __init__(self, dtype="uint8", path="vector", layout="nchw", vector_block=64, torch_threads=1):
        self._set_settings(dtype=dtype, path=path, layout=layout, vector_block=vector_block,
                           torch_threads=torch_threads)

    @property
    def scale(self):
        return reference.HARDSIGMOID_SCALE

    @property
    def zero_point(self):
        return reference.hardsigmoid_zero_point(self._settings["dtype"])

    def infer(self, spec):
        if spec.kind != "quant":
            raise TypeError("x: Hardsigmoid takes quantized values, got %s ones" % spec.kind)
        return Spec("quant", spec.shape, self._settings["dtype"], self.scale, self.zero_point)

    def prepare(self, spec):
        return {}

    def __call__(self, x):
        mask = _checked_mask(self, x)
        y = reference.hardsigmoid(x.values, x.scale, x.zero_point, self.path, mask, self._settings["dtype"])
        return QTensor._checked(y, self.scale, self.zero_point)

    def emit_c(self, ctx, node, inputs, output, op_data):
        x, dt = inputs[0], self._settings["dtype"]
        return emit_table(self, ctx, x, output, lambda m: reference.hardsigmoid(
            _codes(dt), x.scale, x.zero_point, self.path, m, dt), "hardsigmoid")

    def summary_row(self, specs, op_data):
        return {"qparams": "1/256 / %d" % self.zero_point, "constants": "-",
                "arithmetic": "hardsigmoid via float (%s%s)" % (self.path,
                                                                ", %s tail" % self.layout if self.path == "vector" else "")}


# ----------------------------------------------------------------------------- the exported C
def _codes(dtype):
    """Every value of an 8-bit dtype, in table order (uint8 0..255, int8 -128..127)."""
    return np.arange(256).astype(dtype) if dtype == "uint8" else (np.arange(256) - 128).astype(dtype)


def _buffer_order(mask, x):
    """mask ([1, C, ...], one sample) flattened in x's buffer order (channels last for an "nhwc" value)."""
    if x.layout == "nhwc" and x.spatial > 1 and mask.ndim >= 3:
        mask = np.moveaxis(mask, 1, -1)
    return mask.reshape(-1)


def _runs(idx):
    """[(begin, end)] of the sorted indices as contiguous runs."""
    out = []
    for i in idx.tolist():
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [tuple(r) for r in out]


def emit_table(layer, ctx, x, y, table_of, what):
    """The C of an 8-bit activation as 256-entry lookup tables (exact by construction: each table
    entry is fastq.reference's integer for that input code). table_of(mask) -> the 256 output
    integers with every code in torch's vector body (mask True) or its scalar tail (False).
    Elements that torch's loop leaves to its scalar tail (for one sample, in torch's memory
    order; path "vector") are overwritten from the tail table after the body-table loop."""
    if x.kind != "quant":
        raise ctx.error("receives %s values where quantized ones are expected" % x.kind)
    dtype = layer._settings["dtype"]
    if x.dtype != dtype:
        raise ctx.error("%s(dtype=%r) receives %s values" % (type(layer).__name__, dtype, x.dtype))
    shape = ctx.shape_of(x)
    off = 0 if dtype == "uint8" else 128
    yt, xt = CTYPE[dtype], CTYPE[dtype]
    c = ctx.consts
    if layer.path == "qnnpack":
        body, tail_idx, tail = table_of(None), np.zeros(0, np.int64), None
    else:
        mask = vector_mask((1,) + shape, layer.layout, layer.vector_block, layer.torch_threads)
        flat = _buffer_order(mask, x)
        body, tail = table_of(np.ones(256, bool)), table_of(np.zeros(256, bool))
        tail_idx = np.flatnonzero(~flat) if not np.array_equal(body, tail) else np.zeros(0, np.int64)
    tb = c.array("table", yt, body, "y for each input code %s" % ("q" if off == 0 else "q + 128"))
    lines = ["    int32_t i;", "    for (i = 0; i < %d; i++)" % x.size, "        y[i] = %s[x[i]%s];" % (
        tb, "" if off == 0 else " + 128")]
    if tail_idx.size:
        tt = c.array("tail_table", yt, tail, "torch's scalar tail: the dequantize without fma, the zero "
                                             "point added before rounding")
        runs = _runs(tail_idx)
        if len(runs) <= 8:
            for lo, hi in runs:
                lines += ["    for (i = %d; i < %d; i++)      /* torch's scalar tail */" % (lo, hi),
                          "        y[i] = %s[x[i]%s];" % (tt, "" if off == 0 else " + 128")]
        else:
            at = c.array("tail_index", "int32_t", tail_idx, "elements torch leaves to its scalar tail")
            lines += ["    for (i = 0; i < %d; i++)      /* torch's scalar tail */" % tail_idx.size,
                      "        y[%s[i]] = %s[x[%s[i]]%s];" % (at, tt, at, "" if off == 0 else " + 128")]
    head = ("/* %s: %s, path %s, as 256-entry tables of fastq.reference's integers (x scale %s, zero point %d "
            "-> scale %s, zero point %d) */" % (ctx.node, what, layer.path, ctx.float_literal(x.scale), x.zero_point,
                                               ctx.float_literal(y.scale), y.zero_point))
    code = "\n".join([head, c.text(), ctx.fn("const %s *x, %s *y" % (xt, yt), "\n".join(lines))])
    return ctx.step((x,), y, code, quantized=True)

