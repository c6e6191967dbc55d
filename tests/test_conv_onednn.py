"""The oneDNN requantization (epilogue kind "onednn": torch x86 convolutions packed for oneDNN,
CONV_FINDINGS F2) against a numpy model of F2 written here, on every backend, every channel tail
(GEMM panels and lanes, depthwise blocks), uint8 and int8 output, per-channel and per-tensor
weight scales, bias or none, fused ReLU; with constructed near ties (t next to .5, exact .5,
bias cancelling the scaled accumulator). Where torch is importable, against torch's x86 engine
with a oneDNN-packed conv (symmetric weights, groups <= 100) on this CPU."""
import numpy as np
import pytest

from fastq import _kernels as K

from test_conv_kernels import conv_acc, rand

f32 = np.float32


# ------------------------------------------------------------------------------ oracle (F2)
def onednn_requant(acc, x_scale, w_scales, bias, y_scale, y_zero_point, relu, out_dtype):
    """F2 in float32 steps: acc int [N, O, ...] (O on axis 1) -> the stored integers.
    y_zero_point in the output's own terms; bias None or float32 [O]."""
    o = acc.shape[1]
    shape = (1, o) + (1,) * (acc.ndim - 2)
    s_src = f32(1.0) / f32(1.0 / x_scale)                       # 1/sx to float, inverted in float
    sw = np.broadcast_to(np.asarray(w_scales, f32), (o,)).reshape(shape)
    y = (acc.astype(f32) * s_src) * sw                          # two float32 roundings, no fma
    if bias is not None:
        y = y + np.asarray(bias, f32).reshape(shape)
    if relu:
        y = np.maximum(y, f32(0))                               # on the float, before the output scale
    # torch gives oneDNN f32(1/sy); oneDNN inverts it in float (the dst scale d) and multiplies
    # by f32(1/d) (F2b: f32(1/sy) itself misses 0.1 % of near ties against torch)
    d = f32(1.0) / f32(1.0 / y_scale)
    t = (y * (f32(1.0) / d)) + f32(y_zero_point)
    lo, hi = (-128, 127) if out_dtype == np.int8 else (0, 255)
    return np.clip(np.rint(t), lo, hi).astype(np.int64)         # rint: half to even


def alternative_requant(acc, x_scale, w_scales, bias, y_scale, y_zero_point, out_dtype):
    """What a single combined scale in double would give (the sensitivity check: the
    constructed cases must separate it from F2)."""
    o = acc.shape[1]
    shape = (1, o) + (1,) * (acc.ndim - 2)
    sw = np.broadcast_to(np.asarray(w_scales, np.float64), (o,)).reshape(shape)
    y = acc * (x_scale * sw) + (0 if bias is None else np.asarray(bias, np.float64).reshape(shape))
    lo, hi = (-128, 127) if out_dtype == np.int8 else (0, 255)
    return np.clip(np.rint(y / y_scale + y_zero_point), lo, hi).astype(np.int64)


def near_tie_bias(acc_pixel, x_scale, w_scales, y_scale, zy, rng):
    """Per channel n, a float32 bias putting pixel acc_pixel[n]'s t at k + 1/2 (+ a few ulps
    either way, or exactly): the scaled acc is cancelled down to the tie by the bias."""
    s_src = f32(1.0) / f32(1.0 / x_scale)
    y = (acc_pixel.astype(f32) * s_src) * np.asarray(w_scales, f32)
    k = rng.integers(-20, 20, acc_pixel.shape[0]) + 0.5
    target = (k * y_scale).astype(f32)                  # y whose t is about zy + k
    bias = (target - y).astype(f32)
    return _ulp_steps(bias, rng.integers(-3, 4, acc_pixel.shape[0]))


def _ulp_steps(v, steps):
    out = v.copy()
    for i, s in enumerate(steps):
        for _ in range(abs(int(s))):
            out[i] = np.nextafter(out[i], f32(np.inf) if s > 0 else f32(-np.inf))
    return out


def make_case(rng, n, c, h, w, o, groups, k, stride, pad, per_channel, with_bias, relu, out_dtype,
              ties=True):
    x = rand(rng, (n, c, h, w), np.uint8)
    zx = int(rng.integers(0, 256))
    wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
    acc = conv_acc(x, zx, wq, 0, groups, stride, pad)
    x_scale = float(rng.uniform(0.005, 0.05))
    w_scales = rng.uniform(0.001, 0.02, o) if per_channel else np.full(o, rng.uniform(0.001, 0.02))
    y_scale = float(rng.uniform(0.05, 0.5))
    olo = -128 if out_dtype == np.int8 else 0
    zy = int(rng.integers(40, 216)) + olo
    bias = None
    if with_bias:
        if ties:   # pixel 0's t lands next to a .5 for every channel
            bias = near_tie_bias(acc[0, :, 0, 0], x_scale, w_scales.astype(f32), y_scale, zy, rng)
        else:
            bias = rng.normal(0, 2, o).astype(f32)
    return x, zx, wq, acc, x_scale, w_scales, bias, y_scale, zy


