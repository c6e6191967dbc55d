"""Calibration without torch.ao: quantize a float model from calibration batches, as torch's
eager-mode prepare / convert of QuantWrapper(model) does, bit for bit.

    model = fastq.quantize_model(float_model, batches, qconfig="x86")   # -> fastq.Model
    y = model(x)

float_model: either
  - a float torch.nn.Module that torch.fx.symbolic_trace can trace (eval mode), built from
    nn.Linear, nn.Conv1d / nn.Conv2d (zero padding), BatchNorm1d / 2d right after a Conv or
    Linear (folded as fuse_modules folds it, fastq.fusion), MaxPool1d / 2d, AvgPool1d / 2d,
    residual / branch ops written with torch.ao.nn.quantized.FloatFunctional (add,
    add_relu, mul, add_scalar, mul_scalar, cat: how an eager-mode model must write them to be
    quantized), nn.ReLU / F.relu / torch.relu (also in place), the clamping activations, Flatten and the
    shape ops (flatten, reshape, view, permute, transpose, squeeze, unsqueeze, contiguous, size),
    torch.cat, Identity / Dropout, nested blocks, a block called twice. The result is a graph
    Model (fastq.Node list) equal to torch's convert of QuantWrapper(model); the observed values
    and the fusion rules are in importers/torch_calibrate.py (FUSIONS). A module chain Conv + BatchNorm
    + ReLU, Conv + BatchNorm, Conv + ReLU, Linear + BatchNorm1d or Linear + ReLU is fused as a torch
    user's fuse_modules list would fuse it when, at every call, each module reads only the one
    before (and nothing else reads the ones before the last); a functional relu and the clamping
    activations are not fused (torch fuses neither; importers/torch_calibrate.py lists what is). A BatchNorm that cannot be folded is refused. A plain `x + y` / `x * y` on the quantized values is refused
    (NotImplementedError naming the fx node): torch's converted eager model cannot run it. The
    float activations the observers see are computed by torch itself, so they are torch's bits.
  - plain numpy weights: a list of layers, each a dict {"weight": float [N, K], "bias": float [N]
    or None (optional), "relu": bool (optional, default False; a fused ReLU)} or a tuple
    (weight, bias) / (weight, bias, relu). No torch is imported. The float forward the observers
    see is numpy's float32 x @ weight.T + bias (then max(., 0)); numpy's and torch's float32
    matmuls may round differently, so this path equals torch's only where those agree.
calibration_batches: an iterable of float arrays (numpy, or CPU torch tensors) of shape
  [..., K] (for a torch model, whatever shape it takes). Each must be non-empty and finite.
qconfig: "x86" | "fbgemm" | "qnnpack" (torch.ao.quantization.get_default_qconfig(engine) of
  torch 2.13), "minmax" (torch's default_qconfig), or a QConfig(activation=..., weight=...)
  whose fields make fresh observers (see QConfig).
engine: the torch engine whose arithmetic the layers follow (fastq.engines: "x86" / "fbgemm" ->
  requant "fbgemm", "qnnpack" -> "qnnpack"). Default: the qconfig's engine; for "minmax" or a QConfig,
  torch.backends.quantized.engine if torch is already imported, else "x86".
"""
from __future__ import annotations

import numpy as np

from . import engines, importers
from .layers.elementwise import Dequantize, Quantize
from .layers.linear import QuantizedLinear
from .model import Model
from .qconfig import (QCONFIGS, QConfig, activation_observer, calibrate as _calibrate,  # noqa: F401 (API)
                      check_float_array, observe, resolve_qconfig, weight_qtensor)

ENGINE_REQUANT = {name: e.requant for name, e in engines.ENGINES.items()}   # kept for callers of 0.1


# --------------------------------------------------------------------------- the float chain
class _Linear:
    def __init__(self, name, weight, bias, relu):
        self.name, self.weight, self.bias, self.relu = name, weight, bias, relu


