"""Builders of real torch quantized convolutions for the oracle tests."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.ao.nn.intrinsic.quantized as nniq  # noqa: E402
import torch.ao.nn.quantized as nnq  # noqa: E402

f32 = np.float32


def make_conv(rng, cin, cout, kernel, dims=2, groups=1, per_channel=True, symmetric=True, bias=True,
              relu=False, stride=1, padding=0, dilation=1, w_range=(-128, 128), bias_scale=1.0,
              out_scale=None, out_zero_point=None):
    """A fresh torch quantized Conv1d / Conv2d (or ConvReLU) with random integer weights."""
    cls = {(1, False): nnq.Conv1d, (1, True): nniq.ConvReLU1d,
           (2, False): nnq.Conv2d, (2, True): nniq.ConvReLU2d}[(dims, relu)]
    m = cls(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)
    kshape = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
    w_int = rng.integers(w_range[0], w_range[1], (cout, cin // groups) + kshape)
    if per_channel:
        sc = torch.from_numpy(rng.uniform(1e-3, 0.05, cout).astype(f32).astype(np.float64))
        zp = torch.zeros(cout, dtype=torch.long) if symmetric else torch.from_numpy(rng.choice([-1, 1], cout) * rng.integers(1, 11, cout))
        zb = zp.reshape((-1,) + (1,) * (dims + 1))
        w = (torch.from_numpy(w_int).double() - zb) * sc.reshape((-1,) + (1,) * (dims + 1))
        wq = torch.quantize_per_channel(w.float(), sc, zp, 0, torch.qint8)
    else:
        s = float(f32(rng.uniform(1e-3, 0.05)))
        z = 0 if symmetric else int(rng.choice([-1, 1]) * rng.integers(1, 11))   # never 0: that is symmetric
        wq = torch.quantize_per_tensor(torch.from_numpy(((w_int - z) * s).astype(f32)), s, z, torch.qint8)
    b = torch.from_numpy((rng.standard_normal(cout) * bias_scale).astype(f32)) if bias else None
    m.set_weight_bias(wq, b)
    m.scale = float(f32(rng.uniform(0.01, 0.3))) if out_scale is None else float(out_scale)
    m.zero_point = int(rng.integers(0, 256)) if out_zero_point is None else int(out_zero_point)
    return m


def weight_qparams(m):
    w = m.weight()
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return w.int_repr().numpy(), w.q_per_channel_scales().numpy(), w.q_per_channel_zero_points().numpy(), True
    return w.int_repr().numpy(), np.array([w.q_scale()]), np.array([w.q_zero_point()]), False


def qinput(rng, shape, scale=None, zero_point=None, extremes=0.0):
    """A torch quint8 tensor of random integers; `extremes` of them at 0 or 255."""
    x = rng.integers(0, 256, shape)
    if extremes:
        x = np.where(rng.random(shape) < extremes, rng.choice([0, 255], shape), x)
    scale = float(f32(rng.uniform(0.005, 0.1))) if scale is None else scale
    zp = int(rng.integers(0, 256)) if zero_point is None else zero_point
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(x.astype(np.uint8)), scale, zp)


def reference_conv(m, xq, arithmetic, **kw):
    """fastq.reference.conv for torch module m on torch input xq."""
    from fastq import reference as R
    w, sw, zw, pc = weight_qparams(m)
    b = None if m.bias() is None else m.bias().detach().numpy()
    return R.conv(xq.int_repr().numpy(), xq.q_scale(), xq.q_zero_point(), w, sw, zw, b, m.scale, m.zero_point,
                  stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                  relu=type(m).__name__.startswith("ConvReLU"), arithmetic=arithmetic, per_channel=pc, **kw)
