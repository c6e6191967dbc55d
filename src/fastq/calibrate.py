"""Calibration without torch.ao: quantize a float model from calibration batches, as torch's
eager-mode prepare / convert of QuantWrapper(model) does, bit for bit.

    model = fastq.quantize_model(float_model, batches, qconfig="x86")   # -> fastq.Model
    y = model(x)

float_model: either
  - a float torch.nn.Module that torch.fx.symbolic_trace can trace (eval mode), built from
    nn.Linear, residual / branch ops written with torch.ao.nn.quantized.FloatFunctional (add,
    add_relu, mul, add_scalar, mul_scalar, cat: how an eager-mode model must write them to be
    quantized), nn.ReLU / F.relu / torch.relu (also in place), ReLU6 / Hardtanh, Flatten and the
    shape ops (flatten, reshape, view, permute, transpose, squeeze, unsqueeze, contiguous, size),
    torch.cat, Identity / Dropout, nested blocks, a block called twice. The result is a graph
    Model (fastq.Node list) equal to torch's convert of QuantWrapper(model); the observed values
    and the fusion rule are in fx_calibrate.py. A Linear whose every call feeds only one
    nn.ReLU module, called only after it, is fused with it (fuse_modules on that pair); a
    functional relu is not fused. A plain `x + y` / `x * y` on the quantized values is refused
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
engine: the torch engine whose arithmetic the layers follow ("x86" / "fbgemm" -> requant
  "fbgemm", "qnnpack" -> "qnnpack"). Default: the qconfig's engine; for "minmax" or a QConfig,
  torch.backends.quantized.engine if torch is already imported, else "x86".
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, NamedTuple

import numpy as np

from .layers.elementwise import Dequantize, Quantize
from .layers.linear import QuantizedLinear
from .model import Model
from .observers import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
from .qtensor import QTensor, quantize, quantize_per_channel

ENGINE_REQUANT = {"x86": "fbgemm", "fbgemm": "fbgemm", "qnnpack": "qnnpack"}


class QConfig(NamedTuple):
    """Which observers calibration uses. activation: a callable returning a fresh per-tensor
    uint8 observer (one per observed value); weight: a callable returning a fresh int8 weight
    observer (per tensor, or per channel along axis 0), e.g.

        QConfig(activation=functools.partial(HistogramObserver, reduce_range=True),
                weight=functools.partial(PerChannelMinMaxObserver, dtype="int8",
                                         qscheme="per_channel_symmetric"))"""
    activation: Callable
    weight: Callable


_P = functools.partial
_PER_CHANNEL_WEIGHT = _P(PerChannelMinMaxObserver, dtype="int8", qscheme="per_channel_symmetric")
_TENSOR_WEIGHT = _P(MinMaxObserver, dtype="int8", qscheme="per_tensor_symmetric")

# torch 2.13 torch/ao/quantization/qconfig.py: get_default_qconfig(backend) and default_qconfig
# (default_observer = MinMaxObserver(quant_min=0, quant_max=127), default_weight_observer).
QCONFIGS = {
    "x86": QConfig(_P(HistogramObserver, reduce_range=True), _PER_CHANNEL_WEIGHT),
    "fbgemm": QConfig(_P(HistogramObserver, reduce_range=True), _PER_CHANNEL_WEIGHT),
    "qnnpack": QConfig(_P(HistogramObserver, reduce_range=False), _TENSOR_WEIGHT),
    "minmax": QConfig(_P(MinMaxObserver, quant_min=0, quant_max=127), _TENSOR_WEIGHT),
}


# --------------------------------------------------------------------------- the float chain
class _Linear:
    def __init__(self, name, weight, bias, relu):
        self.name, self.weight, self.bias, self.relu = name, weight, bias, relu


def _check_float_array(a, name, ndim=None):
    if type(a).__module__.startswith("torch"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise TypeError("%s: expected a float array, got dtype %s" % (name, a.dtype))
    a = np.asarray(a, dtype=np.float32)
    if ndim is not None and a.ndim != ndim:
        raise ValueError("%s: expected %d dimensions, got shape %s" % (name, ndim, a.shape))
    if not np.all(np.isfinite(a)):
        raise ValueError("%s: contains NaN or inf" % name)
    return a


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
        w = _check_float_array(w, where + ".weight", ndim=2)
        if w.size == 0:
            raise ValueError("%s.weight: is empty, shape %s" % (where, w.shape))
        if b is not None:
            b = _check_float_array(b, where + ".bias", ndim=1)
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


# --------------------------------------------------------------------------- observers
def _resolve_qconfig(qconfig):
    if isinstance(qconfig, str):
        if qconfig not in QCONFIGS:
            raise ValueError("qconfig: %r is not one of %s, nor a fastq.calibrate.QConfig"
                             % (qconfig, ", ".join(repr(k) for k in QCONFIGS)))
        return QCONFIGS[qconfig], (qconfig if qconfig != "minmax" else None)
    if isinstance(qconfig, QConfig):
        for field in ("activation", "weight"):
            if not callable(getattr(qconfig, field)):
                raise TypeError("qconfig.%s: expected a callable making an observer, got %r"
                                % (field, getattr(qconfig, field)))
        return qconfig, None
    raise TypeError("qconfig: expected 'x86', 'fbgemm', 'qnnpack', 'minmax' or a "
                    "fastq.calibrate.QConfig, got %s" % type(qconfig).__name__)


def _activation_observer(qconfig):
    obs = qconfig.activation()
    if not hasattr(obs, "calculate_qparams") or getattr(obs, "dtype", None) != "uint8" \
            or not str(getattr(obs, "qscheme", "")).startswith("per_tensor"):
        raise ValueError("qconfig.activation: must make a per-tensor uint8 fastq observer "
                         "(torch's quantized Linear takes quint8 activations), got %r" % (obs,))
    return obs


def _weight_qtensor(qconfig, weight):
    """The weight observer of nnq.Linear.from_float run on the float weight, then torch's
    _quantize_weight: quantize_per_channel / quantize_per_tensor, clamped to the observer's
    range when that is narrower than int8."""
    obs = qconfig.weight()
    if getattr(obs, "dtype", None) != "int8" or not hasattr(obs, "calculate_qparams"):
        raise ValueError("qconfig.weight: must make an int8 fastq observer (torch requires qint8 "
                         "weights), got %r" % (obs,))
    per_channel = str(obs.qscheme).startswith("per_channel")
    if per_channel and getattr(obs, "ch_axis", 0) != 0:
        raise ValueError("qconfig.weight: per-channel weights must use ch_axis=0, got %r" % obs.ch_axis)
    obs(weight)
    scale, zero_point = obs.calculate_qparams()
    if per_channel:
        q = quantize_per_channel(weight, np.asarray(scale, np.float64), np.asarray(zero_point), 0, "int8")
    else:
        q = quantize(weight, float(scale), int(zero_point), "int8")
    if obs.quant_min > -128 or obs.quant_max < 127:
        values = np.clip(q.values, obs.quant_min, obs.quant_max).astype(np.int8)
        q = QTensor(values, q.scale, q.zero_point, axis=q.axis)
    return q


def _requant(engine, default_engine):
    if engine is None:
        engine = default_engine
    if engine is None:
        torch = sys.modules.get("torch")
        engine = torch.backends.quantized.engine if torch is not None else "x86"
    if not isinstance(engine, str):
        raise TypeError("engine: expected a torch quantized engine name, got %r" % type(engine).__name__)
    if engine not in ENGINE_REQUANT:
        raise ValueError("engine: %r is not reproduced by fastq; use one of %s"
                         % (engine, ", ".join(sorted(ENGINE_REQUANT))))
    return ENGINE_REQUANT[engine]


def _engine_name(engine, default_engine):
    """The torch engine the model follows (an add's arithmetic depends on it, not only requant)."""
    if engine is None:
        engine = default_engine
    if engine is None:
        torch = sys.modules.get("torch")
        engine = torch.backends.quantized.engine if torch is not None else "x86"
    return engine


def _is_torch_module(model):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


# --------------------------------------------------------------------------- quantize_model
def quantize_model(model, calibration_batches, qconfig="x86", engine=None):
    """A fastq.Model equal to torch's prepare / convert of QuantWrapper(model), with each
    Linear + ReLU module pair fused, calibrated on the same batches (see the module docstring)."""
    qconfig, default_engine = _resolve_qconfig(qconfig)
    requant = _requant(engine, default_engine)
    if _is_torch_module(model):
        from .torch_compat import quantize_torch_model
        return quantize_torch_model(model, calibration_batches, qconfig,
                                    _engine_name(engine, default_engine), requant)
    if not isinstance(model, (list, tuple, dict)):
        raise TypeError("model: expected a float torch.nn.Module or a list of numpy layers "
                        "({'weight', 'bias', 'relu'} dicts or (weight, bias[, relu]) tuples), "
                        "got %s" % type(model).__name__)
    steps = _numpy_chain(model)
    observers = {"input": _activation_observer(qconfig)}
    observers.update((id(s), _activation_observer(qconfig)) for s in steps)

    def run(x, where):
        return [(id(layer), "the output of layer %s" % layer.name, y)
                for layer, y in _numpy_forward(steps, x)]

    _calibrate(calibration_batches, run, observers, first_k=steps[0].weight.shape[1])

    s_in, zp_in = observers["input"].calculate_qparams()
    layers, names = [Quantize(s_in, zp_in)], ["quant"]
    for s in steps:
        scale, zp = observers[id(s)].calculate_qparams()
        layers.append(QuantizedLinear(_weight_qtensor(qconfig, s.weight), s.bias, scale, zp,
                                      relu=s.relu, requant=requant))
        names.append(s.name)
    layers.append(Dequantize())
    names.append("dequant")
    return Model(layers, names=names)


def _calibrate(batches, run, observers, first_k=None):
    """Feeds each batch to observers["input"], then each (key, label, value) run(x, where)
    gives to observers[key], in the order run gives them (a shared observer sees its values
    in execution order, as torch's hooks do)."""
    try:
        iterator = iter(batches)
    except TypeError:
        raise TypeError("calibration_batches: expected an iterable of float arrays, got %s"
                        % type(batches).__name__) from None
    if isinstance(batches, (np.ndarray, str, bytes)) or type(batches).__module__.startswith("torch"):
        raise TypeError("calibration_batches: expected an iterable of batches (e.g. a list of "
                        "arrays), got one %s; wrap it in a list" % type(batches).__name__)
    count = 0
    for i, batch in enumerate(iterator):
        where = "calibration_batches[%d]" % i
        x = _check_float_array(batch, where)
        if x.size == 0:
            raise ValueError("%s: is empty, shape %s" % (where, x.shape))
        if first_k is not None and (x.ndim < 1 or x.shape[-1] != first_k):
            raise ValueError("%s: expected shape [..., %d] (the first Linear's in_features), "
                             "got %s" % (where, first_k, x.shape))
        observe(observers["input"], x, where, "the input")
        for key, label, y in run(x, where):
            y = np.asarray(y, dtype=np.float32)
            if not np.all(np.isfinite(y)):
                raise ValueError("%s: the float model gives non-finite values: %s" % (where, label))
            observe(observers[key], y, where, label)
        count += 1
    if count == 0:
        raise ValueError("calibration_batches: is empty; calibration needs at least one batch")


def observe(obs, value, where, what):
    try:
        obs(value)
    except ValueError as e:                 # e.g. a huge constant the histogram cannot bin
        raise ValueError("%s: observing %s: %s" % (where, what, e)) from e
