"""Quantized convolution: fastq.reference.conv against torch 2.13, engine pinned, bit for bit.

Pins (docs/ARITHMETIC.md §18): which backend torch packs an x86 convolution for (oneDNN when
groups <= 100, weights symmetric, output_padding 0, on an AVX512-VNNI CPU), oneDNN's float32
requantization steps, FBGEMM's (the Linear epilogue) and its saturating int16 pairs in the
depthwise kernel, QNNPACK's int32 bias and float requantization."""
import numpy as np
import pytest

from conv_helpers import make_conv, qinput, reference_conv, weight_qparams, f32
from torch_helpers import engine

torch = pytest.importorskip("torch")
from fastq import reference as R  # noqa: E402
import fastq  # noqa: E402

HAS_VNNI = "avx512vnni" in fastq.backends()


def _random_geometry(rng, depthwise=False, max_groups=4):
    dims = int(rng.choice([1, 2]))
    k = int(rng.choice([1, 2, 3, 5]))
    if depthwise:
        g = int(rng.choice([8, 16, 24]))
        cin, cout = g, g * int(rng.choice([1, 2]))
        dims = 2
    else:
        g = int(rng.integers(1, max_groups + 1))
        cin, cout = g * int(rng.integers(1, 6)), g * int(rng.integers(1, 6))
    kernel = k if dims == 1 else (k, int(rng.choice([k, 1, 3])))
    stride = int(rng.choice([1, 2])) if dims == 1 else (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
    pad = int(rng.integers(0, k)) if not depthwise else (k - 1) // 2
    dil = 1 if depthwise else int(rng.choice([1, 1, 2]))
    return dims, cin, cout, kernel, g, stride, pad, dil


def _run_random(rng, eng, arithmetic, n_layers, symmetric, depthwise=False, extremes=0.0, per_channel=None):
    total = bad = 0
    with engine(eng):
        for i in range(n_layers):
            dims, cin, cout, kernel, g, stride, pad, dil = _random_geometry(rng, depthwise)
            m = make_conv(rng, cin, cout, kernel, dims=dims, groups=g,
                          per_channel=bool(i % 2) if per_channel is None else per_channel,
                          symmetric=symmetric, bias=i % 5 != 0, relu=i % 3 == 0, stride=stride, padding=pad,
                          dilation=dil)
            span = dil * (max(np.atleast_1d(kernel)) - 1) + 1
            size = (2, cin) + tuple(int(rng.integers(span, span + 8)) for _ in range(dims))
            xq = qinput(rng, size, extremes=extremes)
            y = m(xq).int_repr().numpy()
            q = reference_conv(m, xq, arithmetic)
            assert q.shape == y.shape
            bad += int((q != y).sum())
            total += y.size
    return bad, total


@pytest.mark.skipif(not HAS_VNNI, reason="torch packs x86 convolutions for oneDNN only on AVX512-VNNI CPUs")
def test_x86_symmetric_conv_is_onednn(rng):
    bad, total = _run_random(rng, "x86", "onednn", 40, symmetric=True)
    assert total > 10000 and bad == 0


@pytest.mark.parametrize("eng", ["fbgemm", "x86"])
def test_fbgemm_conv_equals_linear_epilogue(rng, eng):
    # engine x86 with asymmetric weights packs for FBGEMM (should_use_onednn_quant is false)
    bad, total = _run_random(rng, eng, "fbgemm", 40, symmetric=False)
    assert total > 10000 and bad == 0


def test_qnnpack_conv(rng):
    bad, total = _run_random(rng, "qnnpack", "qnnpack", 30, symmetric=False)
    bad2, total2 = _run_random(rng, "qnnpack", "qnnpack", 10, symmetric=False, depthwise=True, extremes=0.7)
    assert bad == 0 and bad2 == 0 and total > 5000


@pytest.mark.parametrize("eng", ["fbgemm", "x86"])
def test_fbgemm_depthwise_saturates_int16_pairs(rng, eng):
    """FBGEMM's depthwise kernel sums pairs of raw uint8 x int8 products in int16 (vpmaddubsw);
    with inputs at 0/255 and full-range weights torch's integers are far from the exact sum."""
    total = bad = differs = 0
    with engine(eng):
        for i in range(16):
            g = int(rng.choice([8, 16, 32]))
            k = int(rng.choice([3, 5]))
            m = make_conv(rng, g, g * int(rng.choice([1, 2])), k, groups=g, per_channel=bool(i % 2),
                          symmetric=False, padding=(k - 1) // 2, stride=int(rng.choice([1, 2])), relu=i % 3 == 0)
            xq = qinput(rng, (1, g, 9, 9), extremes=0.7)
            y = m(xq).int_repr().numpy()
            q = reference_conv(m, xq, "fbgemm")
            exact = reference_conv(m, xq, "fbgemm", depthwise_saturation=False)
            bad += int((q != y).sum())
            differs += int((exact != y).sum())
            total += y.size
    assert bad == 0 and differs > 100, (bad, differs, total)


@pytest.mark.skipif(not HAS_VNNI, reason="oneDNN packing needs AVX512-VNNI")
def test_x86_depthwise_groups_over_100_is_fbgemm(rng):
    """groups > 100 (MobileNet's wide depthwise layers): FBGEMM even with symmetric weights, and
    so the int16 pair saturation."""
    with engine("x86"):
        m = make_conv(rng, 104, 104, 3, groups=104, per_channel=True, symmetric=True, padding=1)
        xq = qinput(rng, (1, 104, 6, 6), extremes=0.7)
        y = m(xq).int_repr().numpy()
    assert np.array_equal(reference_conv(m, xq, "fbgemm"), y)
    assert not np.array_equal(reference_conv(m, xq, "onednn"), y)
    assert not R.onednn_packs_conv("x86", np.zeros(104), 104)
    assert R.onednn_packs_conv("x86", np.zeros(100), 100)
    assert not R.onednn_packs_conv("x86", np.array([0, 1]), 1)
    assert not R.onednn_packs_conv("fbgemm", np.zeros(4), 1)


def _near_tie_layer(rng, eng, per_channel, relu, cout=64):
    with engine(eng):       # the engine at packing time (set_weight_bias) decides the backend
        return _near_tie_layer_packed(rng, per_channel, relu, cout)


def _near_tie_layer_packed(rng, per_channel, relu, cout):
    """A 1x1 convolution on one input channel, all 256 input values, whose bias puts one output of
    every channel next to k + 0.5 (the output scale spreads the rest over 0..255)."""
    m = make_conv(rng, 1, cout, 1, per_channel=per_channel, symmetric=True, bias=True, relu=relu)
    w, sw, zw, _ = weight_qparams(m)
    sx = float(f32(rng.uniform(0.005, 0.1)))
    zx = int(rng.integers(0, 256))
    sy = float(f32(rng.uniform(0.3, 1.0) * 128 * 128 * sx * float(np.mean(sw)) / 255 * 2))
    zy = int(rng.integers(0, 60))
    xq = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16), sx, zx)
    pick = rng.integers(0, 256, cout)
    acc = (pick - zx) * w.reshape(cout)
    target = rng.integers(5, 250, cout) + 0.5 - zy
    sw_full = np.broadcast_to(sw, (cout,))
    bias = (target * sy - acc * sx * sw_full).astype(f32)
    wq = m.weight()
    m = make_conv(rng, 1, cout, 1, per_channel=per_channel, symmetric=True, bias=True, relu=relu,
                  out_scale=sy, out_zero_point=zy)
    m.set_weight_bias(wq, torch.from_numpy(bias))
    return m, xq, m(xq).int_repr().numpy()


