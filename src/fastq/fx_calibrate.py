"""Kept for code written against fastq 0.1: now fastq.importers.torch_calibrate (imports torch)."""
from __future__ import annotations

from .importers.torch_calibrate import FLOAT_FUNCTIONAL, FUSIONS, WEIGHTED, calibrate, float_runner  # noqa: F401


def quantize_torch(model, calibration_batches, qconfig, engine, requant=None):
    """fastq.Model for a float torch model; `requant` follows from `engine` and is ignored."""
    return calibrate(model, calibration_batches, qconfig, engine)
