"""Importers: one module per foreign format, each holding the table from that format's names
to fastq layer constructors (and, for calibration, its observation and fusion rules as data).

    torch_quantized.py   torch quantized tensors and Linear modules -> QTensor / layers
    torch_fx.py          a converted eager torch model, traced by torch.fx -> fastq.Model
    torch_calibrate.py   a float torch model + calibration batches -> fastq.Model

Which fastq arithmetic a torch engine means is fastq.engines, not here.

The registry below names each format's modules; they import their foreign library at their top,
so the registry loads a module only when a model of that format arrives (`import fastq` never
imports torch). A new format (pt2e, ONNX, TFLite) is one more module holding `convert(obj,
**options) -> Model` and/or `calibrate(obj, batches, qconfig, engine) -> Model`, and one line in
IMPORTERS.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Callable, Optional


def _is_torch_module(obj):
    torch = sys.modules.get("torch")         # a torch module exists only once torch is imported
    nn = getattr(torch, "nn", None)
    return nn is not None and isinstance(obj, nn.Module)


@dataclass(frozen=True)
class Importer:
    format: str                             # the name errors and users see
    recognizes: Callable[[object], bool]    # obj -> is it this format? (imports nothing)
    install: str                            # how to get the foreign library, for the ImportError
    convert: Optional[str] = None           # the module (in this package) holding convert()
    calibrate: Optional[str] = None         # the module holding calibrate()

    def load(self, capability):
        """The function `capability` ("convert" / "calibrate") of this format's module."""
        module = getattr(self, capability, None)
        if module is None:
            raise NotImplementedError("%s: fastq has no %s importer for %s models"
                                      % (capability, capability, self.format))
        try:
            loaded = importlib.import_module("%s.%s" % (__name__, module))
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] == __name__.split(".")[0]:
                raise                       # a fastq module is missing: a broken install, say so as is
            raise ImportError("%s models need %s: %s" % (self.format, e.name, self.install)) from e
        return getattr(loaded, capability)


IMPORTERS = {i.format: i for i in (
    Importer("torch", _is_torch_module, "pip install torch==2.13.0",
             convert="torch_fx", calibrate="torch_calibrate"),
)}


def find(obj):
    """The Importer whose format `obj` is, or None."""
    return next((i for i in IMPORTERS.values() if i.recognizes(obj)), None)


def get(format):
    """The Importer registered for `format`; ValueError naming the known formats otherwise."""
    if not isinstance(format, str):
        raise TypeError("format: expected a str, got %s" % type(format).__name__)
    if format not in IMPORTERS:
        raise ValueError("format: %r has no importer; known: %s" % (format, ", ".join(sorted(IMPORTERS))))
    return IMPORTERS[format]
