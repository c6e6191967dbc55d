"""model.summary(): one row per node (op, shapes, output qparams, requantization constants,
the torch arithmetic it follows, weight bytes) and totals. Text only; no torch needed."""
from __future__ import annotations

import numpy as np


def _fmt_shape(s):
    return "?" if s is None else "x".join(str(d) for d in s) if s else "scalar"


def _weight_bytes(layer):
    arrays = layer.get_arrays() if hasattr(layer, "get_arrays") else {}
    return int(sum(np.asarray(a).nbytes for a in arrays.values()))


def _describe(layer, in_q=()):
    """(qparams text, constants text, arithmetic text) for one layer; in_q: the (scale, zero
    point) of its quantized inputs in the last run, when known."""
    from .layers.linear import QuantizedLinear
    from .layers.dynamic import DynamicQuantizedLinear
    from .layers import arith as ar
    from .layers.elementwise import Quantize
    name = type(layer).__name__
    if isinstance(layer, QuantizedLinear):
        w = layer.weight
        ws = "per-channel %d" % len(w.scale) if layer.per_channel else "w %.6g/%d" % (w.scale, w.zero_point)
        q = "%.6g/%d" % (layer.scale, layer.zero_point)
        if layer.requant == "tflite" and layer.input_scale is not None:
            m, s = layer.multipliers, layer.shifts
            const = "mult %d shift %d" % (m[0], s[0]) if m.size == 1 or np.all(m == m[0]) else \
                "mult [%d..%d] shift [%d..%d]" % (m.min(), m.max(), s.min(), s.max())
        elif in_q:
            m = np.float32(in_q[0][0]) * np.asarray(w.scale, np.float32) / np.float32(layer.scale)
            const = "%s; M = s_x*s_w/s_y = %s" % (ws, "%.6g" % m if np.ndim(m) == 0 else
                                                  "[%.6g..%.6g]" % (np.min(m), np.max(m)))
        else:
            const = "%s; M = s_x*s_w/s_y (float, per input scale)" % ws
        arith = {"fbgemm": "fbgemm float requant (x86/fbgemm)", "qnnpack": "qnnpack float requant",
                 "tflite": "TFLite fixed point (%s rounding)" % layer.rounding}[layer.requant]
        return q, const + (", relu" if layer.relu else ""), arith
    if isinstance(layer, DynamicQuantizedLinear):
        return "dynamic", "per-batch x qparams%s" % (", reduce_range" if layer.reduce_range else ""), \
            "%s dynamic linear" % layer.mode
    if isinstance(layer, Quantize):
        return "%.6g/%d" % (layer.scale, layer.zero_point), "%s" % layer.dtype, "quantize_per_tensor (fmaf)"
    if isinstance(layer, ar.QuantizedAdd):
        arith = ("qnnpack q8 add (fixed point)" if layer.arithmetic == "qnnpack" else
                 "fbgemm qadd (float, vector block %d, %d torch threads)" % (layer.vector_block, layer.torch_threads))
        const = "M_a = s_a/s_y, M_b = s_b/s_y (per input scales)"
        if len(in_q) == 2:
            if layer.arithmetic == "qnnpack":
                from . import reference
                try:
                    zpp, am, bm, shift = reference.qnnpack_add_params(in_q[0][0], in_q[0][1], in_q[1][0],
                                                                      in_q[1][1], layer.scale)
                    const = "mult %d, %d shift %d" % (am, bm, shift)
                except ValueError as e:
                    const = str(e)
            else:
                const = "M_a %.6g, M_b %.6g" % (in_q[0][0] / layer.scale, in_q[1][0] / layer.scale)
        return "%.6g/%d" % (layer.scale, layer.zero_point), const + (", relu" if layer.relu else ""), arith
    if isinstance(layer, ar.QuantizedMul):
        return "%.6g/%d" % (layer.scale, layer.zero_point), "M = s_a*s_b/s_y (float32)" + \
            (", relu" if layer.relu else ""), "qmul (all engines)"
    if isinstance(layer, ar.QuantizedCat):
        return "%.6g/%d" % (layer.scale, layer.zero_point), "dim %d" % layer.dim, "dequantize, cat, quantize"
    if isinstance(layer, (ar.QuantizedAddScalar, ar.QuantizedMulScalar)):
        return "from input", "value %r" % layer.value, "torch %s qparams" % (
            "add_scalar" if isinstance(layer, ar.QuantizedAddScalar) else "mul_scalar")
    if hasattr(layer, "summary_row") and hasattr(layer, "prepare"):
        # the op protocol (PROTOCOL.md): the layer describes itself for its input's qparams
        import types
        spec = types.SimpleNamespace(kind="quant", scale=in_q[0][0], zero_point=in_q[0][1]) if in_q else None
        row = layer.summary_row((spec,), layer.prepare(spec) if spec is not None else {})
        return row["qparams"], row["constants"], row["arithmetic"]
    settings = layer.get_settings() if hasattr(layer, "get_settings") else {}
    return "-", ", ".join("%s=%r" % kv for kv in settings.items()) or "-", "exact (moves / clamps)" \
        if name not in ("Add", "Mul", "AddScalar", "MulScalar", "Cat") else "float32 IEEE"


def model_summary(model):
    shapes = model.last_shapes or {}
    rows = [("node", "op", "inputs", "in shape", "out shape", "scale/zp", "constants", "arithmetic", "weight B")]
    total_bytes = 0
    counts = {}
    for n in model.nodes:
        qp = getattr(model, "last_qparams", {}) or {}
        q, const, arith = _describe(n.layer, [qp[v] for v in n.inputs if v in qp])
        wb = _weight_bytes(n.layer)
        total_bytes += wb
        op = type(n.layer).__name__
        counts[op] = counts.get(op, 0) + 1
        rows.append((n.name, op, ",".join(n.inputs),
                     " ".join(_fmt_shape(shapes.get(v)) for v in n.inputs),
                     " ".join(_fmt_shape(shapes.get(v)) for v in n.outputs), q, const, arith, str(wb)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    src = "shapes from the last run" if shapes else "shapes unknown (call model.summary(sample_input))"
    lines.append("-" * len(lines[0]))
    lines.append("%d nodes (%s); inputs %s -> outputs %s; weights %d bytes; %s"
                 % (len(model.nodes), ", ".join("%d %s" % (c, k) for k, c in counts.items()),
                    ", ".join(model.inputs), ", ".join(model.outputs), total_bytes, src))
    return "\n".join(lines)
