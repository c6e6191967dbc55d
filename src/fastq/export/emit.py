"""The exporter's library for ops: what an op's emit_c receives as `ctx` and calls.

An op writes its own C (layers/<op>.py emit_c); this module gives it the shared machinery:
named constants (Consts), the Step it returns, the C types and ranges, float literals that
read back exactly, and the one error type. Nothing here knows an op."""
from __future__ import annotations

import numpy as np

from .plan import Step, Value, comment_text, float_literal

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
        self._names = set()

    def _ident(self, name):
        """prefix + "__" + name: the node's part (export/plan.c_ident) holds no "__", so no two
        nodes' constants can meet (fc's y_zero_point and fc_y's zero_point: NET_FC__Y_ZERO_POINT,
        NET_FC_Y__ZERO_POINT); and within one node each constant name is taken once."""
        if name in self._names or not name or "__" in name or name.startswith("_") or name.endswith("_"):
            raise ValueError("constant name %r: empty, taken twice or holding '__' in %s" % (name, self.prefix))
        self._names.add(name)
        return "%s__%s" % (self.prefix, name)

    def define(self, name, value, comment=None):
        macro = self._ident(name).upper()
        text = float_literal(value) if isinstance(value, (float, np.floating)) else str(int(value))
        self.lines.append("#define %-28s %s%s" % (macro, text, "" if comment is None else
                                                   "   /* %s */" % comment_text(comment, 200)))
        return macro

    def array(self, name, ctype, values, comment=None, per_line=16):
        ident = self._ident(name)
        v = np.asarray(values)
        fmt = float_literal if ctype == "float" else _int_literal
        if comment:
            self.lines.append("/* %s */" % comment_text(comment, 200))
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


def _int_literal(e):
    """An int32 C literal (INT32_MIN as an expression: -2147483648 is the negation of an int
    too wide for int on 16-bit ints and of a long elsewhere)."""
    v = int(e)
    if not -2**31 <= v <= INT32_MAX:
        raise ValueError("constant %d: outside int32" % v)
    return "(-2147483647 - 1)" if v == -2**31 else str(v)


class EmitContext:
    """Handed to op.emit_c for one node: its C prefix (e.g. "net_fc1"), fresh constants, and
    the helpers every op's C is written with."""

    QRANGE, CTYPE, INT32_MAX = QRANGE, CTYPE, INT32_MAX
    float_literal = staticmethod(float_literal)
    loop_nest = staticmethod(lambda dims, offsets, body: loop_nest(dims, offsets, body))
    strides_of = staticmethod(lambda shape: strides_of(shape))

    note = None                     # a remark of the driver for the op's C comment
    mixed_layouts = False           # the node's inputs came in two layouts (cgen, before transposes)

    def __init__(self, node, op, prefix_of):
        self.name, self.op = node, op       # the node's name as the model holds it (for messages)
        self.node = comment_text(node, 60)  # its safe form: the only one that enters C comments
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
        return self.prefix + "__run"

    def error(self, text):
        """The ExportError to raise: text should say what about this node is not exported."""
        return ExportError("node %r (%s): %s" % (self.name, self.op, text))

    def fn(self, args, body, ret="void"):
        """The node's C function: static <ret> <prefix>_run(<args>) { <body> }."""
        return "static %s %s(%s)\n{\n%s\n}" % (ret, self.func, args, body)

    def step(self, inputs, output, code, **kw):
        """The Step of this node: func(inputs..., output[, scratch]); code: its C text."""
        kw.setdefault("flash", self._consts.flash if self._consts is not None else 0)
        return Step(self.name, self.func, tuple(inputs), output, code=code, **kw)

    def same(self, xs, kind):
        """Refuses inputs of another kind, of different shapes (no broadcasting) or dtypes."""
        for v in xs:
            if v.kind != kind:
                raise self.error("receives %s values where %s ones are expected" % (v.kind, kind))
        if len({v.size for v in xs}) != 1 or len({sample_shape(v) for v in xs}) != 1:
            raise self.error("inputs of shapes %s per sample; this op's C takes equal shapes (no broadcasting)"
                             % " and ".join(str(sample_shape(v)) for v in xs))
        if kind == "quant" and len({v.dtype for v in xs}) != 1:
            raise self.error("inputs of different dtypes")

    def shape_of(self, v):
        """v's shape per sample (the batch dimension dropped), every dimension known; refused
        where the batch is not v's first dimension or a dimension is unknown here."""
        shape = v.shape if v.shape is not None else (None, v.size)
        if not shape or shape[0] is not None:
            raise self.error("a value of shape %s: the C export runs one sample per call and needs the batch "
                             "as the first dimension" % (tuple(shape),))
        if any(d is None for d in shape[1:]):
            raise self.error("a value of shape %s with a dimension unknown at export (a size given at run "
                             "time)" % (tuple(shape),))
        return tuple(int(d) for d in shape[1:])

    def view(self, output, x):
        """output is x's buffer, both C-order samples of the same values: no step. Refused where
        the op moves the batch dimension or changes the values per sample."""
        if x.kind == "int":
            raise self.error("of an integer value")
        shape = output.shape if output.shape is not None else (None, output.size)
        if not shape or shape[0] is not None or (x.shape is not None and x.shape and x.shape[0] is not None):
            raise self.error("output shape %s from %s: the batch dimension moves or merges, and the C export "
                             "runs one sample per call" % (tuple(shape), x.shape))
        if output.size != x.size:
            raise self.error("%d values per sample in, %d out" % (x.size, output.size))
        return self.alias(output, x)

    @staticmethod
    def alias(output, x):
        """output is x's buffer (a view): no step."""
        output.alias_of = x
        return None


def sample_shape(v):
    """v's shape without the batch (flat where unknown)."""
    return tuple(v.shape[1:]) if v.shape is not None else (v.size,)


def loop_nest(dims, offsets, body, indent="    "):
    """C loops over an output of shape dims (per sample, C order): body is a format string
    with {o} (the output index) and {0}, {1}, ... (each input's index, from its strides in
    offsets: one tuple of element strides per input, 0 where the input repeats along a
    dimension). Returns the lines; the loop variables are d1, d2, ... and o."""
    if not dims:
        dims = (1,)
        offsets = [(0,) for _ in offsets]
    decl = indent + "int32_t o = 0, %s;" % ", ".join("d%d" % (k + 1) for k in range(len(dims)))
    lines = [decl]
    for k, d in enumerate(dims):
        lines.append(indent * (k + 1) + "for (d%d = 0; d%d < %d; d%d++)%s" % (k + 1, k + 1, d, k + 1,
                                                                             " {" if k == len(dims) - 1 else ""))
    idx = []
    for strides in offsets:
        terms = ["d%d * %d" % (k + 1, s) if s != 1 else "d%d" % (k + 1) for k, s in enumerate(strides) if s != 0]
        idx.append(" + ".join(terms) if terms else "0")
    inner = indent * (len(dims) + 1)
    lines.append(inner + body.format(*idx, o="o"))
    lines.append(inner + "o++;")
    lines.append(indent * len(dims) + "}")
    return lines


def strides_of(shape):
    """C-order element strides of a shape."""
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return tuple(reversed(out))


__all__ = ["Consts", "EmitContext", "ExportError", "Step", "Value", "QRANGE", "CTYPE", "INT32_MAX", "comment_text",
           "loop_nest", "strides_of", "sample_shape"]
