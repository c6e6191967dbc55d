"""torch -> fastq for the ops of convolutional networks (rows of torch_fx's tables; torch_calibrate):
quantized Conv1d / Conv2d / ConvReLU1d / ConvReLU2d, max and average pooling (modules and
functions). Each converted convolution records the arithmetic torch packed it for: under engine
x86 on a Linux CPU with AVX512-VNNI torch 2.13 packs it for oneDNN when groups <= 100 and the
weights are symmetric (should_use_onednn_quant), else for FBGEMM."""
from __future__ import annotations

import weakref

import numpy as np
import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
import torch.fx as fx
import torch.nn as nn

from .. import reference, runtime
from ..layers.conv import QuantizedConv
from ..layers.activation import Hardsigmoid, Hardswish
from ..layers.batchnorm import QuantizedBatchNorm
from ..layers.pool import AdaptiveAvgPool, AvgPool, MaxPool
from ..layers.reduce import MeanHW
from .torch_fx_args import _bind, _path, _type_name, _unsupported
from .torch_quantized import qtensor_from_torch

_CONV_TARGETS = weakref.WeakKeyDictionary()     # fx graph -> paths of modules with channels-last outputs


def _has_vnni():
    return "avx512vnni" in runtime.backends()


def conv_arithmetic(engine, w_zero_points, groups, output_padding=(0,)):
    """The fastq arithmetic reproducing what torch 2.13 packs a convolution for under `engine`."""
    if engine == "qnnpack":
        return "qnnpack"
    if engine == "fbgemm":
        return "fbgemm"
    if engine == "x86":
        return "onednn" if reference.onednn_packs_conv(engine, w_zero_points, groups, output_padding,
                                                       _has_vnni()) else "fbgemm"
    raise ValueError("engine: %r is not reproduced by fastq; use x86, fbgemm or qnnpack" % (engine,))


def conv_from_torch(module, engine=None):
    """torch.ao.nn.quantized Conv1d / Conv2d or intrinsic ConvReLU1d / ConvReLU2d -> QuantizedConv."""
    if type(module) not in (nnq.Conv1d, nnq.Conv2d, nniq.ConvReLU1d, nniq.ConvReLU2d):
        raise TypeError("module: expected a quantized Conv1d / Conv2d / ConvReLU1d / ConvReLU2d, got %s"
                        % _type_name(module))
    if getattr(module, "padding_mode", "zeros") != "zeros":
        raise NotImplementedError("module: padding_mode=%r is not reproduced (zeros only)" % module.padding_mode)
    engine = engine if engine is not None else torch.backends.quantized.engine
    weight = qtensor_from_torch(module.weight())
    zw = np.atleast_1d(np.asarray(weight.zero_point))
    bias = module.bias()
    bias = None if bias is None else bias.detach().float().numpy().copy()
    relu = type(module) in (nniq.ConvReLU1d, nniq.ConvReLU2d)
    return QuantizedConv(weight, bias, float(module.scale), int(module.zero_point), stride=list(module.stride),
                         padding=list(module.padding), dilation=list(module.dilation), groups=int(module.groups),
                         relu=relu, arithmetic=conv_arithmetic(engine, zw, module.groups))


# ----------------------------------------------------------------------------- layouts
_SHAPE_OPS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "contiguous"}


def torch_channels_last(node, is_conv):
    """Whether torch holds the value of fx node `node` channels-last: a quantized convolution's output
    is, and so is a quantized batch norm's; pooling, activations, add and quantize keep their input's layout; a graph input or a
    reshaped value is contiguous."""
    seen = 0
    while seen < 10000:
        seen += 1
        if node.op == "placeholder":
            return False
        if is_conv(node):
            return True
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        if name in _SHAPE_OPS or (node.op == "call_method" and node.target == "contiguous"):
            return False
        args = [a for a in node.args if isinstance(a, fx.Node)]
        for a in node.args:
            if isinstance(a, (list, tuple)):
                args += [x for x in a if isinstance(x, fx.Node)]
        if not args:
            return False
        node = args[0]
    return False


def _recorded_conv(node):
    return node.op == "call_module" and node.target in _CONV_TARGETS.get(node.graph, ())


def _pool_path(engine, channels_last):
    if engine == "qnnpack":
        return "qnnpack"
    return "nhwc" if channels_last else "nchw"


def _vector_channels():
    cap = torch.backends.cpu.get_cpu_capability()
    return 16 if cap.startswith("AVX512") else 8 if cap.startswith("AVX2") else 0


def _ints(v, dims):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v * dims if len(v) == 1 else v


def max_pool_layer(dims, kernel_size, stride, padding, dilation, ceil_mode, return_indices, engine, node, path):
    if return_indices:
        raise _unsupported("max pooling with return_indices=True", node, path)
    dilation = _ints(dilation, dims)
    if engine == "qnnpack" and any(d != 1 for d in dilation):
        raise _unsupported("max pooling with dilation %r under engine qnnpack" % (dilation,), node, path,
                           " (torch 2.13's qnnpack max pool does not return the window maximum there)")
    stride = _ints(kernel_size if stride in (None, [], ()) else stride, dims)
    return MaxPool(_ints(kernel_size, dims), stride, _ints(padding, dims), dilation, bool(ceil_mode), dims=dims)


