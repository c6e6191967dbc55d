"""Kept for code written against fastq 0.1: now fastq.importers.torch_fx (imports torch)."""
from __future__ import annotations

from .importers.torch_fx import (FUNCTIONS, INT, METHODS, MODULES, QUANTIZED_OPS, TENSOR, TUPLE,  # noqa: F401
                                 GraphBuilder, _bind, _path)