def _numpy_chain(layers):
    """The documented plain-numpy form -> [_Linear]."""
    if isinstance(layers, dict):
        layers = [layers]
    chain = []
    for i, layer in enumerate(layers):
        where = "model[%d]" % i
        if isinstance(layer, dict):
            unknown = set(layer) - {"weight", "bias", "relu"}
            if unknown:
                raise ValueError("%s: unknown keys %s (expected weight, bias, relu)" % (where, sorted(unknown)))
            if "weight" not in layer:
                raise ValueError("%s: has no 'weight'" % where)
            w, b, relu = layer["weight"], layer.get("bias"), layer.get("relu", False)
        elif isinstance(layer, (tuple, list)) and len(layer) in (2, 3):
            w, b = layer[0], layer[1]
            relu = layer[2] if len(layer) == 3 else False
        else:
            raise TypeError("%s: expected a dict {'weight', 'bias', 'relu'} or a tuple "
                            "(weight, bias[, relu]), got %s" % (where, type(layer).__name__))
        if not isinstance(relu, (bool, np.bool_)):
            raise TypeError("%s: relu must be a bool, got %r" % (where, relu))
        w = check_float_array(w, where + ".weight", ndim=2)
        if w.size == 0:
            raise ValueError("%s.weight: is empty, shape %s" % (where, w.shape))
        if b is not None:
            b = check_float_array(b, where + ".bias", ndim=1)
            if b.shape[0] != w.shape[0]:
                raise ValueError("%s.bias: expected shape (%d,), got %s" % (where, w.shape[0], b.shape))
        if chain and chain[-1].weight.shape[0] != w.shape[1]:
            raise ValueError("%s.weight: takes %d inputs, the layer before gives %d"
                             % (where, w.shape[1], chain[-1].weight.shape[0]))
        chain.append(_Linear(str(i), w, b, bool(relu)))
    if not chain:
        raise ValueError("model: expected at least one layer, got an empty list")
    return chain


def _numpy_forward(chain, x):
    """Float32 forward of the numpy chain: yields (layer, observed value) per layer."""
    for layer in chain:
        y = np.matmul(x, layer.weight.T).astype(np.float32)
        if layer.bias is not None:
            y = (y + layer.bias).astype(np.float32)
        if layer.relu:
            y = np.maximum(y, np.float32(0))
        yield layer, y
        x = y


# --------------------------------------------------------------------------- quantize_model
def quantize_model(model, calibration_batches, qconfig="x86", engine=None):
    """A fastq.Model equal to torch's prepare / convert of QuantWrapper(model), with each
    Linear + ReLU module pair fused, calibrated on the same batches (see the module docstring)."""
    qconfig, default_engine = resolve_qconfig(qconfig)
    if engine is None:
        engine = default_engine if default_engine is not None else engines.current_name()
    rules = engines.engine(engine)
    importer = importers.find(model)
    if importer is not None:
        return importer.load("calibrate")(model, calibration_batches, qconfig, engine)
    if not isinstance(model, (list, tuple, dict)):
        raise TypeError("model: expected a float torch.nn.Module or a list of numpy layers "
                        "({'weight', 'bias', 'relu'} dicts or (weight, bias[, relu]) tuples), "
                        "got %s" % type(model).__name__)
    steps = _numpy_chain(model)
    observers = {"input": activation_observer(qconfig)}
    observers.update((id(s), activation_observer(qconfig)) for s in steps)

    def run(x, where):
        return [(id(layer), "the output of layer %s" % layer.name, y)
                for layer, y in _numpy_forward(steps, x)]

    _calibrate(calibration_batches, run, observers, first_k=steps[0].weight.shape[1])

    s_in, zp_in = observers["input"].calculate_qparams()
    layers, names = [Quantize(s_in, zp_in)], ["quant"]
    for s in steps:
        scale, zp = observers[id(s)].calculate_qparams()
        bias = s.bias
        if bias is None and rules.zero_bias_when_none:
            bias = np.zeros(s.weight.shape[0], np.float32)     # what torch's packed Linear then holds
        layers.append(QuantizedLinear(weight_qtensor(qconfig, s.weight), bias, scale, zp, relu=s.relu,
                                      requant=rules.requant, bias_rounding=rules.bias_rounding))
        names.append(s.name)
    layers.append(Dequantize())
    names.append("dequant")
    return Model(layers, names=names)
