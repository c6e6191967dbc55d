"""model.summary(): one row per node (op, shapes, output qparams, requantization constants,
the torch arithmetic it follows, weight bytes) and totals. Text only; no torch needed."""
from __future__ import annotations

import numpy as np

from .layers._spec import Spec



def _safe(name):
    """A name as printable ASCII: other characters (terminal escapes, newlines, non-ASCII) as
    Python escapes, so a model file cannot drive the terminal or forge lines of the table."""
    return "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in str(name))

def _fmt_shape(s):
    return "?" if s is None else "x".join(str(d) for d in s) if s else "scalar"


def _weight_bytes(layer):
    arrays = layer.get_arrays() if hasattr(layer, "get_arrays") else {}
    return int(sum(np.asarray(a).nbytes for a in arrays.values()))


def _specs(model, node):
    """The Specs of a node's inputs from the last run (None where not known)."""
    shapes = model.last_shapes or {}
    qp = getattr(model, "last_qparams", {}) or {}
    dtypes = getattr(model, "last_dtypes", {}) or {}
    out = []
    for v in node.inputs:
        shape = shapes.get(v)
        if v in qp:
            scale, zp = qp[v]
            out.append(Spec("quant", shape if shape is not None else (None,), dtypes.get(v), scale, zp))
        elif shape is not None:
            out.append(Spec("float", shape))
        else:
            out.append(None)
    return out


def _row(layer, specs):
    """(qparams, constants, arithmetic) texts: the op's summary_row, with its prepared constants
    when every input's quantization is known."""
    data = None
    if specs and all(s is not None for s in specs):
        try:
            data = layer.prepare(*specs)
        except (TypeError, ValueError):          # a value of another kind than the op takes
            data = None
    row = layer.summary_row(specs, data)
    return row["qparams"], row["constants"], row["arithmetic"]


def model_summary(model):
    shapes = model.last_shapes or {}
    rows = [("node", "op", "inputs", "in shape", "out shape", "scale/zp", "constants", "arithmetic", "weight B")]
    total_bytes = 0
    counts = {}
    for n in model.nodes:
        q, const, arith = _row(n.layer, _specs(model, n))
        wb = _weight_bytes(n.layer)
        total_bytes += wb
        op = type(n.layer).__name__
        counts[op] = counts.get(op, 0) + 1
        rows.append((_safe(n.name), op, ",".join(_safe(v) for v in n.inputs),
                     " ".join(_fmt_shape(shapes.get(v)) for v in n.inputs),
                     " ".join(_fmt_shape(shapes.get(v)) for v in n.outputs), q, const, arith, str(wb)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    src = "shapes from the last run" if shapes else "shapes unknown (call model.summary(sample_input))"
    lines.append("-" * len(lines[0]))
    lines.append("%d nodes (%s); inputs %s -> outputs %s; weights %d bytes; %s"
                 % (len(model.nodes), ", ".join("%d %s" % (c, k) for k, c in counts.items()),
                    ", ".join(map(_safe, model.inputs)), ", ".join(map(_safe, model.outputs)), total_bytes, src))
    return "\n".join(lines)
