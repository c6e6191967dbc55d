"""The layers: each declares its settings, packs its weights once and calls one kernel."""
from .linear import QuantizedLinear, FixedPointParams
from .dynamic import DynamicQuantizedLinear
from .elementwise import Quantize, Dequantize, Identity, ReLU, ReLU6, Flatten
from . import arith, shape  # noqa: F401,E402  (registers the graph ops: add, mul, cat, reshape, ...)
from . import conv, pool, activation, reduce, batchnorm  # noqa: F401,E402  (registers QuantizedConv, pools, Hardswish, MeanHW, QuantizedBatchNorm)
from ._base import LAYER_TYPES, Layer, Setting

__all__ = ["QuantizedLinear", "FixedPointParams", "DynamicQuantizedLinear",
           "Quantize", "Dequantize", "Identity", "ReLU", "ReLU6", "Flatten", "LAYER_TYPES", "Layer", "Setting"]
