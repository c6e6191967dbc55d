"""Two traces of the same element side by side, and the first stage at which they part."""
from __future__ import annotations

import numpy as np

from .trace import STAGES, Step, _jsonable, _out_text, _same_output


# --------------------------------------------------------------------------- compare
class Comparison:
    """Two traces of the same element side by side, aligned on STAGES.

    parts_at: the first stage whose method (the steps' `how`) differs, or None;
    values_part_at: the first stage whose values differ (None: they never do);
    a_how / b_how: the two methods at parts_at, in words."""

    def __init__(self, a, b, labels=None):
        self.a, self.b = a, b
        self.labels = tuple(labels) if labels else (_label(a), _label(b))
        self.rows = []
        self.parts_at = self.values_part_at = None
        self.a_how = self.b_how = None
        for stage in STAGES:
            sa, sb = a.stage(stage), b.stage(stage)
            if stage == "output":
                sa = [Step("output", "out", "", None, a.output, "f32" if a.kind == "dynamic" else "int", "")]
                sb = [Step("output", "out", "", None, b.output, "f32" if b.kind == "dynamic" else "int", "")]
            if not sa and not sb:
                continue
            how_a = "; ".join(dict.fromkeys(s.how for s in sa if s.how)) or "-"
            how_b = "; ".join(dict.fromkeys(s.how for s in sb if s.how)) or "-"
            # a stage's result is its last step's value (the constant or number it hands on)
            same_values = bool(sa) and bool(sb) and _same_output(sa[-1].value, sb[-1].value)
            if stage == "input" and a.kind == b.kind == "static":
                same_values = (a.x["scale"] == b.x["scale"] and a.x["zero_point"] == b.x["zero_point"]
                               and np.array_equal(a.x["values"], b.x["values"]))
            self.rows.append((stage, sa, sb, how_a, how_b, same_values))
            if self.parts_at is None and how_a != how_b:
                self.parts_at, self.a_how, self.b_how = stage, how_a, how_b
                if stage == "bias":         # how each bias then meets the accumulator
                    self.a_how += "".join("; " + s.how for s in a.stage("bias_add")
                                          if s.how and s.formula != "(float)acc")
                    self.b_how += "".join("; " + s.how for s in b.stage("bias_add")
                                          if s.how and s.formula != "(float)acc")
            if self.values_part_at is None and not same_values:
                self.values_part_at = stage

    @property
    def same_output(self):
        return _same_output(self.a.output, self.b.output)

    def to_dict(self):
        return {"labels": list(self.labels), "parts_at": self.parts_at, "a_how": self.a_how,
                "b_how": self.b_how, "values_part_at": self.values_part_at,
                "outputs": [_jsonable(self.a.output), _jsonable(self.b.output)],
                "same_output": bool(self.same_output)}

    def __str__(self):
        la, lb = self.labels
        w = 46
        lines = ["fastq explain --compare: %s vs %s, element [row=%d, col=%d]" % (la, lb, self.a.row, self.a.col),
                 "  acc = %d%s" % (self.a.acc, "" if self.a.acc == self.b.acc else " vs %d" % self.b.acc), ""]
        lines.append("  %-10s | %-*s | %-*s" % ("stage", w, la, w, lb))
        lines.append("  " + "-" * (10 + 2 * w + 6))
        for stage, sa, sb, how_a, how_b, same in self.rows:
            ta = ["%s = %s" % (s.name, s.value_text()) for s in sa] or ["-"]
            tb = ["%s = %s" % (s.name, s.value_text()) for s in sb] or ["-"]
            mark = "" if same and how_a == how_b else "   <- differs" if not same else "   <- other method"
            for i in range(max(len(ta), len(tb))):
                lines.append("  %-10s | %-*s | %-*s%s" % (stage if i == 0 else "", w, ta[i] if i < len(ta) else "",
                                                          w, tb[i] if i < len(tb) else "", mark if i == 0 else ""))
        lines.append("")
        if self.parts_at is None:
            lines.append("  The two traces do the same arithmetic at every stage.")
        else:
            lines.append("  They part at the %s stage:" % self.parts_at)
            lines.append("    %s: %s" % (la, self.a_how))
            lines.append("    %s: %s" % (lb, self.b_how))
        if self.values_part_at is None:
            lines.append("  Every value is the same: output %s in both." % _out_text(self.a.output))
        else:
            lines.append("  The values first differ at the %s stage; outputs %s vs %s%s."
                         % (self.values_part_at, _out_text(self.a.output), _out_text(self.b.output),
                            " (the same output)" if self.same_output else ""))
        return "\n".join(line.rstrip() for line in lines) + "\n"


def _label(t):
    if t.kind == "dynamic":
        return "dynamic %s" % t.mode
    return t.mode if t.mode != "tflite" else "tflite/%s" % t.rounding
