"""What every layer shares: the weight check and the padded per-column constants."""
from __future__ import annotations

import numpy as np

from ..qtensor import QTensor


def check_weight(weight, name="weight"):
    """An int8 QTensor [N, K], per tensor or per output channel (axis 0)."""
    if not isinstance(weight, QTensor):
        raise TypeError("%s: expected a fastq.QTensor of int8 values, got %s" % (name, type(weight).__name__))
    if weight.values.dtype != np.int8:
        raise TypeError("%s: expected int8 values, got %s" % (name, weight.values.dtype))
    if weight.values.ndim != 2:
        raise ValueError("%s: expected shape [N, K], got %s" % (name, weight.values.shape,))
    if weight.axis not in (None, 0):
        raise ValueError("%s: per-channel quantization must be along axis 0 (output channels)" % name)
    return weight


def padded(values, n_padded, dtype):
    out = np.zeros(max(n_padded, 1), dtype=dtype)
    v = np.asarray(values, dtype=dtype).reshape(-1)
    out[: v.shape[0]] = v
    return out