def run_fastq(x, zx, wq, groups, stride, pad, x_scale, w_scales, bias, y_scale, zy, relu, out_dtype,
              path="auto", per_channel=True):
    cw = K.ConvWeights(wq, 0, groups)
    ep = cw.epilogue(zx, np.uint8, kind="onednn", x_scale=x_scale, out_scale=y_scale,
                     scale=w_scales.astype(f32) if per_channel else f32(w_scales[0]), bias=bias,
                     out_zero_point=zy, out_min=zy if relu else None, out_dtype=out_dtype, path=path)
    return K.conv2d(x, ep, stride, pad, 1)


# ------------------------------------------------------------------ every tail, every backend
TAIL_CASES = [  # n, c, h, w, o, groups, k, stride, pad, path
    (1, 5, 4, 5, 1, 1, (1, 1), (1, 1), (0, 0), "gemm"),
    (2, 7, 5, 6, 9, 1, (3, 3), (1, 1), (1, 1), "gemm"),        # an 8-lane tail
    (1, 4, 6, 3, 17, 1, (1, 1), (1, 1), (0, 0), "gemm"),       # a 16-lane tail
    (1, 6, 7, 7, 63, 3, (3, 3), (2, 2), (1, 1), "gemm"),
    (1, 3, 9, 9, 64, 1, (3, 3), (2, 2), (1, 1), "gemm"),       # one whole panel
    (1, 8, 5, 4, 130, 1, (1, 1), (1, 1), (0, 0), "gemm"),      # 3 panels, the last of 2 columns
    (1, 9, 6, 11, 9, 9, (3, 3), (1, 1), (1, 1), "depthwise"),
    (2, 33, 7, 5, 33, 33, (3, 3), (2, 2), (1, 1), "depthwise"),
    (1, 70, 5, 9, 70, 70, (5, 5), (1, 2), (2, 2), "depthwise"),
    (1, 8, 6, 6, 16, 8, (3, 3), (1, 1), (1, 1), "depthwise"),  # channel multiplier 2
]


@pytest.mark.parametrize("case", TAIL_CASES)
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
def test_onednn_every_tail(backend, rng, case, out_dtype):
    n, c, h, w, o, groups, k, stride, pad, path = case
    for per_channel, with_bias, relu in ((True, True, False), (False, True, True), (True, False, True),
                                         (False, False, False)):
        x, zx, wq, acc, sx, sws, bias, sy, zy = make_case(rng, n, c, h, w, o, groups, k, stride, pad,
                                                          per_channel, with_bias, relu, out_dtype)
        got = run_fastq(x, zx, wq, groups, stride, pad, sx, sws, bias, sy, zy, relu, out_dtype, path,
                        per_channel)
        expect = onednn_requant(acc, sx, sws, bias, sy, zy, relu, out_dtype)
        assert got.dtype == out_dtype and got.shape == expect.shape
        assert np.array_equal(got.astype(np.int64), expect), (case, per_channel, with_bias, relu)


def test_onednn_near_ties_decide(backend, rng):
    """Many layers whose pixel 0 sits at (or an ulp or two off) a .5 after bias cancellation:
    F2 must hold on every one, and a combined-scale double computation must disagree on some
    (else the construction would not test the rounding order)."""
    differ = 0
    for trial in range(40):
        out_dtype = np.int8 if trial % 2 else np.uint8
        x, zx, wq, acc, sx, sws, bias, sy, zy = make_case(rng, 1, 6, 3, 3, 70, 1, (1, 1), (1, 1), (0, 0),
                                                          True, True, False, out_dtype)
        got = run_fastq(x, zx, wq, 1, (1, 1), (0, 0), sx, sws, bias, sy, zy, False, out_dtype)
        expect = onednn_requant(acc, sx, sws, bias, sy, zy, False, out_dtype)
        assert np.array_equal(got.astype(np.int64), expect), trial
        differ += int((alternative_requant(acc, sx, sws, bias, sy, zy, out_dtype) != expect).sum())
    assert differ > 0


