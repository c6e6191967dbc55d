"""BatchNorm folding as torch's fuse_modules computes it, in numpy float32, bit for bit.

    weight, bias = fold_conv_bn(conv_weight, conv_bias, running_mean, running_var, eps, gamma, beta)
    weight, bias = fold_linear_bn(linear_weight, linear_bias, running_mean, running_var, eps, gamma, beta)

torch 2.13 torch/nn/utils/fusion.py runs each step as one float32 tensor op, so each step here
is one float32 rounding, in the same order:

    conv:    rsqrt  = 1 / sqrt(f32(var + f32(eps)))            (torch.rsqrt: a correctly rounded
                                                                sqrt, then a division)
             weight = w * (gamma * rsqrt)                      (per output channel)
             bias   = ((b - mean) * rsqrt) * gamma + beta
    linear:  s      = gamma * rsqrt
             weight = w * s
             bias   = (b - mean) * s + beta

The two bias formulas round differently (conv multiplies by rsqrt then gamma, linear by their
product), so they are two functions. A missing conv bias is zeros; a BatchNorm without affine
parameters has gamma = 1, beta = 0 (as torch fills them). eps is a Python float that torch's
tensor + scalar rounds to float32 before adding. No fused multiply-add anywhere: each step is a
separate torch op.
"""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def _vector(a, n, name, default=None):
    if a is None:
        if default is None:
            raise ValueError("%s: is required" % name)
        return np.full(n, default, f32)
    a = np.asarray(a)
    if a.dtype != np.float32:
        raise TypeError("%s: expected float32 values (torch folds in the parameters' dtype), got %s"
                        % (name, a.dtype))
    if a.shape != (n,):
        raise ValueError("%s: expected shape (%d,), got %s" % (name, n, a.shape))
    return a


def _check(weight, bias, mean, var, eps, gamma, beta, channel_axis):
    w = np.asarray(weight)
    if w.dtype != np.float32:
        raise TypeError("weight: expected float32 values, got %s" % w.dtype)
    if w.ndim < 2:
        raise ValueError("weight: expected at least 2 dimensions, got shape %s" % (w.shape,))
    n = w.shape[channel_axis]
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError("eps: expected a finite float >= 0, got %r" % (eps,))
    mean = _vector(mean, n, "running_mean")
    var = _vector(var, n, "running_var")
    if np.any(var < 0) or not np.all(np.isfinite(var)):
        raise ValueError("running_var: expected finite values >= 0")
    return (w, _vector(bias, n, "bias", 0.0), mean, var, _vector(gamma, n, "gamma", 1.0),
            _vector(beta, n, "beta", 0.0))


def rsqrt_var(running_var, eps):
    """torch.rsqrt(running_var + eps) in float32."""
    with np.errstate(divide="ignore"):        # var + eps == 0 gives inf, as torch does
        return (f32(1) / np.sqrt((running_var + f32(eps)).astype(f32))).astype(f32)


def fold_conv_bn(weight, bias, running_mean, running_var, eps, gamma=None, beta=None, transpose=False):
    """torch.nn.utils.fusion.fuse_conv_bn_weights: (float32 weight, float32 bias [C_out]).
    weight: [C_out, C_in/groups, *kernel] (transpose: [C_in, C_out/groups, *kernel], a
    ConvTranspose weight, whose output channels are axis 1)."""
    axis = 1 if transpose else 0
    w, b, mean, var, gamma, beta = _check(weight, bias, running_mean, running_var, eps, gamma, beta, axis)
    rs = rsqrt_var(var, eps)
    shape = [1] * w.ndim
    shape[axis] = -1
    with np.errstate(invalid="ignore", over="ignore"):     # inf / nan where torch gives them
        folded_w = (w * (gamma * rs).astype(f32).reshape(shape)).astype(f32)
        folded_b = ((((b - mean).astype(f32) * rs).astype(f32) * gamma).astype(f32) + beta).astype(f32)
    return folded_w, folded_b


def fold_linear_bn(weight, bias, running_mean, running_var, eps, gamma=None, beta=None):
    """torch.nn.utils.fusion.fuse_linear_bn_weights: (float32 weight [N, K], float32 bias [N])."""
    w, b, mean, var, gamma, beta = _check(weight, bias, running_mean, running_var, eps, gamma, beta, 0)
    if w.ndim != 2:
        raise ValueError("weight: expected a Linear weight [N, K], got shape %s" % (w.shape,))
    with np.errstate(invalid="ignore", over="ignore"):
        s = (gamma * rsqrt_var(var, eps)).astype(f32)
        folded_w = (w * s[:, None]).astype(f32)
        folded_b = (((b - mean).astype(f32) * s).astype(f32) + beta).astype(f32)
    return folded_w, folded_b
