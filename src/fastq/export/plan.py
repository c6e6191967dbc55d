"""The model as a list of C steps: which value each node reads and writes, its C type and
size, and where it lives (the caller's input / output, or an offset in the one static arena).

A value is float32 or quantized (uint8 / int8, per-tensor scale and zero point, known at
export time because the model's quantization is static). Identity and Flatten alias their
input (a sample is a flat C-order buffer, so flattening moves nothing)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..layers._spec import Spec

ALIGN = 4          # every buffer starts on a float boundary (the arena is a float array)
INT32_MAX = 2**31 - 1
IDENT_MAX = 40     # characters of a node's C identifier (longer names: cut, plus a hash of the name)


@dataclass
class Value:
    name: str
    kind: str                         # "float" | "quant" | "int" (a size: no buffer in C)
    size: int                         # elements of one sample
    dtype: Optional[str] = None       # "uint8" | "int8" for kind "quant"
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    alias_of: Optional["Value"] = None
    shape: Optional[Tuple] = None     # the value's shape, batch first (None: [batch, size])
    known: object = None              # an "int" value's number(s) where known ("batch" for the batch size)
    layout: Optional[str] = None      # a spatial value's order in its buffer: "nchw" (None) or "nhwc"

    @classmethod
    def of(cls, name, spec, size=None):
        """The value a node makes, from the Spec its op infers; size: elements per sample where
        the spec leaves a dimension unknown (a view keeps its input's)."""
        if spec.kind == "int":
            return cls(name, "int", 0, shape=tuple(spec.shape))
        n = spec.per_sample
        if n is None:
            n = size
        if n is None:
            raise ValueError("value %r: its size per sample is unknown (shape %s)" % (name, spec.shape))
        if int(n) * (1 if spec.kind == "quant" else 4) > INT32_MAX:
            raise ValueError("value %r: %d values per sample; the C export's sizes and byte offsets are int32 "
                             "(at most 2**31 - 1 bytes per value)" % (name, int(n)))
        return cls(name, spec.kind, int(n), None if spec.kind == "float" else spec.dtype,
                   None if spec.scale is None else float(spec.scale),
                   None if spec.zero_point is None else int(spec.zero_point), shape=tuple(spec.shape))

    @property
    def spec(self):
        """The Spec of this value (what an op's infer / prepare read)."""
        shape = self.shape if self.shape is not None else ((None,) if self.kind == "int" else (None, self.size))
        return Spec(self.kind, shape, "float32" if self.kind == "float" else self.dtype, self.scale, self.zero_point)

    def root(self):
        v = self
        while v.alias_of is not None:
            v = v.alias_of
        return v

    @property
    def spatial(self):
        """H * W (or L) of a value [N, C, ...] with spatial dimensions, else 1."""
        dims = tuple(self.shape or ())[2:]
        if any(d is None for d in dims):
            return 1                    # a dimension known only at run time: never a conv's value
        n = 1
        for d in dims:
            n *= int(d)
        return n

    @property
    def ctype(self):
        return "float" if self.kind == "float" else ("uint8_t" if self.dtype == "uint8" else "int8_t")

    @property
    def nbytes(self):
        return self.size * (4 if self.kind == "float" else 1) if self.kind != "int" else 0


@dataclass
class Step:
    """One call in the run functions: func(inputs..., output[, scratch])."""
    node: str                         # the node's name (for error messages and comments)
    func: str                         # the C function's name
    inputs: Tuple[Value, ...]
    output: Value
    scratch: int = 0                  # bytes of arena scratch the step needs while it runs
    returns_status: bool = False      # the function returns an int status (dynamic layers)
    code: str = ""                    # the C text: constants and the function
    flash: int = 0                    # bytes of static const data in `code`
    quantized: bool = True            # integer only (no float operation)
    cost: str = "elementwise"         # the footprint kind (export/footprint.py), said by the op
    extra: dict = field(default_factory=dict)


def allocate(steps: List[Step], pinned):
    """First-fit offsets for every value a step writes (and every scratch), by lifetime.

    pinned: values that live outside the arena (the run's input and output). Returns
    ({id(root value) or ("scratch", i): offset}, arena_bytes)."""
    first, last, size = {}, {}, {}
    for i, st in enumerate(steps):
        for v in st.inputs:
            r = v.root()
            if id(r) in first:
                last[id(r)] = max(last[id(r)], i)
        r = st.output.root()
        if id(r) not in pinned:
            first.setdefault(id(r), i)
            last.setdefault(id(r), i)
            size[id(r)] = r.nbytes
        if st.scratch:
            key = ("scratch", i)
            first[key], last[key], size[key] = i, i, st.scratch
    order = sorted(first, key=lambda k: (-size[k], first[k]))
    placed = []                                    # (offset, end, first step, last step)
    offsets = {}
    for key in order:
        need = _round_up(size[key])
        live = [(o, e) for (o, e, f, l) in placed if not (last[key] < f or l < first[key])]
        for off in sorted({0} | {e for (_, e) in live}):     # the lowest gap that fits
            if all(off + need <= o or e <= off for (o, e) in live):
                break
        offsets[key] = off
        placed.append((off, off + need, first[key], last[key]))
    total = max((e for (_, e, _, _) in placed), default=0)
    return offsets, total


def _round_up(n):
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


def c_ident(name, used):
    """A C identifier from a node name ("fc1", "layers.0" -> "layers_0", "1" -> "layer1"): ASCII
    letters and digits, lower case, single underscores between runs (never "__", which the
    exporter keeps as the separator of node and constant names, and never at either end), at
    most IDENT_MAX characters (a longer one: its start and a hash of the full name). Unique in
    `used` after all that: a name that maps onto a taken one gets "_2", "_3", ... in node order."""
    s = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")
    if not s or s[0].isdigit():
        s = "layer" + ("_" + s if s else "")
    if len(s) > IDENT_MAX:
        digest = hashlib.sha1(str(name).encode("utf-8", "surrogatepass")).hexdigest()[:8]
        s = s[:IDENT_MAX - 9].rstrip("_") + "_" + digest
    base, i = s, 2
    while s in used:
        s = "%s_%d" % (base, i)
        i += 1
    used.add(s)
    return s


_UNSAFE = re.compile(r"[^ -~]")


def comment_text(text, limit=100):
    """text as it may stand inside a C comment: printable ASCII only (anything else becomes
    "_"), no "*/" or "/*" (a space between), no "??" (a trigraph under -std=c99: "??/" is a
    backslash), no backslash (one at a line end joins the next line), one line, at most limit
    characters. What the exporter writes of a node name or a layer's repr goes through here."""
    s = _UNSAFE.sub("_", str(text)).replace("\\", "|")
    s = re.sub(r"\*(?=/)", "* ", s)
    s = re.sub(r"/(?=\*)", "/ ", s)
    s = re.sub(r"\?(?=\?)", "?_", s)
    if len(s) > limit:
        s = s[:limit - 3].rstrip("?") + "..."
    return s


def float_literal(v):
    """A C float literal that reads back as exactly the float32 v ("%.9g" round-trips)."""
    v = np.float32(v)
    if not np.isfinite(v):
        raise ValueError("value: cannot write the non-finite float %r as a C constant" % (float(v),))
    s = "%.9g" % float(v)
    if np.float32(float(s)) != v:          # pragma: no cover - 9 digits always round-trip
        s = "%.12g" % float(v)
    if "." not in s and "e" not in s and "n" not in s:
        s += ".0"
    return s + "f"