def test_onednn_exact_ties_round_to_even(backend):
    """acc * sx * sw / sy exactly k + 1/2 (powers of two): rne in zy + value, so ties go to the
    even neighbour of the sum (zy odd flips them), for uint8 and int8 output."""
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    wq = np.ones((2, 1, 1, 1), np.int8)
    wq[1] = -1
    for out_dtype, zy in ((np.uint8, 128), (np.uint8, 127), (np.int8, 0), (np.int8, -1)):
        got = run_fastq(x, 128, wq, 1, 1, 0, 0.5, np.array([0.25, 0.25]), None, 0.25, zy, False, out_dtype)
        acc = x.astype(np.int64) - 128
        t = np.concatenate([acc, -acc], axis=1) * 0.5 + zy      # exact in float32
        lo, hi = (-128, 127) if out_dtype == np.int8 else (0, 255)
        assert np.array_equal(got.astype(np.int64), np.clip(np.rint(t), lo, hi).astype(np.int64))
        # the ties really are ties: half of the odd acc values round down
        odd = (acc % 2 != 0)
        assert (np.rint(t[:, :1][odd]) < t[:, :1][odd]).any() and (np.rint(t[:, :1][odd]) > t[:, :1][odd]).any()


def test_onednn_saturates_in_float(backend):
    """A huge t saturates (oneDNN clamps in float before the conversion) instead of wrapping."""
    x = np.full((1, 1, 2, 2), 255, np.uint8)
    x[0, 0, 1, 1] = 0
    wq = np.full((3, 1, 1, 1), 127, np.int8)
    wq[1] = -127
    for out_dtype in (np.uint8, np.int8):
        got = run_fastq(x, 0, wq, 1, 1, 0, 1e6, np.array([1e6, 1e6, 1e-30]), None, 1e-6, 0, False, out_dtype)
        acc = conv_acc(x, 0, wq, 0, 1)
        expect = onednn_requant(acc, 1e6, np.array([1e6, 1e6, 1e-30]), None, 1e-6, 0, False, out_dtype)
        assert np.array_equal(got.astype(np.int64), expect)
        hi = 127 if out_dtype == np.int8 else 255
        assert got[0, 0, 0, 0] == hi and got[0, 1, 0, 0] == hi - 255


def test_onednn_errors():
    cw = K.ConvWeights(np.ones((2, 1, 1, 1), np.int8), 0)
    with pytest.raises(TypeError, match="x_scale"):
        cw.epilogue(0, kind="onednn", scale=0.1, out_scale=0.1)
    with pytest.raises(ValueError, match="out_scale"):
        cw.epilogue(0, kind="onednn", scale=0.1, x_scale=0.1, out_scale=-1.0)
    with pytest.raises(ValueError, match="scale: required"):
        cw.epilogue(0, kind="onednn", x_scale=0.1, out_scale=0.1)
    with pytest.raises(ValueError, match="kind"):
        cw.epilogue(0, kind="onedn")
    with pytest.raises(ValueError, match="only for kind 'onednn'"):
        cw.epilogue(0, kind="fbgemm", scale=0.1, bias=0.0, x_scale=0.1)
    assert cw.epilogue(0, kind=K.EPI_ONEDNN, scale=0.1, x_scale=0.1, out_scale=0.1).kind == K.EPI_ONEDNN


# ------------------------------------------------------------------ torch x86 (oneDNN-packed)
TORCH_CASES = [  # c, h, w, o, groups, k, stride, pad, per_channel, bias, relu
    (3, 12, 12, 8, 1, (3, 3), (2, 2), (1, 1), True, True, True),      # MobileNet's stem
    (8, 9, 9, 8, 8, (3, 3), (1, 1), (1, 1), True, True, False),       # depthwise, groups 8
    (16, 7, 7, 16, 16, (3, 3), (2, 2), (1, 1), False, True, True),
    (8, 6, 6, 16, 1, (1, 1), (1, 1), (0, 0), True, False, False),     # pointwise, no bias
    (16, 8, 8, 16, 1, (3, 3), (1, 1), (1, 1), True, True, True),      # ResNet-8's 16 -> 16
    (6, 7, 5, 10, 2, (3, 1), (1, 2), (1, 0), False, False, True),
    (96, 5, 5, 96, 96, (3, 3), (1, 1), (1, 1), True, True, False),    # groups <= 100: still oneDNN
]