def avg_pool_layer(dims, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, engine,
                   channels_last, node, path):
    stride = _ints(kernel_size if stride in (None, [], ()) else stride, dims)
    p = _pool_path(engine, channels_last)
    if p == "qnnpack" and ceil_mode:
        k, s, pd = _ints(kernel_size, dims), stride, _ints(padding, dims)
        raise _unsupported("average pooling with ceil_mode=True under engine qnnpack", node, path,
                           " (QNNPACK leaves the extra output row / column torch allocates unwritten; kernel %s "
                           "stride %s padding %s)" % (k, s, pd))
    return AvgPool(_ints(kernel_size, dims), stride, _ints(padding, dims), bool(ceil_mode), bool(count_include_pad),
                   divisor_override, path=p, vector_channels=_vector_channels(), dims=dims)


_BATCH_NORMS = (nnq.BatchNorm2d, nnq.BatchNorm3d, nniq.BNReLU2d, nniq.BNReLU3d)
# modules whose quantized output torch allocates channels-last
_CHANNELS_LAST = (nnq.Conv1d, nnq.Conv2d, nniq.ConvReLU1d, nniq.ConvReLU2d) + _BATCH_NORMS


def batch_norm_from_torch(module):
    """nnq.BatchNorm2d / BatchNorm3d or nniq.BNReLU2d / BNReLU3d -> QuantizedBatchNorm, with the vector
    block of the torch build that runs it (its per-channel body / tail split)."""
    if type(module) not in _BATCH_NORMS:
        raise TypeError("module: expected a quantized BatchNorm2d / BatchNorm3d / BNReLU2d / BNReLU3d, got %s"
                        % _type_name(module))
    dims = 3 if isinstance(module, nnq.BatchNorm3d) else 2
    arrays = [None if a is None else a.detach().float().numpy().copy()
              for a in (module.weight, module.bias, module.running_mean, module.running_var)]
    if arrays[0] is None or arrays[1] is None:
        raise ValueError("module: a quantized batch norm without weight or bias (affine=False); torch's "
                         "quantized::batch_norm requires both")
    return QuantizedBatchNorm(*arrays, float(module.scale), int(module.zero_point), eps=float(module.eps),
                              relu=type(module) in (nniq.BNReLU2d, nniq.BNReLU3d), vector_block=_vector_block(),
                              dims=dims)


def cnn_leaf(module, path, engine, node):
    """The fastq layer for a CNN module (a convolution, a batch norm or a pooling module), or None."""
    if type(module) in _CHANNELS_LAST:
        if node is not None and getattr(node, "graph", None) is not None:
            _CONV_TARGETS.setdefault(node.graph, set()).add(node.target)
        if type(module) in _BATCH_NORMS:
            return batch_norm_from_torch(module)
        return conv_from_torch(module, engine)
    if type(module) in (nn.MaxPool1d, nn.MaxPool2d):
        dims = 1 if isinstance(module, nn.MaxPool1d) else 2
        return max_pool_layer(dims, module.kernel_size, module.stride, module.padding, module.dilation,
                              module.ceil_mode, module.return_indices, engine, node, path)
    if type(module) in (nn.AvgPool1d, nn.AvgPool2d):
        dims = 1 if isinstance(module, nn.AvgPool1d) else 2
        cl = node is not None and hasattr(node, "args") and torch_channels_last(node, _recorded_conv)
        return avg_pool_layer(dims, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                              module.count_include_pad, getattr(module, "divisor_override", None), engine, cl,
                              node, path)
    if type(module) in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d):
        dims = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
        cl = node is not None and hasattr(node, "args") and torch_channels_last(node, _recorded_conv)
        return adaptive_avg_pool_layer(dims, module.output_size, engine, cl, node, path)
    if type(module) in (nnq.Hardswish,):
        cl = node is not None and hasattr(node, "args") and torch_channels_last(node, _recorded_conv)
        return hardswish_layer(module.scale, module.zero_point, engine, cl)
    if type(module) in (nn.Hardsigmoid,):
        cl = node is not None and hasattr(node, "args") and torch_channels_last(node, _recorded_conv)
        return hardsigmoid_layer(module.inplace, engine, cl, node, path)
    return None


def _vector_block():
    """Elements per vector of torch's quantized uint8 elementwise loops (Vectorized<quint8>)."""
    cap = torch.backends.cpu.get_cpu_capability()
    return 64 if cap.startswith("AVX512") else 32 if cap.startswith("AVX2") else 0


