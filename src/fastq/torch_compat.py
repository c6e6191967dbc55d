"""The only module that imports torch (lazily), with the helpers only it imports
(fx_convert.py: converted models, fx_calibrate.py: float models, torch_conv.py: convolutions and
pooling): import quantized torch modules
into fastq, and quantize float torch models.

Requantization follows the engine that packed the module: Linear x86 / fbgemm -> "fbgemm",
qnnpack -> "qnnpack" (docs/ARITHMETIC.md §6, §7); a convolution under x86 runs oneDNN's
arithmetic where torch packs it for oneDNN (torch_conv.py, §18).
"""
from __future__ import annotations

import numpy as np

ENGINE_REQUANT = {"x86": "fbgemm", "fbgemm": "fbgemm", "qnnpack": "qnnpack"}


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError("this needs PyTorch: pip install torch==2.13.0") from e
    return torch


def requant_for_engine(engine=None):
    """The fastq requantization mode reproducing a torch quantized engine."""
    torch = _torch()
    if engine is None:
        engine = torch.backends.quantized.engine
    if not isinstance(engine, str):
        raise TypeError("engine: expected a torch quantized engine name, got %r" % type(engine).__name__)
    if engine not in ENGINE_REQUANT:
        raise ValueError("engine: %r is not reproduced by fastq; use one of %s"
                         % (engine, ", ".join(sorted(ENGINE_REQUANT))))
    return ENGINE_REQUANT[engine]


def qtensor_from_torch(t):
    """torch quantized tensor (quint8 / qint8; per tensor or per channel) -> fastq.QTensor."""
    torch = _torch()
    from .qtensor import QTensor
    if not isinstance(t, torch.Tensor) or not t.is_quantized:
        raise TypeError("t: expected a quantized torch.Tensor, got %s" % type(t).__name__)
    if t.dtype not in (torch.quint8, torch.qint8):
        raise TypeError("t: expected quint8 or qint8, got %s" % t.dtype)
    values = t.int_repr().cpu().numpy()
    scheme = t.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return QTensor(values, float(t.q_scale()), int(t.q_zero_point()))
    if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
        return QTensor(values, t.q_per_channel_scales().double().numpy(),
                       t.q_per_channel_zero_points().numpy(), axis=int(t.q_per_channel_axis()))
    raise TypeError("t: unsupported qscheme %s" % scheme)


def qtensor_to_torch(q):
    """fastq.QTensor (per tensor) -> torch quantized tensor holding the same integers."""
    torch = _torch()
    if q.axis is not None:
        raise TypeError("q: only per-tensor QTensors convert back to torch")
    ints = torch.from_numpy(np.array(q.values, order="C"))     # a copy: QTensor values are read-only
    return torch._make_per_tensor_quantized_tensor(ints, q.scale, q.zero_point)


def linear_from_torch(module, engine=None):
    """torch.ao.nn.quantized.Linear or ...intrinsic.quantized.LinearReLU -> QuantizedLinear."""
    torch = _torch()
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.intrinsic.quantized as nniq
    from .layers.linear import QuantizedLinear
    if not isinstance(module, nnq.Linear) or type(module).__name__ not in ("Linear", "LinearReLU"):
        raise TypeError("module: expected torch.ao.nn.quantized.Linear or "
                        "torch.ao.nn.intrinsic.quantized.LinearReLU, got %s" % type(module).__name__)
    requant = requant_for_engine(engine)
    weight = qtensor_from_torch(module.weight())
    bias = module.bias()
    bias = None if bias is None else bias.detach().float().numpy().copy()
    relu = isinstance(module, nniq.LinearReLU)
    return QuantizedLinear(weight, bias, float(module.scale), int(module.zero_point),
                           relu=relu, requant=requant)


def dynamic_linear_from_torch(module, engine=None):
    """torch.ao.nn.quantized.dynamic.Linear or ...intrinsic.quantized.dynamic.LinearReLU (qint8
    weights) -> DynamicQuantizedLinear, reproducing the given (or current) torch engine."""
    _torch()
    import torch
    import torch.ao.nn.quantized.dynamic as nnqd
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
    from .layers.dynamic import DynamicQuantizedLinear
    if not isinstance(module, nnqd.Linear):
        raise TypeError("module: expected torch.ao.nn.quantized.dynamic.Linear or "
                        "torch.ao.nn.intrinsic.quantized.dynamic.LinearReLU, got %s" % type(module).__name__)
    if module._packed_params.dtype != torch.qint8:
        raise TypeError("module: only qint8 dynamic Linear is reproduced, got weights of dtype %s"
                        % module._packed_params.dtype)
    mode = requant_for_engine(engine)
    relu = isinstance(module, nniqd.LinearReLU)
    # nnqd.Linear passes reduce_range=True from version 4 on (the current one); older modules call
    # linear_dynamic with its default, False. LinearReLU always passes True. qnnpack ignores it.
    version = getattr(module, "version", None)
    reduce_range = relu or (version is not None and version >= 4)
    if mode == "qnnpack":
        reduce_range = False
    weight = qtensor_from_torch(module.weight())
    bias = module.bias()
    bias = None if bias is None else bias.detach().float().numpy().copy()
    return DynamicQuantizedLinear(weight, bias, relu=relu, mode=mode, reduce_range=reduce_range)


_TORCH_DTYPES = {"quint8": "uint8", "qint8": "int8"}


def _unsupported(what, node, path, hint=""):
    where = "fx node %r" % node.name + (", module %r" % path if path else "")
    return NotImplementedError("%s is not supported by fastq.from_torch (%s)%s" % (what, where, hint))


def _type_name(module):
    return "%s.%s" % (type(module).__module__, type(module).__name__)


