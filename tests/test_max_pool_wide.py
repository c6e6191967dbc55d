"""The NHWC max pool kernel's channel groups (4, 2 and 1 vectors of 32 channels, then the tail)
on every backend, for channel counts reaching each group and mix, both layouts, uint8 and int8,
padding, dilation and ceil_mode: against fastq.reference.max_pool (numpy)."""
from __future__ import annotations

import numpy as np
import pytest

from fastq import _kernels as K
from fastq import reference

CHANNELS = [31, 32, 63, 64, 96, 127, 128, 129, 160, 192, 200, 224, 255, 256, 300]
GEOMETRY = [((3, 3), (2, 2), (1, 1), (1, 1), False), ((2, 3), (1, 2), (1, 1), (2, 1), True),
            ((3, 3), (1, 1), (0, 0), (1, 1), False)]


def _cl(v):
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_max_pool_channel_groups_equal_the_reference(backend, dtype):
    rng = np.random.default_rng(6)
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    for c in CHANNELS:
        x = rng.integers(lo, hi, (2, c, 7, 6)).astype(dtype)
        for k, s, p, d, ceil in GEOMETRY:
            want = reference.max_pool(x, k, s, p, d, ceil)
            for v in (x, _cl(x)):
                y = K.max_pool2d(v, k, s, p, d, ceil)
                assert y.dtype == np.dtype(dtype) and np.array_equal(y, want), (c, k, s, p, d, ceil, v.strides)
                if v is not x:
                    assert y.transpose(0, 2, 3, 1).flags.c_contiguous     # channels-last kept


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_max_pool_plan_equals_the_reference_and_refuses_another_signature(dtype):
    rng = np.random.default_rng(7)
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    for c in (3, 64, 130):
        x = rng.integers(lo, hi, (2, c, 9, 8)).astype(dtype)
        for k, s, p, d, ceil in GEOMETRY:
            want = reference.max_pool(x, k, s, p, d, ceil)
            for v in (x, _cl(x)):
                plan = K.MaxPoolPlan(v, k, s, p, d, ceil)
                for _ in range(2):
                    y = plan(v)
                    assert y.dtype == np.dtype(dtype) and np.array_equal(y, want), (c, k, v.strides)
                    assert y.strides == K.max_pool2d(v, k, s, p, d, ceil).strides
                other = _cl(x) if v is x else x
                with pytest.raises(ValueError, match="x: this plan takes"):
                    plan(other)
                with pytest.raises(ValueError, match="x: this plan takes"):
                    plan(v[:1])
    with pytest.raises(ValueError, match="too small"):
        K.MaxPoolPlan(np.zeros((1, 2, 2, 2), np.uint8), 5)
