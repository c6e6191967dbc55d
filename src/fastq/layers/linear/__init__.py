"""The linear family: QuantizedLinear (op.py: settings, packing, the call, infer / prepare /
summary_row), its C (emit.py) and its explain traces (explain.py, imported by layer.explain).
DynamicQuantizedLinear (layers/dynamic.py) shares emit.py and explain.py."""
from .op import MODES, FixedPointParams, LinearData, QuantizedLinear, build_epilogue, check_mode

__all__ = ["MODES", "FixedPointParams", "LinearData", "QuantizedLinear", "build_epilogue", "check_mode"]
