"""Spec: what a value is, without its numbers (the exporter plans buffers from these, the
summary shows them, prepare derives an op's constants from them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

KINDS = ("float", "quant", "int")
DTYPES = ("float32", "uint8", "int8")


@dataclass(frozen=True)
class Spec:
    """kind: "float" | "quant" | "int" (a size, no buffer); shape: batch dimension first, None
    where unknown; dtype: "float32" | "uint8" | "int8" | None; scale / zero_point: the per-tensor
    quantization of a "quant" value."""
    kind: str
    shape: Tuple[Optional[int], ...]
    dtype: Optional[str] = None
    scale: Optional[float] = None
    zero_point: Optional[int] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError("kind: expected one of %s, got %r" % (", ".join(KINDS), self.kind))
        if not isinstance(self.shape, tuple):
            object.__setattr__(self, "shape", tuple(self.shape))
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError("dtype: expected one of %s or None, got %r" % (", ".join(DTYPES), self.dtype))
        if self.kind == "float" and self.dtype is None:
            object.__setattr__(self, "dtype", "float32")

    @property
    def per_sample(self):
        """Elements of one sample (the dimensions after the batch); None when one is unknown."""
        rest = self.shape[1:]
        if any(d is None for d in rest):
            return None
        n = 1
        for d in rest:
            n *= d
        return n

    @property
    def qparams(self):
        """(scale, zero_point, dtype): the key an op's constants depend on."""
        return self.scale, self.zero_point, self.dtype

    def like(self, **changes):
        """This spec with some fields replaced."""
        fields = dict(kind=self.kind, shape=self.shape, dtype=self.dtype, scale=self.scale,
                      zero_point=self.zero_point)
        fields.update(changes)
        return Spec(**fields)


def quant(shape, dtype, scale, zero_point):
    return Spec("quant", tuple(shape), dtype, float(scale), int(zero_point))


def floats(shape):
    return Spec("float", tuple(shape), "float32")
