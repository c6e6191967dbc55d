"""The explain trace of one quantized batch norm output element: torch's per-channel alpha and
beta step by step (compute_fused_params), then x − z_x, the fused multiply-add, the rounding, the
zero point and the clamp on the path torch's kernel takes for that channel (vector body or scalar
tail). Built from the layer's settings and exact rationals, never from the table; the kernel's
and fastq.reference's values go to trace.checks."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import reference as R
from ..runtime import get_backend
from ._trace import Step, Trace, _f32_step, _fr
from .linear.explain import _check_index

f32 = np.float32


class BatchNormTrace(Trace):
    """Trace of a batch norm element: index (n, c, ...), value x, d = x − z_x, steps, output, checks."""

    def __repr__(self):
        return "<fastq.explain.BatchNormTrace %s [%d, %d] output=%d>" % (self.mode, self.row, self.col, self.output)

    def to_dict(self):
        d = {k: getattr(self, k) for k in ("op", "mode", "layer", "row", "col", "value", "d", "output",
                                            "zero_point", "qmin", "qmax", "relu")}
        d["index"] = [int(v) for v in self.index]
        d["scale"] = float(self.scale)
        d["steps"] = [s.to_dict() for s in self.steps]
        d["checks"] = {k: int(v) for k, v in self.checks.items()}
        return d

    def __str__(self):
        ix = ", ".join(map(str, self.index))
        lines = ["fastq explain: %s, output element [row=%d, col=%d] = y[%s]" % (self.layer, self.row, self.col, ix),
                 "", "1. Input  %s, s = %.9g, z = %d: x = %d, d = x - z = %d" % (
                     self.dtype, self.scale, self.zero_point, self.value, self.d),
                 "", "2. Channel %d's factors, as torch's compute_fused_params computes them:" % self.index[1]]
        lines += [s.line() for s in self.steps if s.stage in ("multiplier", "bias")]
        lines += ["", "3. %s:" % self.header]
        lines += [s.line() for s in self.steps if s.stage not in ("multiplier", "bias")]
        lines += ["", "4. Check: by hand q = %d; fastq.reference q = %d; kernel (backend %s) q = %d -> %s"
                  % (self.output, self.checks["reference"], get_backend(), self.checks["kernel"],
                     "all equal" if self.equal else "MISMATCH")]
        return "\n".join(lines) + "\n"


def _f32_from_f64(stage, name, formula, exact, how):
    """A double operation rounded to float32: the double result (one rounding), then float32."""
    v64 = float(exact)
    return Step(stage, name, formula, exact, f32(v64), "f32", how)


def _params_steps(layer, c, x_scale):
    w, b, m, v = (f32(getattr(layer, n)[c]) for n in ("weight", "bias", "running_mean", "running_var"))
    eps = f32(layer.eps)
    steps = [_f32_step("multiplier", "ve", "var + f32(eps)", _fr(v) + _fr(eps), "float32 sum")]
    sq = f32(np.sqrt(steps[-1].value))
    steps.append(Step("multiplier", "sq", "sqrtf(ve)", None, sq, "f32", "float32 square root (correctly rounded)"))
    steps.append(_f32_from_f64("multiplier", "inv", "1.0 / (double) sq", Fraction(1) / _fr(sq),
                               "double division, rounded to float32"))
    inv = steps[-1].value
    steps.append(_f32_step("multiplier", "iw", "inv * w", _fr(inv) * _fr(w), "float32 product"))
    ratio = float(np.float64(x_scale) / np.float64(layer.scale))
    steps.append(Step("multiplier", "ratio", "(double) s_x / s_y", Fraction(x_scale) / Fraction(layer.scale),
                      ratio, "f64", "double division"))
    steps.append(_f32_from_f64("multiplier", "alpha", "(double) iw * ratio", _fr(steps[-2].value) * _fr(ratio),
                               "double product, rounded to float32"))
    steps.append(_f32_step("bias", "mi", "mean * inv", _fr(m) * _fr(inv), "float32 product"))
    steps.append(_f32_step("bias", "miw", "mi * w", _fr(steps[-1].value) * _fr(w), "float32 product"))
    steps.append(_f32_step("bias", "sh", "b - miw", _fr(b) - _fr(steps[-1].value), "float32 difference"))
    steps.append(_f32_from_f64("bias", "beta", "(double) sh / s_y", _fr(steps[-1].value) / Fraction(layer.scale),
                               "double division, rounded to float32"))
    return steps


def explain_batch_norm(layer, x, row=0, col=0):
    ref = layer.reference(x).values
    shape = ref.shape if ref.ndim > 1 else ref.shape + (1,)
    row = _check_index(row, "row", int(np.prod(shape[:-1])))
    col = _check_index(col, "col", shape[-1])
    idx = tuple(int(v) for v in np.unravel_index(row * shape[-1] + col, ref.shape))
    c = idx[1]
    value, zx, zy = int(x.values[idx]), int(x.zero_point), int(layer.zero_point)
    d = value - zx
    steps = _params_steps(layer, c, x.scale)
    alpha, beta = steps[5].value, steps[-1].value
    qmin, qmax = R._qrange(x.values.dtype.name)
    body = c < R.batch_norm_body_channels(layer.channels, layer.vector_block)
    exact = _fr(alpha) * d + _fr(beta)
    if layer.vector_block:
        steps.append(_f32_step("scale", "t", "fma(alpha, d, beta)", exact, "one fused multiply-add (one rounding)"))
    else:
        steps.append(_f32_step("scale", "ad", "alpha * d", _fr(alpha) * d, "float32 product (no fma)"))
        steps.append(_f32_step("scale", "t", "ad + beta", _fr(steps[-1].value) + _fr(beta), "float32 sum"))
    t = steps[-1].value
    # the integer conversion: in range, round half to even; beyond it, what the kernel's instruction gives
    ref_q = int(ref[idx])
    if np.isfinite(t) and abs(float(t)) < 2.0**31 - 256:
        r = int(np.rint(np.float64(t)))
        steps.append(Step("round", "r", "rne(t)", _fr(t), r, "int", "round half to even (%s)" % (
            "cvtps2dq" if body else "lrintf")))
        v = r + zy
        steps.append(Step("zero_point", "r+z", "%d + %d" % (r, zy), None, v, "int", "zero point added after rounding"))
        q = min(max(v, qmin), qmax)
        steps.append(Step("clamp", "q", "clamp(%d, %d, %d)" % (v, qmin, qmax), None, q, "int", "clamped to the dtype"))
    else:
        if body:
            q = int(R._quantize_body(np.array([t], np.float32), zy, qmin, qmax, clip_top=True)[0])
        else:
            q = min(max(int(np.rint(np.float64(t))) + zy, qmin), qmax) if abs(float(t)) < 2.0**63 else qmin
        steps.append(Step("clamp", "q", "saturate(t)", None, q, "int",
                          "beyond int32: %s" % ("min(t, 2^31 - 128), cvtps2dq, wrapping + z, clamp" if body
                                                else "lrintf (INT64_MIN outside int64 or NaN), + z, clamp")))
    if layer.relu:
        q = max(q, zy)
        steps.append(Step("relu", "q", "max(q, %d)" % zy, None, q, "int", "BNReLU: max with the output zero point"))
    steps.append(Step("output", "y", "q", None, q, "int", ""))
    mode = "vector body" if body else "scalar tail"
    header = "torch's q_batch_norm_kernel, %s (channel %d of %d; %s)" % (
        mode, c, layer.channels, {64: "AVX-512 blocks of 64", 32: "AVX2 blocks of 8", 0: "no AVX"}[layer.vector_block])
    t_ = BatchNormTrace(op="BatchNorm", mode=mode, layer=repr(layer), row=row, col=col, index=idx, value=value, d=d,
                        steps=steps, output=int(q), zero_point=zx, scale=float(x.scale), dtype=x.values.dtype.name,
                        qmin=qmin, qmax=qmax, relu=bool(layer.relu), header=header, kind="batchnorm",
                        _pre_round=exact)
    t_.checks = {"reference": ref_q, "kernel": int(layer(x).values[idx])}
    return t_
