"""The classic float computation by hand (dequantize, multiply, stop) and where it parts from the
integer path."""
from __future__ import annotations

import numpy as np

from .trace import _g


# --------------------------------------------------------------------------- the hand computation
class HandComputation:
    """The classic float computation by hand for one element, and where it parts from the
    integer path.

    hand = s_x * s_w * acc + bias, in float64, stopped there (no output quantization): the
    method of the classic 2x2 walk-through. For static layers `partings` lists, in order, the
    steps that move the integer path's result away from it, each (what, value after it, its
    contribution, words): bias handling, float32 arithmetic / fixed-point multiplier, the
    rounding to the output grid s_y, the clamp. Their contributions add up to real - hand."""

    def __init__(self, t):
        self.trace = t
        sx, sw = t.x["scale"], t.w["scale"]
        bias = 0.0 if t.bias is None else (float(t.bias) * sx * sw if isinstance(t.bias, int) else float(t.bias))
        self.bias = bias
        self.hand = float(t.acc) * sx * sw + bias            # float64, the seed's method
        self.partings = []
        if t.kind == "dynamic":
            self._dynamic(t, sx, sw, bias)
        else:
            self._static(t, sx, sw, bias)
        self.real = float(t.real)
        self.difference = self.real - self.hand

    def _add(self, what, value, words):
        prev = self.partings[-1][1] if self.partings else self.hand
        self.partings.append((what, float(value), float(value) - prev, words))

    def _static(self, t, sx, sw, bias):
        sy, zy = t.scale, t.zero_point
        if t.bias is not None and t.mode in ("qnnpack", "tflite") and not isinstance(t.bias, int):
            bq = t.bias_acc
            self._add("bias", float(t.acc) * sx * sw + bq * sx * sw,
                      "bias rounded to int32 first: %d steps of s_x * s_w"
                      % bq)
        where = {"fbgemm": "float32 scales and multiplier" + (", float32 bias term" if t.bias is not None else ""),
                 "qnnpack": "float32 scales and multiplier",
                 "tflite": "the Q31 multiplier"}[t.mode]
        steps_y = float(t.pre_round) if t.pre_round is not None else float(t.step("y").value)   # inf, NaN
        self._add("multiplier", steps_y * sy, "%s, not float64 s_x*s_w/s_y: y = %.9g output steps"
                  % (where, steps_y))
        r = t.step("r+z_y").value - zy
        self._add("requantize", r * sy, "rounded to the output grid (multiples of s_y = %.9g): %.9g -> %d (%s)"
                  % (sy, steps_y, r, _round_words(t)))
        q = t.output
        if q != r + zy:
            self._add("clamp", (q - zy) * sy, "clamped to [%d, %d]%s: q = %d, not %d"
                      % (t.clamp_min, t.qmax, " (fused ReLU)" if t.relu and q == t.clamp_min else "", q, r + zy))
        self._add("dequantize", float(t.real), "(q - z_y) * s_y in float32, as torch's dequantize")

    def _dynamic(self, t, sx, sw, bias):
        s = t.multiplier
        self._add("multiplier", float(t.acc) * float(s) + bias,
                  "s_x * s_w rounded to float32 (%s)" % _g(s))
        self._add("float32", float(t.output),
                  "float32 epilogue: %s" %
                  ("fmaf(f, s, bias): one rounding" if t.mode == "fbgemm" and t.bias is not None
                   else "f32(f32(f * s) + bias): two roundings" if t.bias is not None else "f32(f * s)"))
        xf = t.x["float"].astype(np.float64)
        wf = (t.w["values"].astype(np.float64) - t.w["zero_point"]) * sw
        self.unquantized = float(xf @ wf + bias)

    def to_dict(self):
        return {"hand": self.hand, "real": self.real, "difference": self.difference,
                "partings": [{"what": w, "value": v, "contribution": c, "words": s}
                             for w, v, c, s in self.partings]}

    def __str__(self):
        t = self.trace
        sx, sw = t.x["scale"], t.w["scale"]
        lines = ["The hand computation (dequantize, multiply, stop) for element [%d, %d]:" % (t.row, t.col)]
        btxt = "" if t.bias is None else " + bias"
        lines.append("  hand = s_x * s_w * acc%s = %.9g * %.9g * %d%s = %.6f (%.4f)   (float64)"
                     % (btxt, sx, sw, t.acc, "" if t.bias is None else " + %.9g" % self.bias, self.hand, self.hand))
        lines.append("  %s = %.6f (%.4f)   (%s)" % ("integer path" if t.kind == "static" else "float32 path",
                                             self.real, self.real, "the integer path, dequantized" if t.kind == "static"
                                             else "the float32 output"))
        lines.append("  difference %+.6f; where the two part:" % self.difference)
        for what, value, contrib, words in self.partings:
            lines.append("    %-10s %+.6f -> %.6f  %s" % (what, contrib, value, words))
        if t.kind == "dynamic":
            lines.append("  (with the float input and weights, unquantized: %.6f)" % self.unquantized)
        return "\n".join(lines) + "\n"


def _round_words(t):
    s = t.stage("round")
    return s[-1].how if s else "rounded"
