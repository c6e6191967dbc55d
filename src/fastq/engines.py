"""The torch quantized engines fastq reproduces, and the fastq arithmetic each one means.

torch picks its quantized kernels by `torch.backends.quantized.engine`, and the same converted
model computes differently under each engine (docs/ARITHMETIC.md §6-§11). This table is the one
place that says which fastq setting follows which engine; the importers (fastq.importers) and
calibration (fastq.calibrate, fastq.qconfig) read it, nothing else names an engine.
onednn is not reproduced (its requantization differs again), so it is not in the table.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Engine:
    """One torch engine as fastq settings."""
    name: str
    requant: str                    # QuantizedLinear(requant=): §6 float epilogue / §7 int32 bias
    bias_rounding: str              # QuantizedLinear(bias_rounding=), read by requant "fbgemm" only:
    #                                 torch 2.13's FBGEMM on x86-64 adds the float bias in one fmaf
    dynamic_mode: str               # DynamicQuantizedLinear(mode=): the float epilogue (§9)
    honours_reduce_range: bool      # whether a dynamic Linear's reduce_range reaches the kernel
    #                                 (QNNPACK quantizes the input to the full [0, 255] regardless)
    add_arithmetic: str             # QuantizedAdd(arithmetic=): float add (fbgemm) or QNNPACK's q8 add
    # torch.ao.quantization.get_default_qconfig(name) of torch 2.13 (fastq.qconfig builds it):
    qconfig_reduce_range: bool      # HistogramObserver(reduce_range=) of the activations
    qconfig_per_channel: bool       # weights per channel (symmetric) or per tensor (symmetric)


_FBGEMM = dict(requant="fbgemm", bias_rounding="fused", dynamic_mode="fbgemm", honours_reduce_range=True,
               add_arithmetic="fbgemm", qconfig_reduce_range=True, qconfig_per_channel=True)

ENGINES = {e.name: e for e in (
    Engine("x86", **_FBGEMM),          # x86 runs FBGEMM for Linear, add and the dynamic Linear
    Engine("fbgemm", **_FBGEMM),
    Engine("qnnpack", requant="qnnpack", bias_rounding="fused", dynamic_mode="qnnpack",
           honours_reduce_range=False, add_arithmetic="qnnpack", qconfig_reduce_range=False,
           qconfig_per_channel=False),
)}

DEFAULT = "x86"         # torch's default engine on x86-64 Linux


def engine(name):
    """The Engine called `name`; TypeError / ValueError naming the argument otherwise."""
    if not isinstance(name, str):
        raise TypeError("engine: expected a torch quantized engine name, got %r" % type(name).__name__)
    if name not in ENGINES:
        raise ValueError("engine: %r is not reproduced by fastq; use one of %s"
                         % (name, ", ".join(sorted(ENGINES))))
    return ENGINES[name]


def current_name(default=DEFAULT):
    """torch.backends.quantized.engine when torch is imported already (fastq never imports it
    for this), else `default`."""
    torch = sys.modules.get("torch")
    backends = getattr(torch, "backends", None)
    quantized = getattr(backends, "quantized", None)
    return quantized.engine if quantized is not None else default


def for_requant(requant):
    """The first engine (table order) whose QuantizedLinear requant is `requant`, or None
    ("tflite" is no torch engine)."""
    return next((e.name for e in ENGINES.values() if e.requant == requant), None)
