"""What calibration observes with, and how batches reach the observers: shared by the plain numpy
calibration (fastq.calibrate) and every importer's (fastq.importers.torch_calibrate), so that
both quantize weights and activations the same way.

    QConfig(activation=..., weight=...)     the observer factories
    QCONFIGS["x86"]                         torch 2.13's get_default_qconfig("x86"), ...
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import numpy as np

from .engines import ENGINES
from .observers import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
from .qtensor import QTensor, quantize, quantize_per_channel


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


def _engine_qconfig(e):
    return QConfig(_P(HistogramObserver, reduce_range=e.qconfig_reduce_range),
                   _PER_CHANNEL_WEIGHT if e.qconfig_per_channel else _TENSOR_WEIGHT)


# torch 2.13 torch/ao/quantization/qconfig.py: get_default_qconfig(engine) for each engine, and
# default_qconfig ("minmax": default_observer = MinMaxObserver(quant_min=0, quant_max=127),
# default_weight_observer).
QCONFIGS = {name: _engine_qconfig(e) for name, e in ENGINES.items()}
QCONFIGS["minmax"] = QConfig(_P(MinMaxObserver, quant_min=0, quant_max=127), _TENSOR_WEIGHT)


def resolve_qconfig(qconfig):
    """(QConfig, the engine the qconfig names or None) for a qconfig name or a QConfig."""
    if isinstance(qconfig, str):
        if qconfig not in QCONFIGS:
            raise ValueError("qconfig: %r is not one of %s, nor a fastq.calibrate.QConfig"
                             % (qconfig, ", ".join(repr(k) for k in QCONFIGS)))
        return QCONFIGS[qconfig], (qconfig if qconfig in ENGINES else None)
    if isinstance(qconfig, QConfig):
        for field in ("activation", "weight"):
            if not callable(getattr(qconfig, field)):
                raise TypeError("qconfig.%s: expected a callable making an observer, got %r"
                                % (field, getattr(qconfig, field)))
        return qconfig, None
    raise TypeError("qconfig: expected %s or a fastq.calibrate.QConfig, got %s"
                    % (", ".join(repr(k) for k in QCONFIGS), type(qconfig).__name__))


def activation_observer(qconfig):
    obs = qconfig.activation()
    if not hasattr(obs, "calculate_qparams") or getattr(obs, "dtype", None) != "uint8" \
            or not str(getattr(obs, "qscheme", "")).startswith("per_tensor"):
        raise ValueError("qconfig.activation: must make a per-tensor uint8 fastq observer "
                         "(torch's quantized Linear takes quint8 activations), got %r" % (obs,))
    return obs


def weight_qtensor(qconfig, weight):
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


def check_float_array(a, name, ndim=None):
    """A finite float32 ndarray from a numpy array or a CPU torch tensor (torch not imported)."""
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


def calibrate(batches, run, observers, first_k=None):
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
        x = check_float_array(batch, where)
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
