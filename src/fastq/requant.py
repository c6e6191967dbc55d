"""Requantization modes as data: the per-column constants each epilogue needs.

A mode turns the int32 accumulators of a layer into output integers:
  "fbgemm"  float multiplier, float bias      (torch engines x86 / fbgemm, SPEC section 2)
  "qnnpack" float multiplier, int32 bias      (torch engine qnnpack, SPEC section 3)
  "tflite"  Q31 multiplier + shift, int32 bias (TFLite / gemmlowp / CMSIS-NN, SPEC section 4)
The formulas live in reference.py; this module only lays their constants out for the C
epilogue (one entry per padded output column) and builds the epilogue object.
"""
from __future__ import annotations

import numpy as np

from . import _kernels, reference

MODES = ("fbgemm", "qnnpack", "tflite")


def check_mode(requant):
    if not isinstance(requant, str):
        raise TypeError("requant: expected one of %s, got %r" % (", ".join(MODES), type(requant).__name__))
    if requant not in MODES:
        raise ValueError("requant: expected one of %s, got %r" % (", ".join(MODES), requant))
    return requant


def quantize_multiplier(real):
    """TFLite QuantizeMultiplier: (multiplier, shift) with real = multiplier * 2^(shift - 31)."""
    if isinstance(real, bool) or not isinstance(real, (int, float, np.integer, np.floating)):
        raise TypeError("real: expected a float, got %r" % type(real).__name__)
    if not np.isfinite(real):
        raise ValueError("real: expected a finite float, got %r" % (real,))
    return reference.quantize_multiplier(float(real))


def _padded(values, n_padded, dtype):
    out = np.zeros(max(n_padded, 1), dtype=dtype)
    v = np.asarray(values, dtype=dtype).reshape(-1)
    out[: v.shape[0]] = v
    return out


def tflite_multipliers(x_scale, w_scales, y_scale, per_channel):
    """Per-channel (multiplier, shift) of a TFLite fully connected layer (SPEC section 4)."""
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float64))
    if per_channel:
        reals = np.float64(x_scale) * w_scales / np.float64(y_scale)
    else:
        prod = np.float32(np.float32(x_scale) * np.float32(w_scales[0]))
        reals = np.array([np.float64(prod) / np.float64(np.float32(y_scale))])
    pairs = [reference.quantize_multiplier(r) for r in reals]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def tflite_int_bias(bias, x_scale, w_scales, per_channel):
    """A float bias as int32 with scale s_in * s_w[n] and zero point 0, rounded half away."""
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float64))
    b = np.asarray(bias, dtype=np.float64)
    scale = np.float64(x_scale) * w_scales
    q = np.sign(b) * np.floor(np.abs(b) / scale + 0.5)
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int64)


def build_epilogue(packed, mode, x_scale, x_zero_point, w_scales, per_channel, y_scale,
                   y_zero_point, bias=None, relu=False, int_bias=None, single_rounding=False,
                   out_xor=0):
    """The C epilogue of one layer for one input quantization (x_scale, x_zero_point).

    Returns (epilogue, info) where info holds the per-column constants, for explain/inspection."""
    n = packed.n
    npad = packed.n_padded
    w_scales = np.broadcast_to(np.atleast_1d(np.asarray(w_scales, dtype=np.float64)), (n,)) if per_channel \
        else np.atleast_1d(np.asarray(w_scales, dtype=np.float64))[:1]
    out_min = int(y_zero_point) if relu else 0
    info = {}
    if mode == "fbgemm":
        bias_term, mult = reference.fbgemm_params(x_scale, w_scales, y_scale, bias, per_channel)
        mult = np.broadcast_to(mult, (n,))
        col_offset = packed.col_offsets(int(x_zero_point))
        info.update(mult=mult, bias_term=bias_term)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_FBGEMM, col_offset,
            bias=None if bias_term is None else _padded(bias_term, npad, np.float32),
            scale=_padded(mult, npad, np.float32),
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    elif mode == "qnnpack":
        bq, req = reference.qnnpack_params(x_scale, w_scales, y_scale, bias)
        bq = np.broadcast_to(bq, (n,)) if bias is not None else None
        req = np.broadcast_to(req, (n,))
        col_offset = packed.col_offsets(int(x_zero_point), None if bq is None else bq.astype(np.int32))
        info.update(req=req, int_bias=bq)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_QNNPACK, col_offset, scale=_padded(req, npad, np.float32),
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    elif mode == "tflite":
        mult, shift = tflite_multipliers(x_scale, w_scales, y_scale, per_channel)
        mult = np.broadcast_to(mult, (n,))
        shift = np.broadcast_to(shift, (n,))
        if int_bias is None and bias is not None:
            int_bias = np.broadcast_to(tflite_int_bias(bias, x_scale, w_scales, per_channel), (n,))
        col_offset = packed.col_offsets(int(x_zero_point), None if int_bias is None else np.asarray(int_bias, np.int32))
        info.update(multiplier=mult, shift=shift, int_bias=int_bias)
        ep = _kernels.Epilogue(
            packed, _kernels.EPI_TFLITE, col_offset, multiplier=_padded(mult, npad, np.int32),
            shift=_padded(shift, npad, np.int32), single_rounding=bool(single_rounding),
            out_zero_point=int(y_zero_point), out_min=out_min, out_max=255, out_xor=out_xor)
    else:
        check_mode(mode)
        raise AssertionError("unreachable")
    return ep, info
