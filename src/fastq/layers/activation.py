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

    def summary_row(self, specs, op_data):
        return {"qparams": "1/256 / %d" % self.zero_point, "constants": "-",
                "arithmetic": "hardsigmoid via float (%s%s)" % (self.path,
                                                                ", %s tail" % self.layout if self.path == "vector" else "")}
