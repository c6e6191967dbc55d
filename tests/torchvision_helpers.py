"""torchvision's quantizable models, an optional test dependency.

torchvision 0.28.0 is the only release for torch 2.13.0 and its wheel is a CUDA build: its
compiled ops (torchvision._C) do not load next to the CPU torch. The model code needed here is
plain Python, but `import torchvision` runs torchvision._meta_registrations, which registers
fake kernels for detection ops (nms, roi_align, ...) that only _C defines, and fails. Those
registrations matter only to torch.compile tracing of the detection ops, never to the
classification models; so this helper puts an empty module in their place before the first
import. Tests that need torchvision call `quantizable_models()`, which skips when torchvision
(or pillow, which its import needs) is absent.
"""
import sys
import types

import pytest


def quantizable_models():
    """torchvision.models.quantization, importable without torchvision's compiled ops."""
    pytest.importorskip("torch")
    pytest.importorskip("PIL", reason="torchvision's import needs pillow")
    if "torchvision" not in sys.modules:
        name = "torchvision._meta_registrations"
        sys.modules.setdefault(name, types.ModuleType(name))
    try:
        import torchvision.models.quantization as q
    except ImportError as e:
        pytest.skip("torchvision is not installed (%s)" % e)
    return q
