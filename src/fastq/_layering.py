"""The floors of the package and the few imports allowed to point up: the one list
tests/test_layering.py holds the source to (docs/architecture.md explains the floors).

Imports point down, or sideways within a floor without forming a cycle. A module's floor is its
longest entry below (a package entry covers the modules under it; the root package only itself).
Data only: nothing here is imported at run time.
"""
from __future__ import annotations

FLOORS = (
    # pure numpy formulas, argument checks, the compiled kernels and what calls them directly
    ("ground", ("fastq.reference", "fastq._checks", "fastq.qtensor", "fastq.fixedpoint", "fastq.qgemm",
                "fastq.runtime", "fastq.observers", "fastq.engines", "fastq.qconfig", "fastq.fusion",
                "fastq._layering", "fastq._kernels", "fastq._bench")),
    ("ops", ("fastq.layers",)),                     # one module per op family, on the op protocol
    ("graph", ("fastq.model",)),                    # Model / Node: the graph runner
    ("drivers", ("fastq.summary", "fastq.explain", "fastq.export", "fastq.model_file",
                 "fastq._layer_state", "fastq.calibrate", "fastq.importers",
                 # the 0.1 module paths, now aliases of fastq.importers
                 "fastq.torch_compat", "fastq.fx_convert", "fastq.fx_calibrate")),
    ("face", ("fastq",)),                           # the public API: re-exports only
    ("tools", ("fastq.tools", "fastq.__main__")),   # the application; the library never imports it
)

# The upward imports, each inside the one function that needs it (module, function, imported
# module): a method of a low object that hands over to a driver, so that `model.save(path)`
# works without the user importing the driver. Nothing else may import upward or inside a
# function.
FACADE = (
    ("fastq.model", "Model.summary", "fastq.summary"),
    ("fastq.model", "Model.save", "fastq.model_file"),
    ("fastq.model", "Model.load", "fastq.model_file"),
    ("fastq.model", "Model.export_c", "fastq.export"),
    ("fastq.model", "Model.explain", "fastq.explain"),
    ("fastq.model", "load", "fastq.model_file"),
    # a trace (data, on the ops floor) hands over to the drivers that compare and hand-compute it
    ("fastq.layers._trace", "Trace.compare", "fastq.explain.compare"),
    ("fastq.layers._trace", "Trace.hand", "fastq.explain.hand"),
    # from torch: these also keep torch lazy (the importer modules import torch at their top)
    ("fastq.model", "from_torch", "fastq.importers.torch_fx"),
    ("fastq.layers.linear.op", "QuantizedLinear.from_torch", "fastq.importers.torch_quantized"),
    ("fastq.layers.dynamic", "DynamicQuantizedLinear.from_torch", "fastq.importers.torch_quantized"),
    ("fastq.qtensor", "QTensor.from_torch", "fastq.importers.torch_quantized"),
)

# Optional dependencies, imported inside the functions that use them so that the package runs
# with numpy alone (torch itself only in the torch importer modules and tools/).
OPTIONAL = ("torch", "onnx", "onnxruntime", "matplotlib", "rich")

# The modules that load other fastq modules by name (importlib) rather than by import
# statement: the importer registry, whose loaded modules the test checks separately.
DYNAMIC_LOADERS = ("fastq.importers",)
