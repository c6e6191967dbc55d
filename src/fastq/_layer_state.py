"""What the model file needs from layers and models, in one place.

The layers declare their settings once (layers/_base.py: get_settings, get_arrays, from_state,
the LAYER_TYPES registry); the model is a graph of nodes (model.Node). Until those land, the
fallbacks below give the same view of today's layer classes and chain Model.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- registry
def layer_types():
    """op name -> layer class, for every op a model file may hold."""
    from . import layers
    reg = getattr(layers, "LAYER_TYPES", None)
    if reg is not None:
        return reg
    from .layers import (QuantizedLinear, DynamicQuantizedLinear, Quantize, Dequantize, Identity,
                         ReLU, ReLU6, Flatten)
    return {c.__name__: c for c in (QuantizedLinear, DynamicQuantizedLinear, Quantize, Dequantize,
                                    Identity, ReLU, ReLU6, Flatten)}


def setting_names(cls):
    """The names of the settings cls declares (a set), or None when it declares none."""
    declared = getattr(cls, "settings", None)
    if isinstance(declared, (tuple, list)):
        return {getattr(s, "name", s) for s in declared}
    return _FALLBACK_SETTINGS.get(cls.__name__)


def array_names(cls):
    declared = getattr(cls, "arrays", None)
    if isinstance(declared, (tuple, list)):
        return tuple(declared)
    return _FALLBACK_ARRAYS.get(cls.__name__, ())


def arity(cls):
    """((least, most) inputs, number of outputs) of one node of this op; most is None for
    *args, an entry is None where it cannot be told (a compiled __call__)."""
    n_in = getattr(cls, "n_inputs", None)
    if n_in is None:
        n_in = _positional(getattr(cls, "__call__", None))
    elif isinstance(n_in, int):
        n_in = (n_in, n_in)
    return n_in, getattr(cls, "n_outputs", 1)


def _positional(call):
    import inspect
    try:
        params = list(inspect.signature(call).parameters.values())[1:]      # past self
    except (TypeError, ValueError):
        return None
    kinds = inspect.Parameter
    pos = [p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    least = sum(p.default is kinds.empty for p in pos)
    most = None if any(p.kind == kinds.VAR_POSITIONAL for p in params) else len(pos)
    return least, most


def get_settings(layer):
    if hasattr(layer, "get_settings"):
        return dict(layer.get_settings())
    return _fallback_settings(layer)


def get_arrays(layer):
    if hasattr(layer, "get_arrays"):
        return dict(layer.get_arrays())
    return _fallback_arrays(layer)


def from_state(cls, settings, arrays):
    if hasattr(cls, "from_state"):
        return cls.from_state(settings, arrays)
    return _fallback_from_state(cls, settings, arrays)


# --------------------------------------------------------------------------- the model
def _graph_model():
    from . import model
    return getattr(model, "Node", None)


def graph_of(model):
    """(inputs, outputs, [(node name, layer, inputs, outputs), ...] in topological order)."""
    from .model import Model
    if not isinstance(model, Model):
        raise TypeError("model: expected a fastq.Model, got %s" % type(model).__name__)
    if hasattr(model, "nodes"):
        return (tuple(model.inputs), tuple(model.outputs),
                [(n.name, n.layer, tuple(n.inputs), tuple(n.outputs)) for n in model.nodes])
    names = list(model.names)
    value = "input"
    while value in names:
        value += "_"
    inputs, nodes = (value,), []
    for name, layer in zip(names, model.layers):
        nodes.append((name, layer, (value,), (name,)))
        value = name
    return inputs, (value,), nodes


def make_model(nodes, inputs, outputs):
    from .model import Model
    Node = _graph_model()
    if Node is not None:
        return Model(nodes=[Node(name, layer, ins, outs) for name, layer, ins, outs in nodes],
                     inputs=inputs, outputs=outputs)
    value = inputs[0] if len(inputs) == 1 else None
    for name, _, ins, outs in nodes:
        if value is None or ins != (value,) or len(outs) != 1:
            raise ValueError("node %r: this fastq runs chains only (each node takes the previous "
                             "node's output)" % name)
        value = outs[0]
    if outputs != (value,):
        raise ValueError("model outputs %s: a chain gives its last node's output %r" % (list(outputs), value))
    return Model([n[1] for n in nodes], [n[0] for n in nodes])


# --------------------------------------------------------------------------- fallbacks
_W = ("weight", "weight_scale", "weight_zero_point", "bias")
_FALLBACK_ARRAYS = {"QuantizedLinear": _W + ("int_bias",), "DynamicQuantizedLinear": _W}
_FALLBACK_SETTINGS = {
    "QuantizedLinear": {"scale", "zero_point", "relu", "requant", "rounding", "dtype", "effective_scale",
                        "input_scale", "input_zero_point", "weight_scale", "weight_zero_point"},
    "DynamicQuantizedLinear": {"relu", "mode", "reduce_range", "weight_scale", "weight_zero_point"},
    "Quantize": {"scale", "zero_point", "dtype"},
    "Flatten": {"start_dim", "end_dim"},
    "Dequantize": set(), "Identity": set(), "ReLU": set(), "ReLU6": set(),
}


def _weight_settings(w):
    if w.axis is None:
        return {"weight_scale": float(w.scale), "weight_zero_point": int(w.zero_point)}
    return {"weight_scale": None, "weight_zero_point": None}


def _fallback_settings(layer):
    t = type(layer).__name__
    if t == "QuantizedLinear":
        s = dict(scale=layer.scale, zero_point=layer.zero_point, relu=layer.relu, requant=layer.requant,
                 rounding=layer.rounding, dtype=np.dtype(layer.dtype).name,
                 effective_scale=layer.effective_scale, input_scale=layer.input_scale,
                 input_zero_point=layer.input_zero_point)
        s.update(_weight_settings(layer.weight))
        return s
    if t == "DynamicQuantizedLinear":
        s = dict(relu=layer.relu, mode=layer.mode, reduce_range=layer.reduce_range)
        s.update(_weight_settings(layer.weight))
        return s
    if t == "Quantize":
        return dict(scale=layer.scale, zero_point=layer.zero_point, dtype=np.dtype(layer.dtype).name)
    if t == "Flatten":
        return dict(start_dim=layer.start_dim, end_dim=layer.end_dim)
    return {}


def _fallback_arrays(layer):
    out = {}
    w = getattr(layer, "weight", None)
    if w is not None:
        out["weight"] = w.values
        if w.axis is not None:
            out["weight_scale"] = np.asarray(w.scale, np.float64)
            out["weight_zero_point"] = np.asarray(w.zero_point, np.int32)
    if getattr(layer, "bias", None) is not None:
        out["bias"] = layer.bias
    if getattr(layer, "int_bias", None) is not None:
        out["int_bias"] = layer.int_bias
    return out


def _fallback_from_state(cls, s, a):
    from .qtensor import QTensor
    t = cls.__name__
    if t in ("QuantizedLinear", "DynamicQuantizedLinear"):
        if "weight" not in a:
            raise ValueError("weight: missing")
        if "weight_scale" in a or "weight_zero_point" in a:
            w = QTensor(a["weight"], a.get("weight_scale"), a.get("weight_zero_point"), axis=0)
        else:
            w = QTensor(a["weight"], s.get("weight_scale"), s.get("weight_zero_point"))
        if "bias" in a and "int_bias" in a:
            raise ValueError("bias: both a float and an int32 bias")
        bias = a.get("int_bias", a.get("bias"))
        rest = {k: v for k, v in s.items() if k not in ("weight_scale", "weight_zero_point")}
        return cls(w, bias, **rest)
    return cls(**s)