@pytest.mark.skipif(not HAS_VNNI, reason="oneDNN packing needs AVX512-VNNI")
def test_onednn_requantization_near_ties(rng):
    """Constructed near ties: torch equals the oneDNN steps everywhere; each simpler reading
    (one combined scale f32(sx * sw), or sx itself as the source scale) misses some."""
    bad = combined_bad = plain_sx_bad = 0
    for i in range(24):
        m, xq, y = _near_tie_layer(rng, "x86", per_channel=bool(i % 2), relu=i % 4 == 0)
        q = reference_conv(m, xq, "onednn")
        bad += int((q != y).sum())
        w, sw, zw, pc = weight_qparams(m)
        acc = R.conv_acc(xq.int_repr().numpy(), xq.q_zero_point(), w, zw, (1, 1), (0, 0), (1, 1), 1)
        a = np.moveaxis(acc, 1, -1).astype(f32)
        b = m.bias().detach().numpy()
        for variant in ("combined", "plain_sx"):
            sx = f32(xq.q_scale())
            sws = np.broadcast_to(sw.astype(f32), (a.shape[-1],))
            if variant == "combined":
                t = (a * (sx * sws).astype(f32)).astype(f32)
            else:
                t = ((a * sx).astype(f32) * sws).astype(f32)
            t = (t + b).astype(f32)
            if type(m).__name__ == "ConvReLU2d":
                t = np.maximum(t, f32(0))
            t = ((t * f32(1 / m.scale)).astype(f32) + f32(m.zero_point)).astype(f32)
            alt = np.moveaxis(np.clip(np.rint(t), 0, 255), -1, 1)
            if variant == "combined":
                combined_bad += int((alt != y).sum())
            else:
                plain_sx_bad += int((alt != y).sum())
    assert bad == 0
    assert combined_bad > 0 and plain_sx_bad >= 0, (combined_bad, plain_sx_bad)


@pytest.mark.parametrize("eng,arithmetic", [("fbgemm", "fbgemm"), ("qnnpack", "qnnpack")])
def test_requantization_near_ties(rng, eng, arithmetic):
    bad = total = 0
    for i in range(16):
        m, xq, y = _near_tie_layer(rng, eng, per_channel=bool(i % 2), relu=i % 4 == 0)
        q = reference_conv(m, xq, arithmetic)
        bad += int((q != y).sum())
        total += y.size
    assert bad == 0 and total > 0


def test_conv1d_is_conv2d_of_height_one(rng):
    x = rng.integers(0, 256, (2, 4, 11))
    w = rng.integers(-128, 128, (6, 2, 3))
    a1 = R.conv_acc(x, 7, w, 0, (2,), (1,), (2,), 2)
    a2 = R.conv_acc(x[:, :, None, :], 7, w[:, :, None, :], 0, (1, 2), (0, 1), (1, 2), 2)
    assert np.array_equal(a1, a2[:, :, 0, :])
