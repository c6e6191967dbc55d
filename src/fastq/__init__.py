"""fastq: quantized neural-network layers by hand, bit-exact with PyTorch.

uint8 activations x int8 weights -> int32 accumulators -> zero-point corrections ->
requantization (float multiplier, or Q31 multiplier + shift) -> uint8.
"""
from .qtensor import QTensor, quantize, quantize_per_channel, dequantize, choose_qparams
from .fixedpoint import quantize_multiplier, multiply_by_quantized_multiplier
from .qgemm import qgemm
from .layers import QuantizedLinear, DynamicQuantizedLinear, FixedPointParams
from .model import Model, from_torch, load
from .runtime import backends, get_backend, set_backend, get_num_threads, set_num_threads
from . import reference
from .explain import explain
from .model import Node
from .calibrate import quantize_model
from .importers import fastq_npz  # noqa: F401,E402  (registers the reader of the old .npz formats)

__version__ = "0.1.0"

__all__ = [
    "QTensor", "quantize", "quantize_per_channel", "dequantize", "choose_qparams",
    "quantize_multiplier", "multiply_by_quantized_multiplier", "qgemm", "QuantizedLinear",
    "DynamicQuantizedLinear", "FixedPointParams", "Model", "from_torch", "load", "explain",
    "backends", "get_backend", "set_backend", "get_num_threads", "set_num_threads", "reference",
    "Node",
    "quantize_model",
]
