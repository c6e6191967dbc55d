"""An independent runner of fastq models: every node computed from fastq.reference (the pen
and paper formulas) or plain numpy, never by the op's own code. Quantized values are RQ
(values, scale, zero_point)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastq import reference as R

f32 = np.float32


class RQ(NamedTuple):
    values: np.ndarray
    scale: float
    zero_point: int


def _dt(q):
    return q.values.dtype.name


def _clamp(q, lo, hi):
    return RQ(np.clip(q.values, lo, hi).astype(q.values.dtype), q.scale, q.zero_point)


def _relu(L, x):
    if isinstance(x, RQ):
        return _clamp(x, x.zero_point, R._qrange(_dt(x))[1])
    return np.maximum(x, f32(0))


def _bounded(lo_f, hi_f):
    def run(L, x):
        lo_v, hi_v = lo_f(L), hi_f(L)
        if isinstance(x, RQ):
            lo = x.zero_point if lo_v is None else int(R.quantize_val(f32(lo_v), x.scale, x.zero_point, _dt(x)))
            return _clamp(x, lo, int(R.quantize_val(f32(hi_v), x.scale, x.zero_point, _dt(x))))
        return np.clip(x, f32(0 if lo_v is None else lo_v), f32(hi_v))
    return run


def _linear(L, x):
    w = L.weight
    pc = w.axis is not None
    x2 = x.values.reshape(-1, x.values.shape[-1])
    ws, wz = w.scale, w.zero_point
    bias = L.int_bias if L.int_bias is not None else L.bias
    if L.requant == "tflite":
        y = R.linear_tflite(x2, x.scale, x.zero_point, w.values, ws, wz, bias, L.scale, L.zero_point, L.relu, pc,
                            L.rounding, _dt(x), L.effective_scale)
    elif _dt(x) == "uint8" and L.dtype.name == "uint8":
        y = R.linear(x2, x.scale, x.zero_point, w.values, ws, wz, bias, L.scale, L.zero_point, L.relu, L.requant, pc)
    else:
        y = R.linear_int8(x2, x.zero_point, w.values, ws, wz, bias, x.scale, L.scale, L.zero_point, L.relu,
                          L.requant, L.dtype.name, pc)
    return RQ(np.asarray(y).reshape(x.values.shape[:-1] + (-1,)).astype(L.dtype), L.scale, L.zero_point)


def _dynamic(L, x):
    w = L.weight
    return R.linear_dynamic(x, w.values, w.scale, w.zero_point, L.bias, L.relu, L.mode, L.reduce_range)


def _qadd(L, a, b):
    if L.arithmetic == "qnnpack" and _dt(a) == "uint8":
        y = R.qadd_qnnpack(a.values.reshape(-1), a.scale, a.zero_point, b.values.reshape(-1), b.scale, b.zero_point,
                           L.scale, L.zero_point, L.relu)
    else:
        y = R.qadd_fbgemm(a.values.reshape(-1), a.scale, a.zero_point, b.values.reshape(-1), b.scale, b.zero_point,
                          L.scale, L.zero_point, L.relu, L.vector_block, _dt(a), L.torch_threads)
    return RQ(np.asarray(y).reshape(a.values.shape).astype(a.values.dtype), L.scale, L.zero_point)


def _qmul(L, a, b):
    m = R.qmul_multiplier(a.scale, b.scale, L.scale)
    va, vb = np.broadcast_arrays(a.values, b.values)       # torch broadcasts (squeeze-excitation)
    y = R.qmul(va.reshape(-1), a.zero_point, vb.reshape(-1), b.zero_point, m, L.zero_point, L.relu,
               _dt(a)).reshape(va.shape)
    return RQ(np.asarray(y).astype(a.values.dtype), L.scale, L.zero_point)


def _scalar(fn):
    def run(L, x):
        v, s, z = fn(x.values, x.scale, x.zero_point, L.value, _dt(x))
        return RQ(np.asarray(v).astype(x.values.dtype), s, z)
    return run


def _qcat(L, *xs):
    y = R.cat([(x.values, x.scale, x.zero_point) for x in xs], L.scale, L.zero_point, L.dim, _dt(xs[0]))
    return RQ(np.asarray(y), L.scale, L.zero_point)


def _cat(L, *xs):
    if isinstance(xs[0], RQ):
        y = R.cat([(x.values, x.scale, x.zero_point) for x in xs], xs[0].scale, xs[0].zero_point, L.dim, _dt(xs[0]))
        return RQ(np.asarray(y), xs[0].scale, xs[0].zero_point)
    return np.concatenate(xs, axis=L.dim)


def _view(fn):
    def run(L, x, *rest):
        if isinstance(x, RQ):
            return RQ(fn(L, x.values, *rest), x.scale, x.zero_point)
        return fn(L, x, *rest)
    return run


def _flatten(L, v):
    nd = max(v.ndim, 1)
    s, e = L.start_dim % nd, L.end_dim % nd
    return v.reshape(v.shape[:s] + (-1,) + v.shape[e + 1:])


def _reshape(L, v, *sizes):
    it = iter(sizes)
    return v.reshape(tuple(next(it) if d is None else d for d in L.shape))


def _squeeze(L, v):
    if L.dim is None:
        return v.reshape(tuple(d for d in v.shape if d != 1))
    return np.squeeze(v, L.dim) if v.shape[L.dim] == 1 else v


def _conv(L, x):
    bias = L.int_bias if L.int_bias is not None else L.bias
    w = L.weight
    y = R.conv(x.values, x.scale, x.zero_point, w.values, w.scale, w.zero_point, bias, L.scale, L.zero_point,
               L.stride, L.padding, L.dilation, L.groups, L.relu, L.arithmetic, w.axis is not None, L.dtype.name,
               None if L.depthwise_saturation == "auto" else L.depthwise_saturation == "on", rounding=L.rounding)
    return RQ(np.asarray(y), L.scale, L.zero_point)


def _max_pool(L, x):
    return RQ(R.max_pool(x.values, L.kernel_size, L.stride, L.padding, L.dilation, L.ceil_mode), x.scale, x.zero_point)


def _avg_pool(L, x):
    return RQ(R.avg_pool(x.values, x.zero_point, L.kernel_size, L.stride, L.padding, L.ceil_mode, L.count_include_pad,
                         L.divisor_override, L.path, L.vector_channels, _dt(x), x.scale), x.scale, x.zero_point)


ORACLE = {
    "QuantizedConv": _conv,
    "MaxPool": _max_pool,
    "AvgPool": _avg_pool,
    "Quantize": lambda L, x: RQ(R.quantize_per_tensor(x, L.scale, L.zero_point, L.dtype), L.scale, L.zero_point),
    "Dequantize": lambda L, q: R.dequantize(q.values, q.scale, q.zero_point),
    "Identity": lambda L, x: x,
    "ReLU": _relu,
    "ReLU6": _bounded(lambda L: None, lambda L: 6.0),
    "Hardtanh": _bounded(lambda L: L.min_val, lambda L: L.max_val),
    "Flatten": _view(_flatten),
    "QuantizedLinear": _linear,
    "DynamicQuantizedLinear": _dynamic,
    "QuantizedAdd": _qadd,
    "QuantizedMul": _qmul,
    "QuantizedAddScalar": _scalar(R.add_scalar),
    "QuantizedMulScalar": _scalar(R.mul_scalar),
    "QuantizedCat": _qcat,
    "Add": lambda L, a, b: (lambda y: np.maximum(y, f32(0)) if L.relu else y)(np.add(a, b, dtype=np.float32)),
    "Mul": lambda L, a, b: np.multiply(a, b, dtype=np.float32),
    "AddScalar": lambda L, x: np.add(x, f32(L.value), dtype=np.float32),
    "MulScalar": lambda L, x: np.multiply(x, f32(L.value), dtype=np.float32),
    "Cat": _cat,
    "Reshape": _view(_reshape),
    "Squeeze": _view(_squeeze),
    "Unsqueeze": _view(lambda L, v: np.expand_dims(v, L.dim)),
    "Transpose": _view(lambda L, v: np.swapaxes(v, L.dim0, L.dim1)),
    "Permute": _view(lambda L, v: np.transpose(v, L.dims)),
    "Contiguous": _view(lambda L, v: np.ascontiguousarray(v)),
    "Size": lambda L, x: (lambda s: tuple(s) if L.dim is None else s[L.dim])(
        (x.values if isinstance(x, RQ) else x).shape),
    "GetItem": lambda L, t: t[L.index],
    "FloorDiv": lambda L, v: v // L.divisor,
    "Chunk": _view(lambda L, v: _torch_chunk(v, L.chunks, L.dim)[L.index]),
    "AdaptiveAvgPool": lambda L, x: RQ(R.adaptive_avg_pool(x.values, x.zero_point, L.output_size, L.path,
                                                           L.vector_channels, x.values.dtype.name, x.scale),
                                       x.scale, x.zero_point),
    "Hardswish": lambda L, x: RQ(R.hardswish(x.values, x.scale, x.zero_point, L.scale, L.zero_point, L.path,
                                             _body_mask(x.values.shape, L.layout, L.vector_block),
                                             x.values.dtype.name), L.scale, L.zero_point),
    "MeanHW": lambda L, x: RQ((lambda y: y.reshape(y.shape + (1, 1)) if L.keepdim else y)(
        R.mean_hw(x.values, x.scale, x.zero_point, L.path, x.values.dtype.name, L.float_lanes)), x.scale, x.zero_point),
    "Hardsigmoid": lambda L, x: RQ(R.hardsigmoid(x.values, x.scale, x.zero_point, L.path,
                                                 _body_mask(x.values.shape, L.layout, L.vector_block),
                                                 x.values.dtype.name), L.scale, L.zero_point),
    "QuantizedBatchNorm": lambda L, x: RQ(R.batch_norm(x.values, *R.batch_norm_params(
        L.weight, L.bias, L.running_mean, L.running_var, L.eps, x.scale, L.scale), x.zero_point, L.zero_point,
        L.relu, L.vector_block, x.values.dtype.name), L.scale, L.zero_point),
}


def _torch_chunk(v, chunks, dim):
    """torch.chunk's pieces: ceil(size / chunks) long, the last one shorter."""
    step = -(-v.shape[dim] // chunks)
    return np.split(v, range(step, v.shape[dim], step), axis=dim)


def _body_mask(shape, layout, block):
    """One torch thread: the first floor(n / block) * block elements in memory order are vector body."""
    n = int(np.prod(shape))
    order = np.arange(n).reshape(shape)
    if layout == "nhwc" and len(shape) == 4:
        order = np.arange(n).reshape(shape[0], shape[2], shape[3], shape[1]).transpose(0, 3, 1, 2)
    return order < (n // block * block if block else 0)


def run(model, x):
    """model's output on x (float32), every node from ORACLE."""
    vals = {model.inputs[0]: np.asarray(x, np.float32)}
    for n in model.nodes:
        r = ORACLE[type(n.layer).__name__](n.layer, *[vals[v] for v in n.inputs])
        vals[n.outputs[0]] = r
    y = vals[model.outputs[0]]
    if isinstance(y, RQ):
        return R.dequantize(y.values, y.scale, y.zero_point)
    return np.asarray(y, np.float32)
