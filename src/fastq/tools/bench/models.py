"""The models the benchmarks compare, built the same way for `fastq bench` and bench/.

A float MLP (torch), its eager-mode quantized twin (torch.ao: QuantStub -> fused Linear+ReLU
-> DeQuantStub, the default qconfig of the engine), and the fastq version of that quantized
model, chained by hand from `fastq.QuantizedLinear.from_torch` layer by layer. Optionally an
ONNX Runtime QLinearMatMul layer. torch and onnxruntime are imported lazily: a missing one
raises ImportError with the install hint, and the callers skip what needs it.
"""
from __future__ import annotations

import contextlib
import warnings

import numpy as np

import fastq


def require_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("torch is not installed (pip install torch==2.13.0)") from e
    return torch


def require_onnxruntime():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError("onnxruntime/onnx are not installed (pip install onnxruntime onnx)") from e
    return onnx, onnxruntime


@contextlib.contextmanager
def quiet_torch():
    """torch 2.13 deprecates quantized tensors and warns on each kind of use: the
    benchmarks use them on purpose, as the peer being measured."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torch")
        warnings.filterwarnings("ignore", message=".*quantiz.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def float_mlp(sizes, seed=0):
    """torch nn.Sequential: Linear(sizes[0], sizes[1]), ReLU, ..., Linear(.., sizes[-1])."""
    torch = require_torch()
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, k, generator=gen) / np.sqrt(k))
            lin.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def quantized_mlp(float_model, calibration, engine="x86"):
    """Eager-mode post-training quantization of a float_mlp: fuse Linear+ReLU, prepare with
    the engine's default qconfig, calibrate on `calibration` (float32 [B, K]), convert."""
    torch = require_torch()
    import copy

    from torch.ao import quantization as tq

    class Wrapped(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.quant = tq.QuantStub()
            self.body = body
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

    with quiet_torch():
        return _quantize_eager(torch, tq, Wrapped(copy.deepcopy(float_model)).eval(), calibration, engine)


def _quantize_eager(torch, tq, model, calibration, engine):
    torch.backends.quantized.engine = engine
    names = [str(i) for i, m in enumerate(model.body)]
    pairs = [[names[i], names[i + 1]] for i, m in enumerate(model.body)
             if isinstance(m, torch.nn.Linear) and i + 1 < len(names)
             and isinstance(model.body[i + 1], torch.nn.ReLU)]
    if pairs:
        tq.fuse_modules(model.body, pairs, inplace=True)
    model.qconfig = tq.get_default_qconfig(engine)
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        model(torch.as_tensor(calibration, dtype=torch.float32))
    tq.convert(model, inplace=True)
    return model


class FastqMLP:
    """quantize -> QuantizedLinear ... -> dequantize, from an eager-mode quantized MLP.
    (Deliberately independent of fastq.from_torch: each layer via QuantizedLinear.from_torch.)"""

    def __init__(self, qmodel, engine=None):
        import torch.ao.nn.quantized as nnq
        self.in_scale = float(qmodel.quant.scale)
        self.in_zero_point = int(qmodel.quant.zero_point)
        self.layers = [fastq.QuantizedLinear.from_torch(m, engine=engine)
                       for m in qmodel.body.modules() if isinstance(m, nnq.Linear)]

    def quantized(self, x_q):
        for layer in self.layers:
            x_q = layer(x_q)
        return x_q

    def __call__(self, x):
        q = fastq.quantize(x, self.in_scale, self.in_zero_point)
        return fastq.dequantize(self.quantized(q))


def _per_channel(w):
    torch = require_torch()
    return w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)


def _nbytes(a):
    return int(np.asarray(a).nbytes) if a is not None else 0


def fastq_layer_bytes(layer):
    """What a QuantizedLinear keeps for its weights: the packed int8 panels (padded), the
    int32 column sums, the float bias, the weight scales and zero points."""
    packed = getattr(layer, "_packed", None)
    if packed is not None and hasattr(packed, "packed_bytes"):
        weights = _nbytes(packed.packed_bytes()) + _nbytes(packed.col_sums)
    else:  # another layout: count the plain int8 weights
        weights = _nbytes(layer.weight.values)
    return (weights + _nbytes(layer.bias) + _nbytes(layer.int_bias)
            + _nbytes(layer.weight.scale) + _nbytes(layer.weight.zero_point))


def fastq_mlp_bytes(model):
    return sum(fastq_layer_bytes(layer) for layer in model.layers)


def torch_float_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def torch_quantized_bytes(qmodel):
    """int8 weights + float bias + per-channel scales (float64) and zero points (int64), as
    the torch module hands them out (the engine's packed copy is not visible from Python)."""
    import torch.ao.nn.quantized as nnq
    total = 0
    for m in qmodel.modules():
        if isinstance(m, nnq.Linear):
            w = m.weight()
            total += w.int_repr().numel()
            if m.bias() is not None:
                total += m.bias().numel() * m.bias().element_size()
            if _per_channel(w):
                total += w.q_per_channel_scales().numel() * 8 + w.q_per_channel_zero_points().numel() * 8
            else:
                total += 16
    return total


def quantized_linear(k, n, calibration_rows=64, engine="x86", seed=0):
    """One quantized Linear (no ReLU) of a calibrated K -> N float layer:
    (torch float Linear, torch quantized Linear, input scale, input zero point)."""
    fmodel = float_mlp([k, n], seed)
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((calibration_rows, k)).astype(np.float32)
    qmodel = quantized_mlp(fmodel, calib, engine)
    qlin = qmodel.body[0]
    return fmodel[0], qlin, float(qmodel.quant.scale), int(qmodel.quant.zero_point)


def onnx_qlinear(qlin, x_scale, x_zero_point, threads=1):
    """An ONNX Runtime session computing the quantized layer with QLinearMatMul (uint8 x
    int8 -> uint8; no bias, per-tensor weight scale: the speed comparison only)."""
    onnx, ort = require_onnxruntime()
    from onnx import TensorProto, helper, numpy_helper
    w = qlin.weight()
    w_int = w.int_repr().numpy().astype(np.int8)              # [N, K]
    n, k = w_int.shape
    w_scale = float(w.q_per_channel_scales().max()) if _per_channel(w) else float(w.q_scale())
    inits = [
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(x_zero_point, np.uint8), "x_zp"),
        numpy_helper.from_array(np.ascontiguousarray(w_int.T), "w"),
        numpy_helper.from_array(np.array(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(float(qlin.scale), np.float32), "y_scale"),
        numpy_helper.from_array(np.array(int(qlin.zero_point), np.uint8), "y_zp"),
    ]
    node = helper.make_node("QLinearMatMul", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                              "y_scale", "y_zp"], ["y"])
    graph = helper.make_graph(
        [node], "qlinear",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, ["M", k])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, ["M", n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda x_u8: sess.run(None, {"x": x_u8})[0]
