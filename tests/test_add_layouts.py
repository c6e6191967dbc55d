"""QuantizedAdd on inputs of either layout, as torch lays out and rounds them: the output takes
a's memory order; inputs of one memory order are added in it, torch's vector body and scalar tail
split in that order (a channels-last pair whose size is not a multiple of 64 has its tail at the
end of the NHWC buffer, not of the C-order one); inputs of two layouts take torch's scalar loop
for every element. Both the full call and the bound one (layers/_fast.py), against
fastq.reference on the memory-order buffers, and against torch with the engine pinned."""
from __future__ import annotations

import numpy as np
import pytest

from fastq import reference
from fastq.layers.arith import QuantizedAdd
from fastq.layers._fast import MISS
from fastq.qtensor import QTensor

SHAPES = [(1, 3, 5, 7), (2, 5, 3, 3), (1, 8, 4, 5), (1, 64, 3, 3), (3, 7, 5, 5), (1, 16, 1, 1), (1, 1, 5, 5),
          (2, 32, 8, 8)]
# scales 0.5, 0.25 -> 1.0 put every sum on a quarter step: the .5 ties, with an odd output zero
# point, round one way in the body (rne(t) + z) and the other in the tail (rne(t + z))
A_Q, B_Q = (0.5, 120, 5), (0.25, 131, -7)       # (scale, uint8 zero point, int8 zero point)


def _cl(v):
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _values(rng, shape, dtype):
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    return rng.integers(lo, hi, shape).astype(dtype)


def _expected(va, vb, dtype, relu, zy, arithmetic):
    """The add on the buffers in a's memory order (reference.py's flat formulas), in a's layout."""
    perm = (0, 2, 3, 1) if not va.flags.c_contiguous else (0, 1, 2, 3)
    same = np.array_equal(va.strides, vb.strides) or va.shape[1] == 1 or va.shape[2] * va.shape[3] == 1
    fa, fb = va.transpose(perm).reshape(-1), vb.transpose(perm).reshape(-1)
    (sa, za8, zai), (sb, zb8, zbi) = A_Q, B_Q
    za, zb = (za8, zb8) if dtype == "uint8" else (zai, zbi)
    if arithmetic == "qnnpack" and dtype == "uint8":
        y = reference.qadd_qnnpack(fa, sa, za, fb, sb, zb, 1.0, zy, relu)
    else:
        y = reference.qadd_fbgemm(fa, sa, za, fb, sb, zb, 1.0, zy, relu, 64 if same else 0, dtype)
    return y.reshape(va.transpose(perm).shape).transpose(np.argsort(perm)), (za, zb)


