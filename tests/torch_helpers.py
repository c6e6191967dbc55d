"""Builders of real torch quantized layers for the oracle tests."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.ao.nn.intrinsic.quantized as nniq  # noqa: E402
import torch.ao.nn.quantized as nnq  # noqa: E402

ENGINES = [e for e in ("x86", "fbgemm", "qnnpack") if e in torch.backends.quantized.supported_engines]


class engine:
    """Context manager pinning torch.backends.quantized.engine."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.name

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.previous


@pytest.fixture(params=ENGINES, name="engine")
def engine_fixture(request):
    """A test runs once per torch quantized engine, pinned while it runs."""
    with engine(request.param):
        yield request.param


def make_linear(rng, k, n, per_channel, relu, has_bias, w_zero_points=True, w_scale=None,
                out_scale=None, out_zero_point=None, bias_scale=1.0):
    """A fresh torch quantized Linear (or LinearReLU) with random integer weights.

    Fresh each time: torch's qnnpack caches requantization constants keyed on the input scale only,
    so mutating module.scale afterwards would give stale results."""
    w_int = rng.integers(-128, 128, (n, k))
    if per_channel:
        scales = torch.from_numpy(rng.uniform(1e-3, 0.05, n) if w_scale is None else np.full(n, w_scale))
        zps = torch.from_numpy(rng.integers(-20, 20, n) if w_zero_points else np.zeros(n, np.int64))
        w = (torch.from_numpy(w_int).double() - zps[:, None]) * scales[:, None]
        wq = torch.quantize_per_channel(w.float(), scales, zps, 0, torch.qint8)
    else:
        scale = float(rng.uniform(1e-3, 0.05)) if w_scale is None else w_scale
        zp = int(rng.integers(-20, 20)) if w_zero_points else 0
        wq = torch.quantize_per_tensor(torch.from_numpy(((w_int - zp) * scale).astype(np.float32)), scale, zp,
                                       torch.qint8)
    bias = torch.from_numpy((rng.standard_normal(n) * bias_scale).astype(np.float32)) if has_bias else None
    m = (nniq.LinearReLU if relu else nnq.Linear)(k, n)
    m.set_weight_bias(wq, bias)
    m.scale = float(rng.uniform(0.01, 0.5)) if out_scale is None else out_scale
    m.zero_point = int(rng.integers(0, 256)) if out_zero_point is None else out_zero_point
    return m


def random_qinput(rng, shape, scale=None, zero_point=None):
    x_int = rng.integers(0, 256, shape).astype(np.uint8)
    scale = float(rng.uniform(0.005, 0.1)) if scale is None else scale
    zp = int(rng.integers(0, 256)) if zero_point is None else zero_point
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_int), scale, zp)
