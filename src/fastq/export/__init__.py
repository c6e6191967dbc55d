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


def export_c(model, directory, name="net", input_size=None, input_shape=None, overwrite=True):
    """Writes <directory>/<name>.h and <name>.c; returns the Generated result (its .footprint
    holds the flash / RAM bytes).

    name: the C prefix of every declaration (a C identifier: ASCII letters, digits, single
    underscores, starting with a letter; C keywords and reserved names refused).
    input_size: floats per sample, needed only when the model has no Linear layer.
    input_shape: one sample's shape (no batch): (C, H, W) or (C, L) for a model with
    convolutions or pooling (required there), or any shape whose ops read it (a cat on the last
    axis, a transpose); net_run then takes the sample flattened in torch's order. Without it the
    input is [batch, input_size].
    overwrite: True (the default) replaces an existing <name>.h / <name>.c, each atomically (a
    temporary file in the folder, fsynced, renamed over it), and only once both new files are
    written: an export that fails leaves the previous pair as it was. False raises
    FileExistsError when either file exists, and writes nothing.

    Raises ExportError (a NotImplementedError) naming the node it cannot export, ValueError for
    bad arguments, sizes beyond int32 or layers whose int32 accumulator could overflow."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError("directory: expected a path, got %s" % type(directory).__name__)
    if os.fspath(directory) in ("", b""):
        raise ValueError("directory: expected a folder path, got an empty one (use '.' for this folder)")
    if not isinstance(overwrite, bool):
        raise TypeError("overwrite: expected True or False, got %r" % (overwrite,))
    gen = generate(model, name=name, input_size=input_size, input_shape=input_shape)
    gen.write(os.fspath(directory), overwrite=overwrite)
    return gen
