"""torch's quantized tensors and quantized Linear modules as fastq QTensors and layers.

The layer follows the engine that packed the module (fastq.engines): its requantization, its
bias rounding, and for a dynamic Linear its float epilogue and whether reduce_range applies.
Imported only when a torch object arrives (fastq.importers): it imports torch at its top.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd

from .. import engines
from ..layers.dynamic import DynamicQuantizedLinear
from ..layers.linear import QuantizedLinear
from ..qtensor import QTensor


def engine_for(engine=None):
    """The fastq.engines.Engine of `engine`, default torch.backends.quantized.engine."""
    return engines.engine(torch.backends.quantized.engine if engine is None else engine)


def requant_for_engine(engine=None):
    """The fastq requantization mode reproducing a torch quantized engine."""
    return engine_for(engine).requant


def qtensor_from_torch(t):
    """torch quantized tensor (quint8 / qint8; per tensor or per channel) -> fastq.QTensor."""
    if not isinstance(t, torch.Tensor) or not t.is_quantized:
        raise TypeError("t: expected a quantized torch.Tensor, got %s" % type(t).__name__)
    if t.dtype not in (torch.quint8, torch.qint8):
        raise TypeError("t: expected quint8 or qint8, got %s" % t.dtype)
    values = t.int_repr().cpu().numpy()
    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return QTensor(values, float(t.q_scale()), int(t.q_zero_point()))
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        return QTensor(values, t.q_per_channel_scales().double().numpy(),
                       t.q_per_channel_zero_points().numpy(), axis=int(t.q_per_channel_axis()))
    raise TypeError("t: unsupported qscheme %s" % scheme)


def qtensor_to_torch(q):
    """fastq.QTensor (per tensor) -> torch quantized tensor holding the same integers."""
    if q.axis is not None:
        raise TypeError("q: only per-tensor QTensors convert back to torch")
    ints = torch.from_numpy(np.array(q.values, order="C"))     # a copy: QTensor values are read-only
    return torch._make_per_tensor_quantized_tensor(ints, q.scale, q.zero_point)


def _bias(module):
    bias = module.bias()
    return None if bias is None else bias.detach().float().numpy().copy()


def linear_from_torch(module, engine=None):
    """torch.ao.nn.quantized.Linear or ...intrinsic.quantized.LinearReLU -> QuantizedLinear."""
    if not isinstance(module, nnq.Linear) or type(module).__name__ not in ("Linear", "LinearReLU"):
        raise TypeError("module: expected torch.ao.nn.quantized.Linear or "
                        "torch.ao.nn.intrinsic.quantized.LinearReLU, got %s" % type(module).__name__)
    e = engine_for(engine)
    return QuantizedLinear(qtensor_from_torch(module.weight()), _bias(module), float(module.scale),
                           int(module.zero_point), relu=isinstance(module, nniq.LinearReLU),
                           requant=e.requant, bias_rounding=e.bias_rounding)


def dynamic_linear_from_torch(module, engine=None):
    """torch.ao.nn.quantized.dynamic.Linear or ...intrinsic.quantized.dynamic.LinearReLU (qint8
    weights) -> DynamicQuantizedLinear, reproducing the given (or current) torch engine."""
    if not isinstance(module, nnqd.Linear):
        raise TypeError("module: expected torch.ao.nn.quantized.dynamic.Linear or "
                        "torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU, got %s" % type(module).__name__)
    if module._packed_params.dtype != torch.qint8:
        raise TypeError("module: only qint8 dynamic Linear is reproduced, got weights of dtype %s"
                        % module._packed_params.dtype)
    e = engine_for(engine)
    relu = isinstance(module, nniqd.LinearReLU)
    # nnqd.Linear passes reduce_range=True from version 4 on (the current one); older modules call
    # linear_dynamic with its default, False. LinearReLU always passes True.
    version = getattr(module, "version", None)
    reduce_range = e.honours_reduce_range and (relu or (version is not None and version >= 4))
    return DynamicQuantizedLinear(qtensor_from_torch(module.weight()), _bias(module), relu=relu,
                                  mode=e.dynamic_mode, reduce_range=reduce_range)
