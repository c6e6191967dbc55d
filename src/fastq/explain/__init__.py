"""Explain: one output element of a quantized layer, every integer and every rounding, as data.

    trace = layer.explain(x, row, col)          # = fastq.explain(layer, x, row, col)
    trace.to_dict()["acc"], trace.to_dict()["output"]
    print(trace)                                # the aligned pen-and-paper walk-through
    print(trace.compare(other_trace))           # where two modes / roundings part
    print(trace.hand())                         # what a float computation by hand gives, and why
    trace = model.explain(x, node, row, col)    # the same for a node of a model
    print(price_tags([1.99, 2.00, 0.59], bits=2))   # quantization with no network at all

A trace is built from the layer's settings and the formulas of fastq.reference (the oracle of
the kernels' tests), never from the kernels; its `checks` hold what fastq.reference and the
compiled kernel give for the same element, so a trace that disagreed with either would say so.
Each step of the requantization is a `Step`: what is computed (formula), its exact value (a
fractions.Fraction: products and quotients of floats are rationals), the value it rounds to,
and in words how this mode does it (what `compare` prints where two traces part).
docs/ARITHMETIC.md states every formula in words.

The package: trace.py (Step, Trace, the text), linear.py (the traces of each layer kind and
mode), compare.py, hand.py, tags.py (price tags and the observer).
"""
from .trace import STAGES, Step, Trace
from .linear import explain, explain_node, node_input, node_inputs, with_mode
from .compare import Comparison
from .hand import HandComputation
from .tags import OBSERVERS, PriceTags, observe, price_tags

__all__ = ["STAGES", "Step", "Trace", "explain", "explain_node", "node_input", "node_inputs", "with_mode", "Comparison",
           "HandComputation", "OBSERVERS", "PriceTags", "observe", "price_tags"]
