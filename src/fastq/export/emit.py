"""The exporter's library for ops: what an op's emit_c receives as `ctx` and calls.

An op writes its own C (layers/<op>.py emit_c); this module gives it the shared machinery:
named constants (Consts), the Step it returns, the C types and ranges, float literals that
read back exactly, and the one error type. Nothing here knows an op."""
from __future__ import annotations

import numpy as np

from .plan import Step, Value, float_literal

INT32_MAX = 2**31 - 1
QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
CTYPE = {"uint8": "uint8_t", "int8": "int8_t", "float32": "float", None: "float"}


class ExportError(NotImplementedError):
    """A node fastq cannot write as C (names the node)."""


class Consts:
    """The constants of one node: scalars as #defines, per-column ones as static const arrays."""

    def __init__(self, prefix):
        self.prefix = prefix            # e.g. "net_fc1"
        self.lines = []
        self.flash = 0

    def define(self, name, value, comment=None):
        macro = ("%s_%s" % (self.prefix, name)).upper()
        text = float_literal(value) if isinstance(value, (float, np.floating)) else str(int(value))
        self.lines.append("#define %-28s %s%s" % (macro, text, "" if comment is None else "   /* %s */" % comment))
        return macro

    def array(self, name, ctype, values, comment=None, per_line=16):
        ident = "%s_%s" % (self.prefix, name)
        v = np.asarray(values)
        fmt = float_literal if ctype == "float" else (lambda e: str(int(e)))
        if comment:
            self.lines.append("/* %s */" % comment)
        if v.ndim == 2:             # flat [N * K] (row n at n * K), each row on its own lines
            rows = []
            for n, r in enumerate(v):
                body = ",\n    ".join(", ".join(fmt(e) for e in r[i:i + per_line]) for i in range(0, len(r), per_line))
                rows.append("    /* %d */ %s" % (n, body) if len(r) <= per_line else "    /* row %d */\n    %s" % (n, body))
            self.lines.append("static const %s %s[%d * %d] = {\n%s\n};" % (ctype, ident, v.shape[0], v.shape[1],
                                                                           ",\n".join(rows)))
        else:
            flat = [fmt(e) for e in v.reshape(-1)]
            body = ",\n    ".join(", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line))
            self.lines.append("static const %s %s[%d] = {\n    %s\n};" % (ctype, ident, v.size, body))
        self.flash += v.size * {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2}.get(ctype, 4)
        return ident

    def column(self, name, ctype, values, comment=None):
        """A per-column constant: one #define when all columns share it, else an array.
        Returns the C expression for column n."""
        v = np.asarray(values).reshape(-1)
        if v.size and np.all(v == v[0]) and (ctype != "float" or np.all(np.signbit(v) == np.signbit(v[0]))):
            return self.define(name, v[0].item() if ctype != "float" else np.float32(v[0]), comment)
        return "%s[n]" % self.array(name, ctype, v, comment)

    def text(self):
        return "\n".join(self.lines)


class EmitContext:
    """Handed to op.emit_c for one node: its C prefix (e.g. "net_fc1"), fresh constants, and
    the helpers every op's C is written with."""

    QRANGE, CTYPE, INT32_MAX = QRANGE, CTYPE, INT32_MAX
    float_literal = staticmethod(float_literal)

    note = None                     # a remark of the driver for the op's C comment

    def __init__(self, node, op, prefix_of):
        self.node, self.op = node, op
        self._prefix_of, self._prefix, self._consts = prefix_of, None, None

    @property
    def prefix(self):
        """The node's C names start with this; taken on first use (a view writes no C)."""
        if self._prefix is None:
            self._prefix = self._prefix_of()
        return self._prefix

    @property
    def consts(self):
        if self._consts is None:
            self._consts = Consts(self.prefix)
        return self._consts

    @property
    def func(self):
        return self.prefix + "_run"

    def error(self, text):
        """The ExportError to raise: text should say what about this node is not exported."""
        return ExportError("node %r (%s): %s" % (self.node, self.op, text))

    def fn(self, args, body, ret="void"):
        """The node's C function: static <ret> <prefix>_run(<args>) { <body> }."""
        return "static %s %s(%s)\n{\n%s\n}" % (ret, self.func, args, body)

    def step(self, inputs, output, code, **kw):
        """The Step of this node: func(inputs..., output[, scratch]); code: its C text."""
        kw.setdefault("flash", self._consts.flash if self._consts is not None else 0)
        return Step(self.node, self.func, tuple(inputs), output, code=code, **kw)

    def same(self, xs, kind):
        """Refuses inputs of another kind, of different sizes (no broadcasting) or dtypes."""
        for v in xs:
            if v.kind != kind:
                raise ExportError("node %r receives %s values where %s ones are expected" % (self.node, v.kind, kind))
        if len({v.size for v in xs}) != 1:
            raise ExportError("node %r: inputs of %s values per sample; broadcasting is not exported"
                              % (self.node, "/".join(str(v.size) for v in xs)))
        if kind == "quant" and len({v.dtype for v in xs}) != 1:
            raise ExportError("node %r: inputs of different dtypes" % self.node)

    @staticmethod
    def alias(output, x):
        """output is x's buffer (a view): no step."""
        output.alias_of = x
        return None


__all__ = ["Consts", "EmitContext", "ExportError", "Step", "Value", "QRANGE", "CTYPE", "INT32_MAX"]
