"""Steps and traces: one operation with its exact value and its result; every number of one
output element; the aligned walk-through text.

The data an op's explain returns, so it sits on the ops floor beside the ops that build it;
fastq.explain (a driver) re-exports it and adds compare / hand, which Trace reaches as façades."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..runtime import get_backend

f32 = np.float32
SHOW_ALL_K = 16          # longer dot products show their first and last terms only

# The stages every trace goes through, in order; compare() aligns two traces on them.
STAGES = ("input", "acc", "bias", "bias_add", "multiplier", "scale", "round", "zero_point", "clamp",
          "relu", "output")


# --------------------------------------------------------------------------- steps
def _fr(v):
    """The exact rational value of an int or a float (float32 / float64)."""
    if isinstance(v, Fraction):
        return v
    if isinstance(v, (int, np.integer)):
        return Fraction(int(v))
    return Fraction(float(v))


def _g(v):
    """A float32 as the shortest decimal that reads back to it."""
    v = f32(v)
    return repr(float(v)) if np.isfinite(v) else str(float(v))


def _exact_text(fr):
    if fr.denominator == 1:
        return str(fr.numerator)
    return "%.17g" % float(fr)


class Step:
    """One operation of a trace.

    stage: one of STAGES; name: a short label ("atws", "y", ...); formula: what is computed;
    exact: its exact value (Fraction) before any rounding, or None; value: the result (a
    float32, a float64 or a Python int); kind: "f32" | "f64" | "int"; how: this mode's way of
    doing this stage, in words (equal words = the same method)."""

    __slots__ = ("stage", "name", "formula", "exact", "value", "kind", "how")

    def __init__(self, stage, name, formula, exact, value, kind, how=""):
        self.stage, self.name, self.formula = stage, name, formula
        self.exact = None if exact is None else _fr(exact)
        self.kind = kind
        if kind == "f32":
            value = f32(value)
        elif kind == "f64":
            value = float(value)
        else:
            value = int(value)
        self.value = value
        self.how = how

    @property
    def rounded(self):
        """True when the result differs from the exact value (this step rounded)."""
        if self.exact is None:
            return False
        if self.kind != "int" and not np.isfinite(self.value):
            return True                       # overflowed to infinity
        return _fr(self.value) != self.exact

    def value_text(self):
        if self.kind == "f32":
            return "f32 " + _g(self.value)
        if self.kind == "f64":
            return "f64 %.17g" % self.value
        return str(self.value)

    def to_dict(self):
        d = {"stage": self.stage, "name": self.name, "formula": self.formula, "kind": self.kind,
             "value": float(self.value) if self.kind != "int" else int(self.value), "how": self.how}
        if self.exact is not None:
            d["exact"] = str(self.exact)          # "p/q", exact
            d["exact_float"] = float(self.exact)
            d["rounded"] = self.rounded
        return d

    def line(self):
        if self.exact is None:
            return "  %-6s = %-34s = %s" % (self.name, self.formula, self.value_text())
        note = "rounded" if self.rounded else "exact"
        return "  %-6s = %-34s = %-24s -> %s   (%s)" % (self.name, self.formula, _exact_text(self.exact),
                                                       self.value_text(), note)

    def __repr__(self):
        return "Step(%s)" % self.line().strip()


def _f32_step(stage, name, formula, exact, how="", value=None):
    """A float32 operation: its exact result and the float32 it gives. value: what the
    reference's numpy expression gives, where that is not one correctly rounded float32
    operation (a double computation cast to float rounds twice); by default the exact value
    rounded once to float32, which is what one IEEE float32 operation gives."""
    ex = _fr(exact)
    if value is None:
        value = _nearest_f32(ex)
    return Step(stage, name, formula, ex, value, "f32", how)


def _nearest_f32(ex):
    """The float32 nearest to the rational ex, ties to even (one IEEE float32 operation)."""
    with np.errstate(over="ignore"):
        guess = f32(float(ex)) if abs(ex) < 2**200 else f32(np.inf if ex > 0 else -np.inf)
    if not np.isfinite(guess):
        return guess
    # float(Fraction) rounds to double first, then to float32: a double rounding that can miss
    # by one float32 ulp. Decide between the guess and its neighbours on the exact value.
    best = guess
    for cand in (np.nextafter(guess, f32(-np.inf)), np.nextafter(guess, f32(np.inf))):
        if not np.isfinite(cand):
            continue
        db, dc = abs(_fr(best) - ex), abs(_fr(cand) - ex)
        if dc < db or (dc == db and int(f32(cand).view(np.uint32)) % 2 == 0):
            best = cand
    return f32(best)


# --------------------------------------------------------------------------- the trace
class Trace:
    """Every number of one output element [row, col] of a quantized layer (see the module doc).

    Attributes: kind ("static" | "dynamic"), layer (its repr), mode, rounding, per_channel,
    row, col, x (dict: the activation row and its quantization), w (the weight row and its
    quantization), dx, dw, products, acc and its four terms, bias (the layer's bias[col]),
    steps (list of Step: the requantization or float epilogue), output (int, or float32 for
    dynamic layers), real (the output as a real number), checks (what fastq.reference and the
    compiled kernel give for this element)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    # ------------------------------------------------------------------ data
    def step(self, name):
        """The last step called `name` (KeyError if none)."""
        for s in reversed(self.steps):
            if s.name == name:
                return s
        raise KeyError(name)

    def stage(self, stage):
        """The steps of one stage (a list, maybe empty)."""
        return [s for s in self.steps if s.stage == stage]

    @property
    def pre_round(self):
        """The value just before the final rounding to an integer (static layers), as a Fraction."""
        return self._pre_round

    @property
    def equal(self):
        """True when fastq.reference and the kernel give this trace's output."""
        return all(_same_output(v, self.output) for v in self.checks.values())

    def to_dict(self):
        """The numbers as JSON-able Python values (exact rationals as "p/q" strings)."""
        d = {"kind": self.kind, "layer": self.layer, "mode": self.mode, "rounding": self.rounding,
             "per_channel": self.per_channel, "row": self.row, "col": self.col,
             "x": {k: _jsonable(v) for k, v in self.x.items()},
             "w": {k: _jsonable(v) for k, v in self.w.items()},
             "dx": [int(v) for v in self.dx], "dw": [int(v) for v in self.dw],
             "products": [int(v) for v in self.products], "acc": int(self.acc),
             "acc_terms": {k: int(v) for k, v in self.acc_terms.items()},
             "bias": _jsonable(self.bias), "bias_acc": _jsonable(self.bias_acc),
             "multiplier": _jsonable(self.multiplier), "shift": _jsonable(self.shift),
             "pre_round": None if self._pre_round is None else str(self._pre_round),
             "pre_round_float": None if self._pre_round is None else float(self._pre_round),
             "steps": [s.to_dict() for s in self.steps],
             "zero_point": self.zero_point, "qmin": self.qmin, "qmax": self.qmax,
             "clamp_min": self.clamp_min, "relu": self.relu,
             "output": _jsonable(self.output), "real": float(self.real),
             "checks": {k: _jsonable(v) for k, v in self.checks.items()}}
        return d

    # ------------------------------------------------------------------ text
    def __str__(self):
        return _trace_text(self)

    def __contains__(self, text):
        """`text in trace`: whether the walk-through (str(trace)) mentions it."""
        return text in str(self)

    def __repr__(self):
        return "<fastq.explain.Trace %s [%d, %d] acc=%d output=%s>" % (
            self.mode, self.row, self.col, self.acc, _out_text(self.output))

    def compare(self, other, labels=None):
        """Both traces side by side and the first stage where they part (a Comparison)."""
        if not isinstance(other, Trace):
            raise TypeError("other: expected a fastq.explain.Trace, got %s" % type(other).__name__)
        from ..explain.compare import Comparison   # the façade: a driver
        return Comparison(self, other, labels)

    def hand(self):
        """What the dequantize-multiply-and-stop float computation gives for this element, and
        the steps where it parts from the integer path (a HandComputation)."""
        from ..explain.hand import HandComputation   # the façade: a driver
        return HandComputation(self)


def _jsonable(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, Fraction):
        return str(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_jsonable(e) for e in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    return v


def _out_text(v):
    return _g(v) if isinstance(v, (float, np.floating)) else str(v)


def _same_output(a, b):
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return f32(a).view(np.uint32) == f32(b).view(np.uint32)      # the bits: -0.0 != 0.0
    return int(a) == int(b)


# --------------------------------------------------------------------------- the text
def _trace_text(t):
    lines = ["fastq explain: %s, output element [row=%d, col=%d]" % (t.layer, t.row, t.col), ""]
    if getattr(t, "index", None) is not None:       # a convolution: the element and its receptive field
        lines.append("  the convolution's output y[%s]; the activations below are its receptive field, taps in "
                     "(c, kh, kw) order, %d padding tap(s) reading z_x" % (", ".join(map(str, t.index)),
                                                                          sum(tap is None for tap in t.taps)))
        lines.append("")
    lines.append("1. Inputs  (real value = (q - zero_point) * scale)")
    if t.kind == "dynamic":
        lines.append("  activations x[%d, :] float32; the whole input spans [%s, %s]"
                     % (t.row, _g(t.x["min"]), _g(t.x["max"])))
        lines.append("  quantized on the fly (ChooseQuantizationParams, %s): s_x = %.9g, z_x = %d"
                     % ("[0, 127] reduce_range" if t.x["reduce_range"] else "[0, 255]", t.x["scale"],
                        t.x["zero_point"]))
        lines.append("    q = clamp(rne(fmaf(x, 1/s_x, z_x)), 0, 255)")
    else:
        lines.append("  activations x_q[%d, :]: %s, s_x = %.9g, z_x = %d"
                     % (t.row, t.x["dtype"], t.x["scale"], t.x["zero_point"]))
    lines.append("  weights     w_q[%d, :]: int8,  s_w[n] = %.9g, z_w[n] = %d (%s)"
                 % (t.col, t.w["scale"], t.w["zero_point"], "per channel" if t.per_channel else "per tensor"))
    if t.kind == "static":
        lines.append("  output      %s, s_y = %.9g, z_y = %d%s" % (t.dtype, t.scale, t.zero_point,
                                                                 ", fused ReLU" if t.relu else ""))
    else:
        lines.append("  output      float32%s" % (", fused ReLU" if t.relu else ""))
    if t.bias is None:
        lines.append("  bias[n] = none")
    elif isinstance(t.bias, int):
        lines.append("  bias[n] = %d (int32)" % t.bias)
    else:
        lines.append("  bias[n] = %s (float32)" % _g(t.bias))
    lines.append("")
    zx, zw = t.x["zero_point"], t.w["zero_point"]
    lines.append("2. Integer core: acc = sum_k (x_q[m,k] - z_x) * (w_q[n,k] - z_w[n])   (exact int32)")
    lines.append("     k  %s  x_q  x-z_x   w_q  w-z_w    product" % ("     x float " if t.kind == "dynamic" else ""))
    k = len(t.products)
    shown = range(k) if k <= SHOW_ALL_K else list(range(6)) + [None] + list(range(k - 2, k))
    xv, wv = t.x["values"], t.w["values"]
    for i in shown:
        if i is None:
            lines.append("   ...   (%d more terms)" % (k - 8))
            continue
        xf = "%12.6g " % t.x["float"][i] if t.kind == "dynamic" else ""
        lines.append("  %4d  %s%4d  %5d  %4d  %5d  %9d" % (i, xf, xv[i], t.dx[i], wv[i], t.dw[i], t.products[i]))
    lines.append("  sum of the %d products: acc = %d" % (k, t.acc))
    a = t.acc_terms
    lines.append("  The kernels compute the same acc from raw products and precomputed sums:")
    lines.append("      sum_k x*w               = %d" % a["sum_xw"])
    lines.append("    - z_x * colsum[n]         = -%d * %d = %d      (colsum: once, at packing)"
                 % (zx, a["colsum"], -a["zx_colsum"]))
    lines.append("    - rowsum[m] * z_w[n]      = -%d * %d = %d      (rowsum: per call, only if z_w != 0)"
                 % (a["rowsum"], zw, -a["rowsum_zw"]))
    lines.append("    + K * z_x * z_w[n]        = %d * %d * %d = %d" % (k, zx, zw, a["k_zx_zw"]))
    four = a["sum_xw"] - a["zx_colsum"] - a["rowsum_zw"] + a["k_zx_zw"]
    lines.append("    = %d   (%s)" % (four, "equal" if four == t.acc else "DIFFERENT"))
    if getattr(t, "saturated_pairs", None) is not None:
        lines.append("  FBGEMM's depthwise kernel sums the raw products in int16 pairs (vpmaddubsw), %d pair(s)"
                     " saturated: acc = %d" % (t.saturated_pairs, t.step("acc").value))
    if t.kind == "static" and t.x["dtype"] == "int8":
        lines.append("  (int8 x runs in the kernels as uint8 x + 128 with z_x + 128: the same acc)")
    lines.append("")
    lines.append(t._header + ":")
    for s in t.steps:
        if s.stage in ("acc", "input"):
            continue
        lines.append(s.line())
    lines.append("")
    ok = "all equal" if t.equal else "MISMATCH"
    lines.append("4. Check: by hand %s = %s; fastq.reference %s = %s; C kernel (backend %s) %s = %s -> %s"
                 % (_q(t), _out_text(t.output), _q(t), _out_text(t.checks["reference"]), get_backend(), _q(t),
                    _out_text(t.checks["kernel"]), ok))
    if t.kind == "static":
        lines.append("  y[%d, %d] = (q - z_y) * s_y = (%d - %d) * %.9g = %s"
                     % (t.row, t.col, t.output, t.zero_point, t.scale, _g(t.real)))
    return "\n".join(lines) + "\n"


def _q(t):
    return "q" if t.kind == "static" else "y"
