"""What the model file needs from layers and models, in one place: the layers' declared
settings (layers/_base.py: get_settings, get_arrays, from_state, LAYER_TYPES) and the model's
nodes (model.Node graphs).
"""
from __future__ import annotations

import functools
import inspect

from . import layers  # noqa: F401 - importing the layers registers them
from .layers._base import LAYER_TYPES
from .model import Model, Node


# --------------------------------------------------------------------------- layers
def layer_types():
    """op name -> layer class, for every op a model file may hold."""
    return LAYER_TYPES


def setting_names(cls):
    return {s.name for s in cls.settings}


def array_names(cls):
    return tuple(cls.arrays)


@functools.lru_cache(maxsize=None)
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
    return dict(layer.get_settings())


def get_arrays(layer):
    return dict(layer.get_arrays())


def from_state(cls, settings, arrays):
    return cls.from_state(settings, arrays)


# --------------------------------------------------------------------------- the model
def graph_of(model):
    """(inputs, outputs, [(node name, layer, inputs, outputs), ...] in topological order)."""
    if not isinstance(model, Model):
        raise TypeError("model: expected a fastq.Model, got %s" % type(model).__name__)
    return (tuple(model.inputs), tuple(model.outputs),
            [(n.name, n.layer, tuple(n.inputs), tuple(n.outputs)) for n in model.nodes])


def make_model(nodes, inputs, outputs):
    return Model(nodes=[Node(name, layer, ins, outs) for name, layer, ins, outs in nodes],
                 inputs=inputs, outputs=outputs)
