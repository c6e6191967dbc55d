"""Quantized activations computed through float, as torch's quantized kernels compute them:
Hardswish (nnq.Hardswish, torch.ops.quantized.hardswish). Formula: reference.hardswish."""
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
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: Hardswish takes a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        if x.values.dtype.name != self._settings["dtype"]:
            raise TypeError("x: Hardswish(dtype=%r) takes %s values, got %s"
                            % (self._settings["dtype"], self._settings["dtype"], x.values.dtype))
        mask = None
        if self.path == "vector":
            mask = vector_mask(x.values.shape, self.layout, self.vector_block, self.torch_threads)
        y = reference.hardswish(x.values, x.scale, x.zero_point, self.scale, self.zero_point, self.path, mask,
                                self._settings["dtype"])
        return QTensor._checked(y, self.scale, self.zero_point)

    def summary_row(self, specs, op_data):
        return {"qparams": "%.6g / %d" % (self.scale, self.zero_point), "constants": "-",
                "arithmetic": "hardswish via float (%s%s)" % (self.path,
                                                              ", %s tail" % self.layout if self.path == "vector" else "")}
