"""The models the benchmarks compare, built the same way for `fastq bench` and bench/.

A float MLP (torch), its eager-mode quantized twin (torch.ao: QuantStub -> fused Linear+ReLU
-> DeQuantStub, the default qconfig of the engine), and the fastq version of that quantized
model, chained by hand from `fastq.QuantizedLinear.from_torch` layer by layer; and the ONNX
Runtime one-node sessions of peers.py. torch and onnxruntime are imported lazily: a missing
one raises ImportError with the install hint, and the callers skip what needs it.
"""
from __future__ import annotations

import contextlib
import copy
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


def mlp_models(sizes, engine="x86", calibration_rows=256, seed=0):
    """The three MLPs a benchmark compares, built once: {"sizes", "fastq int8", "torch quantized",
    "torch float32", "weights": bytes each keeps for its weights}."""
    rng = np.random.default_rng(seed)
    with quiet_torch():
        fmodel = float_mlp(sizes, seed)
        qmodel = quantized_mlp(fmodel, rng.standard_normal((calibration_rows, sizes[0])).astype(np.float32),
                               engine)
        fq = FastqMLP(qmodel, engine=engine)
    weights = {"fastq int8": fastq_mlp_bytes(fq), "torch quantized": torch_quantized_bytes(qmodel),
               "torch float32": torch_float_bytes(fmodel)}
    return {"sizes": list(sizes), "fastq int8": fq, "torch quantized": qmodel, "torch float32": fmodel,
            "weights": weights}


def mlp_calls(models, x):
    """{implementation: a zero-argument call on the float32 batch x} for mlp_models(...)."""
    torch = require_torch()
    xt = torch.from_numpy(x)
    fq = models["fastq int8"]
    return {"fastq int8": lambda: fq(x), "torch quantized": torch_call(models["torch quantized"], xt),
            "torch float32": torch_call(models["torch float32"], xt)}


def mlp_mismatches(models, x):
    """How many uint8 outputs of the fastq MLP differ from torch's quantized ones on x
    (0, or the benchmark compares different computations)."""
    torch = require_torch()
    fq, qmodel = models["fastq int8"], models["torch quantized"]
    with quiet_torch(), torch.no_grad():
        theirs = qmodel.body(qmodel.quant(torch.from_numpy(x))).int_repr().numpy()
    ours = fq.quantized(fastq.quantize(x, fq.in_scale, fq.in_zero_point)).values
    return int(np.count_nonzero(ours != theirs))


def torch_call(module, x):
    """A zero-argument call of a torch module on x, without autograd (as inference runs)."""
    torch = require_torch()

    def call():
        with torch.no_grad():
            return module(x)
    return call


def ort_session(model, threads=1):
    """An ONNX Runtime CPU session of an onnx ModelProto, `threads` intra-op threads, sequential."""
    _, ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_one_node(op, inputs, inits, m, k, out_type, threads=1):
    """A session of one node `op` whose first input "A" is uint8 [m, k] and the others constants
    (inits: name -> ndarray); output "Y" of onnx type out_type."""
    require_onnxruntime()
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node(op, inputs, ["Y"])
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("Y", out_type, None)],
                              [numpy_helper.from_array(v, name) for name, v in inits.items()])
    return ort_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), threads)