def _convert_leaf(module, path, engine, node=None):
    """The fastq layer for one torch leaf module called by fx node `node`."""
    import torch.nn as nn
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd
    import torch.ao.nn.intrinsic as nni
    import torch.ao.quantization as tq
    from .layers import elementwise as fm
    if isinstance(module, nnqd.Linear):             # before nnq.Linear: nnqd.Linear subclasses it
        return dynamic_linear_from_torch(module, engine=engine)
    if isinstance(module, nnq.Linear):
        return linear_from_torch(module, engine=engine)
    if isinstance(module, nnq.Quantize):
        dtype = _TORCH_DTYPES.get(str(module.dtype).replace("torch.", ""))
        if dtype is None:
            raise TypeError("module %r: Quantize to %s is not supported (quint8 or qint8)" % (path, module.dtype))
        return fm.Quantize(float(module.scale.reshape(-1)[0]), int(module.zero_point.reshape(-1)[0]), dtype)
    if isinstance(module, nnq.DeQuantize):
        return fm.Dequantize()
    if isinstance(module, (tq.QuantStub, tq.DeQuantStub)):
        return fm.Identity()                        # unconverted stubs pass floats through
    if isinstance(module, nnq.ReLU6) or type(module) is nn.ReLU6:   # nnq.ReLU6 subclasses nn.ReLU
        return fm.ReLU6()
    if type(module) is nn.ReLU:
        return fm.ReLU()
    if type(module) is nn.Hardtanh:
        return fm.Hardtanh(float(module.min_val), float(module.max_val))
    if isinstance(module, nnq.Dropout) or type(module) is nn.Identity:   # quantized Dropout: identity
        return fm.Identity()
    if isinstance(module, nn.Dropout):
        if module.training and module.p > 0:
            raise ValueError("module %r: Dropout in training mode is random; call model.eval() first" % path)
        return fm.Identity()
    if type(module) is nn.Flatten:
        return fm.Flatten(module.start_dim, module.end_dim)
    if isinstance(module, (nn.Linear, nni.LinearReLU)) and not isinstance(module, nnq.Linear):
        raise TypeError("module %r: a float %s; quantize the model first (torch.ao.quantization.convert "
                        "or quantize_dynamic)" % (path, type(module).__name__))
    if node is None:
        node = type("N", (), {"name": "?"})()
    from .torch_conv import cnn_leaf            # convolutions and pooling (torch_conv.py)
    layer = cnn_leaf(module, path, engine, node)
    if layer is not None:
        return layer
    if "Conv" in type(module).__name__:
        raise _unsupported("module %s" % _type_name(module), node, path,
                           ": fastq reproduces quantized Conv1d / Conv2d / ConvReLU1d / ConvReLU2d (not transposed, "
                           "3-D or float convolutions)")
    raise _unsupported("module %s" % _type_name(module), node, path,
                       "; supported modules: QuantStub/Quantize, DeQuantStub/DeQuantize, quantized Linear / "
                       "LinearReLU, dynamic Linear / LinearReLU, quantized Conv1d / Conv2d / ConvReLU1d / "
                       "ConvReLU2d, MaxPool1d / 2d, AvgPool1d / 2d, ReLU, ReLU6, Hardtanh, Identity, Dropout, "
                       "Flatten")


def _is_quant_leaf(m):
    """Modules fx must not trace into: every torch.ao quantized / intrinsic module, the stubs,
    QuantWrapper's pieces and the (Q|Float)Functional holders."""
    import torch.ao.quantization as tq
    import torch.ao.nn.quantized as nnq
    mod = type(m).__module__
    if mod.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic", "torch.nn.quantized",
                       "torch.nn.intrinsic", "torch.ao.nn.qat")):
        return True
    return isinstance(m, (tq.QuantStub, tq.DeQuantStub, nnq.Quantize, nnq.DeQuantize,
                          nnq.QFunctional, nnq.FloatFunctional))


def trace(module):
    """torch.fx graph of `module` with quantized modules as leaves."""
    torch = _torch()
    import torch.fx as fx

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return _is_quant_leaf(m) or super().is_leaf_module(m, qualname)

    try:
        graph = _Tracer().trace(module)
    except fx.proxy.TraceError as e:
        raise NotImplementedError(
            "module: torch.fx cannot trace %s.forward: it uses Python control flow (if / for / while) "
            "on tensor values, which has no graph form. fastq.from_torch needs a forward whose ops do "
            "not depend on the input values; rewrite that branch or convert the parts separately. "
            "(torch.fx: %s)" % (type(module).__name__, e)) from e
    except (RuntimeError, TypeError, AttributeError) as e:
        raise NotImplementedError("module: torch.fx cannot trace %s.forward (%s: %s)"
                                  % (type(module).__name__, type(e).__name__, e)) from e
    return graph, torch


def model_from_torch(module, engine=None):
    """A converted eager-mode torch model -> fastq.Model (see fastq.model.from_torch)."""
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError("module: expected a torch.nn.Module, got %s" % type(module).__name__)
    engine_name = engine if engine is not None else torch.backends.quantized.engine
    requant_for_engine(engine_name)                 # refuse engines fastq does not reproduce, early
    if module.training and any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in module.modules()):
        raise ValueError("module: Dropout in training mode is random; call model.eval() first")
    graph, _ = trace(module)
    from .fx_convert import GraphBuilder
    return GraphBuilder(module, graph, engine_name).build()


def quantize_torch_model(model, calibration_batches, qconfig, engine, requant):
    """fastq.quantize_model for a float torch model (see fastq.calibrate)."""
    _torch()
    from .fx_calibrate import quantize_torch
    return quantize_torch(model, calibration_batches, qconfig, engine, requant)