@pytest.mark.parametrize("arithmetic", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("relu", [False, True])
def test_add_follows_torchs_order_on_every_layout_pair(arithmetic, dtype, relu):
    rng = np.random.default_rng(5)
    zy = 127 if dtype == "uint8" else -3
    for shape in SHAPES:
        for la, lb in [(1, 1), (1, 0), (0, 1), (0, 0)]:
            va, vb = _values(rng, shape, dtype), _values(rng, shape, dtype)
            va, vb = (_cl(va) if la else va), (_cl(vb) if lb else vb)
            want, (za, zb) = _expected(va, vb, dtype, relu, zy, arithmetic)
            add = QuantizedAdd(1.0, zy, relu=relu, arithmetic=arithmetic)
            a, b = QTensor(va, A_Q[0], za), QTensor(vb, B_Q[0], zb)
            for _ in range(3):                      # the full call, then the bound one
                y = add(a, b)
                assert np.array_equal(y.values, want), (shape, la, lb)
                assert y.values.dtype == np.dtype(dtype) and (y.scale, y.zero_point) == (1.0, zy)
                if va.size > 1 and shape[1] > 1 and shape[2] * shape[3] > 1:
                    assert y.values.strides == va.strides, (shape, la, lb)    # a's layout
            f = add._bind(a, b)
            assert f is not None
            assert np.array_equal(f(a, b).values, want)
            other = vb if la == lb else (_cl(vb) if not lb else np.ascontiguousarray(vb))
            if other.strides != vb.strides:
                assert f(a, QTensor(other, B_Q[0], zb)) is MISS                 # another layout of b
            assert f(a, QTensor(vb, B_Q[0] * 2, zb)) is MISS                    # another scale
            assert f(QTensor(va, A_Q[0], za + 1), b) is MISS                    # another zero point


def test_channels_last_tail_is_at_the_end_of_the_memory_order():
    """A constructed case: every element a tie, 105 of them (41 in the tail). The tail of the
    NHWC buffer and the C-order tail are different elements, and the result must take the first."""
    shape = (1, 3, 5, 7)
    va = _cl(np.full(shape, 121, np.uint8))         # d_a = 0.5
    vb = _cl(np.full(shape, 131, np.uint8))         # d_b = 0: t = 0.5, z_y = 127 odd
    y = QuantizedAdd(1.0, 127)(QTensor(va, 0.5, 120), QTensor(vb, 0.25, 131)).values
    nhwc = y.transpose(0, 2, 3, 1).reshape(-1)
    assert np.array_equal(nhwc[:64], np.full(64, 127)) and np.array_equal(nhwc[64:], np.full(41, 128))


def test_add_equals_torch_with_the_engine_pinned():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    old = torch.backends.quantized.engine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for engine in [e for e in ("x86", "qnnpack") if e in torch.backends.quantized.supported_engines]:
            torch.backends.quantized.engine = engine
            for tdt, dtype in ((torch.quint8, "uint8"), (torch.qint8, "int8")):
                zy = 127 if dtype == "uint8" else -3
                for shape in SHAPES:
                    for la, lb in [(1, 1), (1, 0), (0, 1), (0, 0)]:
                        for relu in (False, True):
                            za, zb = (A_Q[1], B_Q[1]) if dtype == "uint8" else (A_Q[2], B_Q[2])
                            ta = torch._make_per_tensor_quantized_tensor(
                                torch.tensor(_values(rng, shape, dtype)), A_Q[0], za)
                            tb = torch._make_per_tensor_quantized_tensor(
                                torch.tensor(_values(rng, shape, dtype)), B_Q[0], zb)
                            if la:
                                ta = ta.contiguous(memory_format=torch.channels_last)
                            if lb:
                                tb = tb.contiguous(memory_format=torch.channels_last)
                            op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
                            ty = op(ta, tb, 1.0, zy).int_repr().numpy()
                            add = QuantizedAdd(1.0, zy, relu=relu,
                                               arithmetic="qnnpack" if engine == "qnnpack" else "fbgemm")
                            a = QTensor(ta.int_repr().numpy(), A_Q[0], za)
                            b = QTensor(tb.int_repr().numpy(), B_Q[0], zb)
                            for _ in range(2):
                                y = add(a, b).values
                                assert np.array_equal(y, ty), (engine, dtype, shape, la, lb, relu)
                                assert y.strides == ty.strides or ty.size <= 1 or shape[1] == 1 \
                                    or shape[2] * shape[3] == 1, (engine, shape, la, lb)
    finally:
        torch.backends.quantized.engine = old
        torch.set_num_threads(threads)


def test_memory_order_kernels_read_in_place_and_check_their_inputs():
    """qadd_*_mem / qclamp on dense arrays of one layout: the C-order kernels on the NHWC buffers,
    the output in the inputs' layout; anything else refused, naming the arguments."""
    from fastq import _kernels as K
    rng = np.random.default_rng(3)
    va, vb = _cl(_values(rng, (2, 5, 3, 7), "uint8")), _cl(_values(rng, (2, 5, 3, 7), "uint8"))
    ta, tb = va.transpose(0, 2, 3, 1), vb.transpose(0, 2, 3, 1)       # C-order views of the buffers
    args = (64, 0.5, 120, 0.25, 131, 1.0, 127, True)
    y = K.qadd_fbgemm_mem(va, vb, *args)
    assert y.strides == va.strides and np.array_equal(y.transpose(0, 2, 3, 1), K.qadd_fbgemm(ta, tb, *args))
    qargs = reference.qnnpack_add_params(0.5, 120, 0.25, 131, 1.0) + (127, 0, 255)
    y = K.qadd_qnnpack_mem(va, vb, *qargs)
    assert y.strides == va.strides and np.array_equal(y.transpose(0, 2, 3, 1), K.qadd_qnnpack(ta, tb, *qargs))
    y = K.qclamp(va, 100, 200)
    assert y.strides == va.strides and np.array_equal(y, np.clip(va, 100, 200))
    flipped = np.ascontiguousarray(va[:, :, ::-1])[:, :, ::-1]          # negative strides: C order out
    assert np.array_equal(K.qclamp(flipped, 100, 200), np.clip(flipped, 100, 200))
    with pytest.raises(ValueError, match="a, b: expected one shape and one set of strides"):
        K.qadd_fbgemm_mem(va, np.ascontiguousarray(vb), *args)
    with pytest.raises(ValueError, match="a, b: expected arrays without gaps"):
        K.qadd_fbgemm_mem(va[:, :, ::2], vb[:, :, ::2], *args)
    with pytest.raises(ValueError, match="a, b: expected one shape"):
        K.qadd_fbgemm_mem(va, vb.reshape(2, 5, 7, 3), *args)
    with pytest.raises(ValueError, match="a, b: shapes differ"):
        K.qadd_fbgemm_mem(va, np.ascontiguousarray(vb).reshape(2, 5, 21), *args)
    with pytest.raises(TypeError, match="a, b: expected two uint8 or two int8 arrays"):
        K.qadd_qnnpack_mem(va, vb.view(np.int8), *qargs)
    with pytest.raises(TypeError, match="QNNPACK add takes uint8 values"):
        K.qadd_qnnpack_mem(va.view(np.int8), vb.view(np.int8), *qargs)


@pytest.mark.parametrize("threads", [2, 3])
def test_channels_last_chunks_of_torch_threads_follow_memory(threads):
    """From 32 768 elements torch splits its loop into one chunk per thread, each with its own
    body and tail: for channels-last inputs the chunks are runs of the NHWC buffer. Against
    reference.py on the memory-order buffers, and against torch with that many threads."""
    rng = np.random.default_rng(8)
    shape = (2, 37, 31, 33)                         # 75 702 elements: every chunk has a tail
    va, vb = _cl(_values(rng, shape, "uint8")), _cl(_values(rng, shape, "uint8"))
    add = QuantizedAdd(1.0, 127, torch_threads=threads)
    y = add(QTensor(va, 0.5, 120), QTensor(vb, 0.25, 131))
    fa, fb = va.transpose(0, 2, 3, 1).reshape(-1), vb.transpose(0, 2, 3, 1).reshape(-1)
    want = reference.qadd_fbgemm(fa, 0.5, 120, fb, 0.25, 131, 1.0, 127, torch_threads=threads)
    assert np.array_equal(y.values.transpose(0, 2, 3, 1).reshape(-1), want)
    torch = pytest.importorskip("torch")
    old, n_old = torch.backends.quantized.engine, torch.get_num_threads()
    try:
        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
        torch.set_num_threads(threads)
        ta = torch._make_per_tensor_quantized_tensor(torch.tensor(va.transpose(0, 2, 3, 1).copy()), 0.5, 120)
        tb = torch._make_per_tensor_quantized_tensor(torch.tensor(vb.transpose(0, 2, 3, 1).copy()), 0.25, 131)
        ta, tb = ta.permute(0, 3, 1, 2), tb.permute(0, 3, 1, 2)      # channels-last views
        ty = torch.ops.quantized.add(ta, tb, 1.0, 127).int_repr().numpy()
        assert np.array_equal(y.values, ty)
    finally:
        torch.backends.quantized.engine = old
        torch.set_num_threads(n_old)
