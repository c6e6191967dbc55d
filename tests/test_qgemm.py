"""fastq.qgemm (the integer core) against the numpy reference and an int64 matmul."""
import numpy as np
import pytest

import fastq
from fastq import reference


def random_case(rng, m, k, n, per_channel):
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    za = int(rng.integers(0, 256))
    zw = rng.integers(-128, 128, n) if per_channel else int(rng.integers(-128, 128))
    return a, za, w, zw


def test_small_shapes_every_backend(backend, rng):
    for m in range(0, 8):
        for k in (1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 67):
            for n in (1, 2, 15, 63, 64, 65, 129):
                a, za, w, zw = random_case(rng, m, k, n, per_channel=(m + k + n) % 2 == 0)
                acc = fastq.qgemm(a, za, w, zw)
                assert acc.dtype == np.int32 and acc.shape == (m, n)
                np.testing.assert_array_equal(acc, reference.qgemm(a, za, w, zw))


def test_four_term_expansion_equals_direct_sum(rng):
    a, za, w, zw = random_case(rng, 9, 70, 33, per_channel=True)
    np.testing.assert_array_equal(reference.qgemm_by_sums(a, za, w, zw), reference.qgemm(a, za, w, zw))


def test_extreme_values_at_the_int32_bound(backend):
    # |acc| = K * 255 * 255 with a = 255, za = 0, w = -128, zw = 127: the largest K that fits
    k = (2**31 - 1) // (255 * 255)
    a = np.full((3, k), 255, np.uint8)
    w = np.full((5, k), -128, np.int8)
    acc = fastq.qgemm(a, 0, w, 127)
    assert acc[0, 0] == -k * 255 * 255
    np.testing.assert_array_equal(acc, reference.qgemm(a, 0, w, 127))


def test_overflowing_k_is_refused_not_wrapped():
    k = (2**31 - 1) // (255 * 255) + 1
    a = np.full((1, k), 255, np.uint8)
    w = np.full((2, k), -128, np.int8)
    with pytest.raises(ValueError, match="overflow"):
        fastq.qgemm(a, 0, w, 127)
    # the same K with data whose products stay small is computed exactly
    a_small = np.full((1, k), 1, np.uint8)
    np.testing.assert_array_equal(fastq.qgemm(a_small, 0, w, 0), reference.qgemm(a_small, 0, w, 0))


def test_layouts_and_torch_tensors(rng):
    a, za, w, zw = random_case(rng, 12, 40, 20, per_channel=True)
    expected = reference.qgemm(a, za, w, zw)
    np.testing.assert_array_equal(fastq.qgemm(np.asfortranarray(a), za, np.asfortranarray(w), zw), expected)
    big = rng.integers(0, 256, (24, 80), dtype=np.uint8)
    big[::2, ::2] = a
    np.testing.assert_array_equal(fastq.qgemm(big[::2, ::2], za, w, zw), expected)
    ro = a.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(fastq.qgemm(ro, za, w, zw), expected)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(fastq.qgemm(torch.from_numpy(a), za, torch.from_numpy(w), torch.from_numpy(zw)),
                                  expected)


def test_empty_dimensions():
    assert fastq.qgemm(np.zeros((0, 5), np.uint8), 3, np.zeros((4, 5), np.int8), 0).shape == (0, 4)
    assert fastq.qgemm(np.zeros((2, 5), np.uint8), 3, np.zeros((0, 5), np.int8), 0).shape == (2, 0)
    np.testing.assert_array_equal(fastq.qgemm(np.zeros((2, 0), np.uint8), 3, np.zeros((4, 0), np.int8), 0),
                                  np.zeros((2, 4), np.int32))


def test_matches_torch_int_mm_on_signed_data(rng):
    """torch._int_mm (int8 x int8 -> int32) is an independent oracle: with za = 128 the uint8
    activations a are the int8 values a - 128, and zw = 0."""
    torch = pytest.importorskip("torch")
    m, k, n = 32, 64, 40            # _int_mm wants m > 16 and k, n multiples of 8
    a_s8 = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    expected = torch._int_mm(torch.from_numpy(a_s8), torch.from_numpy(w).t().contiguous()).numpy()
    a_u8 = (a_s8.astype(np.int16) + 128).astype(np.uint8)
    np.testing.assert_array_equal(fastq.qgemm(a_u8, 128, w, 0), expected)
