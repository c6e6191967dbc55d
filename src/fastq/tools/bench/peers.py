"""The peers a user would otherwise pick, built once per shape, each called on prepared inputs.
`fastq bench` (its Linear-layer table) and bench/test_bench_peers.py time the same callables.

Every builder build(m, k, n, rng, threads=1) returns a zero-argument callable that runs one
forward pass (or None when the peer does not take the shape); a missing torch / onnxruntime
raises ImportError with the install hint. `threads` is onnxruntime's intra-op thread count
(fastq and torch follow measure.threads):
  fastq_linear   fastq.QuantizedLinear (uint8 in, uint8 out)
  torch_qlinear  torch.ao.nn.quantized.Linear, engine x86
  ort_qlinear    ONNX Runtime QLinearMatMul (u8 x s8 -> u8)
  fastq_qgemm    fastq.qgemm's kernel on prepacked weights (int32 out)
  ort_matmulint  ONNX Runtime MatMulInteger (u8 x s8 -> s32)
  torch_int_mm   torch._int_mm (s8 x s8 -> s32; needs M > 16, K and N multiples of 8)
  torch_f32      torch.nn.Linear in float32
"""
from __future__ import annotations

import numpy as np

import fastq
from fastq import _kernels

from .models import ort_one_node, require_onnxruntime, require_torch, torch_call


def _weights(rng, k, n):
    return rng.integers(-127, 128, (n, k), dtype=np.int8)


def _activations(rng, m, k):
    return rng.integers(0, 128, (m, k), dtype=np.uint8)   # reduce_range style input, x86 default


def fastq_linear(m, k, n, rng, threads=1):
    w = fastq.QTensor(_weights(rng, k, n), 0.01, 0)
    layer = fastq.QuantizedLinear(w, rng.standard_normal(n).astype(np.float32), 0.05, 64)
    x = fastq.QTensor(_activations(rng, m, k), 0.02, 10)
    layer(x)
    return lambda: layer(x)


def fastq_qgemm(m, k, n, rng, threads=1):
    """The integer core alone (weights packed once, as a layer does; int32 output)."""
    packed = _kernels.PackedWeights(_weights(rng, k, n), np.zeros(1, np.int32))
    ep = _kernels.Epilogue(packed, _kernels.EPI_INT32, packed.col_offsets(10))
    a = _activations(rng, m, k)
    out = np.empty((m, n), np.int32)
    return lambda: _kernels.gemm(packed, ep, a, 0, out)


def torch_qlinear(m, k, n, rng, threads=1):
    torch = require_torch()
    import torch.ao.nn.quantized as nnq
    torch.backends.quantized.engine = "x86"
    lin = nnq.Linear(k, n)
    wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(_weights(rng, k, n)), 0.01, 0)
    lin.set_weight_bias(wq, torch.from_numpy(rng.standard_normal(n).astype(np.float32)))
    lin.scale, lin.zero_point = 0.05, 64
    x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(_activations(rng, m, k)), 0.02, 10)
    lin(x)
    return lambda: lin(x)


def torch_int_mm(m, k, n, rng, threads=1):
    torch = require_torch()
    if m <= 16 or k % 8 or n % 8:
        return None
    a = torch.from_numpy(rng.integers(-128, 128, (m, k), dtype=np.int8))
    b = torch.from_numpy(_weights(rng, k, n)).t().contiguous()
    return lambda: torch._int_mm(a, b)


def torch_f32(m, k, n, rng, threads=1):
    torch = require_torch()
    return torch_call(torch.nn.Linear(k, n), torch.randn(m, k))


def ort_qlinear(m, k, n, rng, threads=1):
    require_onnxruntime()
    from onnx import TensorProto
    inits = {"a_scale": np.array(0.02, np.float32), "a_zp": np.array(10, np.uint8),
             "B": _weights(rng, k, n).T.copy(),                  # ONNX MatMul wants B as [K, N]
             "b_scale": np.array(0.01, np.float32), "b_zp": np.array(0, np.int8),
             "y_scale": np.array(0.05, np.float32), "y_zp": np.array(64, np.uint8)}
    sess = ort_one_node("QLinearMatMul", ["A", "a_scale", "a_zp", "B", "b_scale", "b_zp", "y_scale", "y_zp"],
                        inits, m, k, TensorProto.UINT8, threads)
    feed = {"A": _activations(rng, m, k)}
    sess.run(None, feed)
    return lambda: sess.run(None, feed)


def ort_matmulint(m, k, n, rng, threads=1):
    require_onnxruntime()
    from onnx import TensorProto
    inits = {"B": _weights(rng, k, n).T.copy(), "a_zp": np.array(10, np.uint8), "b_zp": np.array(0, np.int8)}
    sess = ort_one_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], inits, m, k, TensorProto.INT32, threads)
    feed = {"A": _activations(rng, m, k)}
    sess.run(None, feed)
    return lambda: sess.run(None, feed)


LAYER_PEERS = {"fastq_linear": fastq_linear, "torch_qlinear": torch_qlinear, "ort_qlinear": ort_qlinear,
               "torch_f32": torch_f32}
# the names `fastq bench` prints for the layer peers
LABELS = {"fastq_linear": "fastq int8", "torch_qlinear": "torch quantized", "ort_qlinear": "onnxruntime int8",
          "torch_f32": "torch float32"}
GEMM_PEERS = {"fastq_qgemm": fastq_qgemm, "ort_matmulint": ort_matmulint, "torch_int_mm": torch_int_mm}