@pytest.mark.parametrize("case", TORCH_CASES)
def test_onednn_matches_torch_x86(backend, rng, case):
    torch = pytest.importorskip("torch")
    from torch.ao.nn.intrinsic.quantized import ConvReLU2d
    from torch.ao.nn.quantized import Conv2d
    if "x86" not in torch.backends.quantized.supported_engines:
        pytest.skip("torch without the x86 engine")
    c, h, w, o, groups, k, stride, pad, per_channel, with_bias, relu = case
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"        # packing time decides (F6)
    try:
        for trial in range(3):
            x, zx, wq, acc, sx, sws, bias, sy, zy = make_case(rng, 2, c, h, w, o, groups, k, stride, pad,
                                                              per_channel, with_bias, relu, np.uint8,
                                                              ties=trial > 0)
            cls = ConvReLU2d if relu else Conv2d
            m = cls(c, o, k, stride=stride, padding=pad, groups=groups, bias=with_bias)
            wt = torch.from_numpy(wq.astype(np.float64))
            if per_channel:
                qw = torch.quantize_per_channel((wt * torch.from_numpy(sws)[:, None, None, None]).float(),
                                                torch.from_numpy(sws), torch.zeros(o, dtype=torch.long), 0,
                                                torch.qint8)
            else:
                qw = torch.quantize_per_tensor((wt * float(sws[0])).float(), float(sws[0]), 0, torch.qint8)
            assert np.array_equal(qw.int_repr().numpy(), wq)
            m.set_weight_bias(qw, None if bias is None else torch.from_numpy(bias))
            m.scale, m.zero_point = sy, zy
            xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), sx, zx)
            expect = m(xq).int_repr().numpy().astype(np.int64)
            # torch's weight scales are doubles; oneDNN gets them as float
            got = run_fastq(x, zx, wq, groups, stride, pad, sx, sws, bias, sy, zy, relu, np.uint8,
                            per_channel=per_channel)
            assert np.array_equal(got.astype(np.int64), expect), (case, trial,
                                                                  int((got != expect).sum()))
    finally:
        torch.backends.quantized.engine = previous


def literal_f2_requant(acc, x_scale, w_scales, bias, y_scale, y_zero_point):
    """F2 with the output reciprocal f32(1/sy) taken as is (what F2b corrects)."""
    o = acc.shape[1]
    shape = (1, o) + (1,) * (acc.ndim - 2)
    y = (acc.astype(f32) * (f32(1.0) / f32(1.0 / x_scale))) * np.asarray(w_scales, f32).reshape(shape)
    y = y + np.asarray(bias, f32).reshape(shape)
    return np.clip(np.rint(y * f32(1.0 / y_scale) + f32(y_zero_point)), 0, 255).astype(np.int64)


def test_onednn_output_reciprocal_torch(rng):
    """F2b pinned against torch: output scales whose float reciprocal does not survive the float
    round trip (f32(1/sy) != f32(1/f32(1/f32(1/sy)))), near ties on every channel of 1x1 and
    depthwise layers: fastq equals torch, and the literal f32(1/sy) differs on some point."""
    torch = pytest.importorskip("torch")
    from torch.ao.nn.quantized import Conv2d
    if "x86" not in torch.backends.quantized.supported_engines:
        pytest.skip("torch without the x86 engine")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    literal_differs = 0
    try:
        for trial in range(16):
            c, o, groups, k, pad = (8, 64, 1, (1, 1), (0, 0)) if trial % 2 else (32, 32, 32, (3, 3), (1, 1))
            x, zx, wq, acc, sx, sws, _, sy, zy = make_case(rng, 1, c, 4, 4, o, groups, k, (1, 1), pad,
                                                           True, False, False, np.uint8)
            while True:
                sy = float(rng.uniform(0.05, 0.5))
                r = f32(1.0 / sy)
                if f32(1.0) / (f32(1.0) / r) != r:
                    break
            bias = near_tie_bias(acc[0, :, 1, 2], sx, sws.astype(f32), sy, zy, rng)
            m = Conv2d(c, o, k, padding=pad, groups=groups)
            qw = torch.quantize_per_channel(
                (torch.from_numpy(wq.astype(np.float64)) * torch.from_numpy(sws)[:, None, None, None]).float(),
                torch.from_numpy(sws), torch.zeros(o, dtype=torch.long), 0, torch.qint8)
            m.set_weight_bias(qw, torch.from_numpy(bias))
            m.scale, m.zero_point = sy, zy
            expect = m(torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), sx, zx)).int_repr().numpy()
            got = run_fastq(x, zx, wq, groups, (1, 1), pad, sx, sws, bias, sy, zy, False, np.uint8)
            assert np.array_equal(got, expect), (trial, int((got != expect).sum()))
            literal_differs += int((literal_f2_requant(acc, sx, sws, bias, sy, zy) != expect).sum())
    finally:
        torch.backends.quantized.engine = previous
    assert literal_differs > 0
