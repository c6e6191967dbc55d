"""What the model file needs from layers and models, in one place: the layers' declared
settings (layers/_base.py: get_settings, get_arrays, from_state, LAYER_TYPES) and the model's
nodes (a chain today; model.Node graphs once they land).
"""
from __future__ import annotations

import functools


# --------------------------------------------------------------------------- layers
def layer_types():
    """op name -> layer class, for every op a model file may hold."""
    from . import layers  # noqa: F401 - importing the layers registers them
    from .layers._base import LAYER_TYPES
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
    return dict(layer.get_settings())


def get_arrays(layer):
    return dict(layer.get_arrays())


def from_state(cls, settings, arrays):
    return cls.from_state(settings, arrays)


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
