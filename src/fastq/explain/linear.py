"""The explain entry points: a layer's trace (through the op protocol: layer.explain), a node
of a model, a layer in another mode. The traces themselves live with their ops
(layers/linear/explain.py for the linear family)."""
from __future__ import annotations

import numpy as np

from .._checks import check_index as _check_index
from ..layers._base import Layer


# --------------------------------------------------------------------------- entry points
def explain(layer, x, row=0, col=0):
    """The Trace of output element [row, col] of layer(x) (rows: x flattened to [M, K]), as the
    op's explain builds it. layer: any fastq op (fastq.QuantizedLinear: x a per-tensor uint8 /
    int8 QTensor; fastq.DynamicQuantizedLinear: floats); an op without traces raises its
    NotImplementedError naming it and the capability."""
    if not isinstance(layer, Layer):
        raise TypeError("layer: expected a fastq layer (e.g. fastq.QuantizedLinear), got %s"
                        % type(layer).__name__)
    return layer.explain(x, row=row, col=col)


def node_input(model, x, node):
    """(layer, the value that flows into it) for `node` of model on input x (a tuple for a
    model of several inputs): node is a node name, or an index into model.nodes; the value
    comes from model.run_values. For a node of several inputs, node_inputs gives them all."""
    layer, values = node_inputs(model, x, node)
    if len(values) != 1:
        raise ValueError("node: %r takes %d inputs; node_input gives one (use node_inputs)"
                         % (_node_name(model, node), len(values)))
    return layer, values[0]


def node_inputs(model, x, node):
    """(layer, [the values that flow into it]) for `node` of model on input x."""
    if not (hasattr(model, "nodes") and hasattr(model, "run_values")):
        raise TypeError("model: expected a fastq.Model, got %s" % type(model).__name__)
    nd = list(model.nodes)[_node_index([n.name for n in model.nodes], node)]
    values = model.run_values(*x) if isinstance(x, tuple) else model.run_values(x)
    return nd.layer, [values[v] for v in nd.inputs]


def _node_name(model, node):
    return list(model.nodes)[_node_index([n.name for n in model.nodes], node)].name


def _node_index(names, node):
    if isinstance(node, (int, np.integer)) and not isinstance(node, (bool, np.bool_)):
        return _check_index(node, "node", len(names))
    if not isinstance(node, str):
        raise TypeError("node: expected a node name or an index, got %r" % type(node).__name__)
    if node not in names:
        raise ValueError("node: %r is not a node of this model (nodes: %s)" % (node, ", ".join(names)))
    return names.index(node)


def explain_node(model, x, node, row=0, col=0):
    """model.explain: the Trace of output element [row, col] of a node, its inputs computed by
    the model; a node whose op has no trace raises the op's NotImplementedError naming it."""
    layer, values = node_inputs(model, x, node)
    return layer.explain(*values, row=row, col=col, node=_node_name(model, node))


def with_mode(layer, requant, rounding="double"):
    """The same layer (every other setting and array kept) requantized by another mode /
    rounding, for comparisons (the op's with_mode). A dynamic layer takes mode "fbgemm" /
    "qnnpack", each with its own default reduce_range."""
    if not callable(getattr(layer, "with_mode", None)):
        raise TypeError("layer: expected a fastq.QuantizedLinear or DynamicQuantizedLinear, got %s"
                        % type(layer).__name__)
    return layer.with_mode(requant, rounding)
