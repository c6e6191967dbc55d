"""fastq.export: a fastq model as standalone C (net.h / net.c) for firmware.

    fastq.export.export_c(model, "out/", name="net")   # or model.export_c("out/")

The C is bit-exact with fastq's model(x) (and so with torch) on every target: C99, no heap,
no libm, weights as static const arrays, one static arena. See README.md ("On a microcontroller") and docs/ARITHMETIC.md §15."""
from __future__ import annotations

import os

from .cgen import ERRORS, Generated, generate
from .footprint import Footprint
from .emit import ExportError

__all__ = ["export_c", "generate", "ExportError", "Footprint", "Generated", "ERRORS"]


def export_c(model, directory, name="net", input_size=None, input_shape=None):
    """Writes <directory>/<name>.h and <name>.c; returns the Generated result (its .footprint
    holds the flash / RAM bytes). input_size: floats per sample, needed only when the model has
    no Linear layer. input_shape: one sample's shape without the batch, (C, H, W) or (C, L), needed
    for convolutional models; net_run then takes the sample flattened in torch's order. Raises ExportError (a NotImplementedError) naming the node it cannot
    export, ValueError for bad arguments or layers whose int32 accumulator could overflow."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError("directory: expected a path, got %s" % type(directory).__name__)
    if os.fspath(directory) in ("", b""):
        raise ValueError("directory: expected a folder path, got an empty one (use '.' for this folder)")
    gen = generate(model, name=name, input_size=input_size, input_shape=input_shape)
    gen.write(os.fspath(directory))
    return gen
