"""Kept for code written against fastq 0.1: the torch importer lives in fastq.importers
(torch_quantized.py: tensors and Linear modules, torch_fx.py: whole converted models,
torch_calibrate.py: float models), the engine rules in fastq.engines. Importing this module
imports torch."""
from __future__ import annotations

from .calibrate import ENGINE_REQUANT  # noqa: F401
from .importers.torch_calibrate import calibrate as _calibrate
from .importers.torch_fx import convert as model_from_torch, leaf_layer as _convert_leaf, trace  # noqa: F401
from .importers.torch_fx import _torch_module as _torch_mod, _type_name, _unsupported  # noqa: F401,E402


def _torch():
    return _torch_mod()
from .importers.torch_quantized import (dynamic_linear_from_torch, linear_from_torch,  # noqa: F401
                                        qtensor_from_torch, qtensor_to_torch, requant_for_engine)


def quantize_torch_model(model, calibration_batches, qconfig, engine, requant=None):
    """fastq.quantize_model for a float torch model; `requant` follows from `engine`
    (fastq.engines) and is ignored."""
    return _calibrate(model, calibration_batches, qconfig, engine)
