"""The fast call path of a layer: a callable bound to one input signature.

A layer's first call with inputs of a new signature (shapes, dtypes, strides, quantization)
checks them in full and computes through its ordinary path; `_bind(*inputs)` then returns a
callable for inputs of that same signature, with every constant the call needs already
prepared (the op data of the input quantization, the pooling plan, the output shape). The bound
callable checks the signature first (a few identity and equality tests) and returns MISS for
anything else, so a caller falls back to the full call: a value of another shape, dtype, layout
or quantization is never computed with constants prepared for a different one. Validation that
depends on the data itself (an accumulator bound) stays inside the kernels.

Model.__call__ keeps one bound callable per node (model.py); a layer called directly keeps the
last one (`fast_call`)."""
from __future__ import annotations

MISS = object()          # a bound callable's answer for inputs of another signature
ALIAS = object()         # _bind's answer for an op whose output is its input (Identity)


def memory_order(v):
    """The permutation p with v.transpose(p) C-contiguous (v's memory order: (0, 2, 3, 1) for a
    channels-last view), or None for a value with gaps or overlaps."""
    perm = tuple(sorted(range(v.ndim), key=lambda d: -v.strides[d]))
    return perm if v.transpose(perm).flags.c_contiguous else None


def fast_call(layer, full, *args):
    """layer(*args) through the layer's last bound callable when the signature matches, else
    full(*args) (the checked path), after which the layer binds to this signature."""
    f = layer.__dict__.get("_fast")
    if f is not None:
        y = f(*args)
        if y is not MISS:
            return y
    y = full(*args)
    bind = getattr(layer, "_bind", None)
    f = bind(*args) if bind is not None else None
    layer.__dict__["_fast"] = f if f is not None and f is not ALIAS else None
    return y