def hardswish_layer(scale, zero_point, engine, channels_last):
    """torch 2.13 runs quantized hardswish through QNNPACK's lookup table under engine qnnpack, else
    its vectorized float kernel (vector body and scalar tail round differently)."""
    return Hardswish(float(scale), int(zero_point), "uint8", path="qnnpack" if engine == "qnnpack" else "vector",
                     layout="nhwc" if channels_last else "nchw", vector_block=_vector_block(),
                     torch_threads=torch.get_num_threads())


def hardsigmoid_layer(inplace, engine, channels_last, node, path):
    """nn.Hardsigmoid / F.hardsigmoid on a quint8 tensor: torch's vector kernel, or QNNPACK's table
    under engine qnnpack; the output quantization is fixed (1/256, 0)."""
    if inplace:
        raise _unsupported("hardsigmoid with inplace=True", node, path,
                           " (it overwrites its input, which later readers see; use inplace=False)")
    return Hardsigmoid("uint8", path="qnnpack" if engine == "qnnpack" else "vector",
                       layout="nhwc" if channels_last else "nchw", vector_block=_vector_block(),
                       torch_threads=torch.get_num_threads())


def fx_hardsigmoid(b, node):
    a = _bind(b, node, ("input", "inplace"), {"inplace": False})
    b.const(node, a["inplace"], (bool,), "inplace")
    cl = torch_channels_last(node, _is_conv_in(b.root))
    b.add(node, hardsigmoid_layer(a["inplace"], b.engine, cl, node, _path(node)), [b.tensor(node, a["input"])])


def fx_mean(b, node):
    """Tensor.mean / torch.mean over dims (2, 3) of a 4-D quantized value (shufflenet's global
    pool); any other dims or a dtype are refused."""
    a = _bind(b, node, ("input", "dim", "keepdim", "dtype"), {"dim": None, "keepdim": False, "dtype": None})
    dim = b.const(node, a["dim"], (int, tuple, list, type(None)), "dim")
    keepdim = b.const(node, a["keepdim"], (bool,), "keepdim")
    if a["dtype"] is not None:
        raise _unsupported("mean with dtype=%r" % (a["dtype"],), node, _path(node))
    dims = sorted(d % 4 for d in ((dim,) if isinstance(dim, int) else dim or ()))
    if dims != [2, 3]:
        raise _unsupported("mean over dims %r" % (dim,), node, _path(node),
                           " (fastq reproduces the quantized mean over dims (2, 3) of a 4-D value)")
    if b.engine == "qnnpack":
        path = "qnnpack"
    else:
        path = "nhwc" if torch_channels_last(node, _is_conv_in(b.root)) else "nchw"
    b.add(node, MeanHW(keepdim, path), [b.tensor(node, a["input"])])


def adaptive_avg_pool_layer(dims, output_size, engine, channels_last, node, path):
    out = _ints(output_size, dims)
    if any(o is None for o in out):
        raise _unsupported("adaptive average pooling with output_size %r (None keeps an input size)"
                           % (output_size,), node, path)
    p = "nhwc" if channels_last else "nchw"
    if engine == "qnnpack":
        p = "qnnpack"       # torch checks the sizes at run time; AdaptiveAvgPool refuses the other case
    return AdaptiveAvgPool(out, path=p, vector_channels=_vector_channels(), dims=dims)


# ----------------------------------------------------------------------------- fx handlers
def _is_conv_in(root):
    kinds = _CHANNELS_LAST

    def is_conv(n):
        if n.op != "call_module":
            return False
        try:
            return type(root.get_submodule(str(n.target))) in kinds
        except AttributeError:
            return False
    return is_conv


def fx_max_pool(dims):
    def h(b, node):
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        a = _bind(b, node, names, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                                   "return_indices": False})
        for k in names[1:]:
            b.const(node, a[k], (int, tuple, list, bool, type(None)), k)
        layer = max_pool_layer(dims, a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"],
                               a["return_indices"], b.engine, node, _path(node))
        b.add(node, layer, [b.tensor(node, a["input"])])
    return h


def fx_avg_pool(dims):
    def h(b, node):
        names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        if dims == 2:
            names += ("divisor_override",)
        a = _bind(b, node, names, {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                                   "divisor_override": None})
        for k in names[1:]:
            b.const(node, a[k], (int, tuple, list, bool, type(None)), k)
        cl = torch_channels_last(node, _is_conv_in(b.root))
        layer = avg_pool_layer(dims, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                               a["count_include_pad"], a.get("divisor_override"), b.engine, cl, node, _path(node))
        b.add(node, layer, [b.tensor(node, a["input"])])
    return h


def fx_adaptive_avg_pool(dims):
    def h(b, node):
        a = _bind(b, node, ("input", "output_size"), {})
        b.const(node, a["output_size"], (int, tuple, list), "output_size")
        cl = torch_channels_last(node, _is_conv_in(b.root))
        b.add(node, adaptive_avg_pool_layer(dims, a["output_size"], b.engine, cl, node, _path(node)),
              [b.tensor(node, a["input"])])
    return h
