"""The convolution kernels (csrc/conv/: GEMM convolution, direct depthwise) against a numpy
oracle written here: int64 sums over explicit taps (padding = the input zero point), an
independent model of FBGEMM's saturating depthwise pairs, and fastq.reference's
requantizations on the oracle's acc. Every backend (the `backend` fixture), every tail of the
64-channel blocks and of the 8-pixel tiles."""
import numpy as np
import pytest

from fastq import _kernels as K
from fastq import reference


# ------------------------------------------------------------------------------ oracle
def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def padded(x, zx, ph, pw):
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), zx, np.int64)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def taps(x, zx, kh, kw, stride, pad, dil):
    """{(i, j): x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]} as int64 [N, C, OH, OW]."""
    sh, sw = stride
    xp = padded(x, zx, *pad)
    oh = out_size(x.shape[2], kh, sh, pad[0], dil[0])
    ow = out_size(x.shape[3], kw, sw, pad[1], dil[1])
    return {(i, j): xp[:, :, i * dil[0]: i * dil[0] + sh * (oh - 1) + 1: sh,
                       j * dil[1]: j * dil[1] + sw * (ow - 1) + 1: sw]
            for i in range(kh) for j in range(kw)}


def conv_acc(x, zx, w, zw, groups, stride=(1, 1), pad=(0, 0), dil=(1, 1), int_bias=None):
    """acc[n, o, oh, ow] = sum_{c, i, j} (x_pad - zx)(w - zw[o]) (+ int_bias[o]), int64."""
    o, cg, kh, kw = w.shape
    og = o // groups
    wd = w.astype(np.int64) - np.broadcast_to(np.asarray(zw, np.int64), (o,))[:, None, None, None]
    acc = None
    for (i, j), t in taps(x, zx, kh, kw, stride, pad, dil).items():
        n, c, oh, ow = t.shape
        part = np.einsum("ngchw,goc->ngohw", (t - zx).reshape(n, groups, cg, oh, ow),
                         wd[:, :, i, j].reshape(groups, og, cg))
        acc = part if acc is None else acc + part
    acc = acc.reshape(acc.shape[0], o, acc.shape[3], acc.shape[4])
    if int_bias is not None:
        acc = acc + np.asarray(int_bias, np.int64)[None, :, None, None]
    return acc


def depthwise_saturating_acc(x, zx, w, zw, stride, pad, dil):
    """FBGEMM's depthwise: taps t = i*kw + j in order, pairs (2p, 2p+1) of raw x * raw w summed
    and saturated to int16 (vpmaddubsw), an odd last tap paired with 0; then the exact
    corrections acc = raw - zw*sum x - zx*sum w + T*zx*zw. x uint8 [N, C, H, W], w [C*m, 1, kh, kw]."""
    o, _, kh, kw = w.shape
    m = o // x.shape[1]
    t = taps(x, zx, kh, kw, stride, pad, dil)
    xs = [np.repeat(t[(k // kw, k % kw)], m, axis=1) for k in range(kh * kw)]
    ws = [w[:, 0, k // kw, k % kw].astype(np.int64)[None, :, None, None] for k in range(kh * kw)]
    raw = 0
    for p in range(0, kh * kw, 2):
        pair = xs[p] * ws[p] + (xs[p + 1] * ws[p + 1] if p + 1 < kh * kw else 0)
        raw = raw + np.clip(pair, -32768, 32767)
    zwv = np.broadcast_to(np.asarray(zw, np.int64), (o,))[None, :, None, None]
    return raw - zwv * sum(xs) - zx * sum(ws) + kh * kw * zx * zwv


def rand(rng, shape, dtype):
    lo = -128 if dtype == np.int8 else 0
    return rng.integers(lo, lo + 256, shape).astype(dtype)


def as_u8(x, zx):
    """int8 x with zero point zx is uint8 x ^ 0x80 with zx + 128 (the kernels' view)."""
    if x.dtype == np.int8:
        return (x.view(np.uint8) ^ 0x80), zx + 128
    return x, zx


def check_acc(rng, n, c, h, w, o, groups, k, stride, pad, dil, dtype=np.uint8, path="auto",
              per_channel=True, bias=False, one_d=False):
    x = rand(rng, (n, c, h, w), dtype)
    zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
    wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
    zw = rng.integers(-4, 5, o) if per_channel else int(rng.integers(-4, 5))
    ib = rng.integers(-2**20, 2**20, o) if bias else None
    cw = K.ConvWeights(wq[:, :, 0, :] if one_d else wq, zw, groups)
    xu, zu = as_u8(x, zx)
    expect = conv_acc(xu, zu, wq, zw, groups, stride, pad, dil, ib)
    if one_d:
        got = K.conv2d_acc(x[:, :, 0, :], zx, cw, stride[1], pad[1], dil[1], int_bias=ib, path=path)
        expect = expect[:, :, 0, :]
    else:
        got = K.conv2d_acc(x, zx, cw, stride, pad, dil, int_bias=ib, path=path)
    assert got.dtype == np.int32 and got.shape == expect.shape
    assert np.array_equal(got, expect), (n, c, h, w, o, groups, k, stride, pad, dil, dtype, path)


# ------------------------------------------------------------------ convolution as GEMM
GEMM_CASES = [
    # n, c, h, w, o, groups, k, stride, pad, dil
    (1, 3, 7, 9, 5, 1, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 8, 6, 5, 12, 2, (2, 3), (2, 1), (1, 0), (1, 2)),
    (1, 4, 5, 5, 7, 1, (1, 1), (1, 1), (0, 0), (1, 1)),       # 1x1: the input is A itself
    (2, 6, 5, 4, 9, 3, (1, 1), (1, 1), (0, 0), (1, 1)),       # grouped 1x1: lda = C
    (1, 4, 9, 9, 70, 1, (1, 1), (2, 2), (0, 0), (1, 1)),      # 1x1 stride 2: im2col
    (1, 16, 6, 7, 130, 1, (3, 3), (2, 2), (1, 1), (1, 1)),    # 3 panels, last one partial
    (3, 10, 4, 11, 6, 2, (3, 1), (1, 3), (2, 1), (2, 1)),
    (1, 1, 28, 28, 6, 1, (5, 5), (1, 1), (0, 0), (1, 1)),     # LeNet's first layer
    (1, 12, 3, 3, 12, 12, (3, 3), (1, 1), (1, 1), (1, 1)),    # depthwise through the GEMM
    (1, 64, 40, 40, 16, 1, (3, 3), (1, 1), (1, 1), (1, 1)),   # several im2col chunks
]


@pytest.mark.parametrize("case", GEMM_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_gemm_conv_acc(backend, rng, case, dtype):
    check_acc(rng, *case, dtype=dtype, path="gemm", bias=True)
    check_acc(rng, *case, dtype=dtype, path="gemm", per_channel=False)


def test_gemm_conv_1d(backend, rng):
    for c, l, o, g, k, s, p, d in [(3, 50, 8, 1, 5, 1, 2, 1), (8, 31, 4, 2, 3, 2, 1, 3), (6, 9, 6, 6, 3, 1, 0, 1),
                                   (5, 7, 3, 1, 7, 1, 3, 1)]:
        check_acc(rng, 2, c, 1, l, o, g, (1, k), (1, s), (0, p), (1, d), one_d=True, bias=True)


def test_gemm_conv_every_k_tail(backend, rng):
    # K = kh*kw*cg over every residue of the 4-byte k-groups, M over the tile rows
    for cg in range(1, 9):
        for w in (1, 2, 5, 7):
            check_acc(rng, 1, cg, 3, w, 3, 1, (3, 1), (1, 1), (1, 0), (1, 1))


# ------------------------------------------------------------------ depthwise, exact
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_every_channel_count(backend, rng, k, stride):
    for c in range(1, 71):
        check_acc(rng, 1, c, 5, 6, c, c, (k, k), (stride, stride), (k // 2, k // 2), (1, 1), path="depthwise",
                  bias=c % 3 == 0)


@pytest.mark.parametrize("k", [3, 5])
def test_depthwise_every_width(backend, rng, k):
    for w in range(1, 21):
        for c in (1, 17, 32, 64, 70):
            for stride in (1, 2):
                pad = k // 2 if w + 2 * (k // 2) >= k else k
                check_acc(rng, 1, c, 3, w, c, c, (k, k), (stride, stride), (pad, pad), (1, 1), path="depthwise")


def test_depthwise_geometries(backend, rng):
    for n, c, h, w, m, k, s, p, d, dtype in [
            (2, 8, 7, 9, 1, (3, 3), (1, 2), (0, 1), (2, 1), np.uint8),
            (1, 5, 6, 6, 2, (3, 3), (2, 2), (1, 1), (1, 1), np.uint8),     # channel multiplier 2
            (1, 33, 5, 8, 3, (5, 5), (1, 1), (2, 2), (1, 1), np.int8),     # multiplier 3, int8 input
            (1, 7, 4, 10, 1, (1, 7), (1, 1), (0, 3), (1, 1), np.int8),     # odd taps 7
            (1, 20, 9, 9, 1, (2, 2), (1, 1), (0, 0), (3, 3), np.uint8),    # even taps, dilation 3
            (1, 96, 12, 12, 1, (3, 3), (1, 1), (1, 1), (1, 1), np.uint8)]:
        check_acc(rng, n, c, h, w, c * m, c, k, s, p, d, dtype=dtype, path="depthwise", bias=True)
    # 1-D depthwise
    check_acc(rng, 2, 24, 1, 40, 24, 24, (1, 9), (1, 2), (0, 4), (1, 1), path="depthwise", one_d=True)


def test_depthwise_extremes(backend):
    # every tap at the largest |x - zx| * |w - zw|: the exact kernel must not saturate
    c = 40
    for x_val, zx, w_val, zw in [(255, 0, -128, 127), (0, 255, 127, -128), (255, 0, 127, -128)]:
        x = np.full((1, c, 6, 6), x_val, np.uint8)
        w = np.full((c, 1, 5, 5), w_val, np.int8)
        cw = K.ConvWeights(w, zw, c)
        got = K.conv2d_acc(x, zx, cw, 1, 2, 1, path="depthwise")
        assert np.array_equal(got, conv_acc(x, zx, w, zw, c, (1, 1), (2, 2), (1, 1)))
        assert np.abs(got).max() == 25 * 255 * 255


# ------------------------------------------------------------------ depthwise, FBGEMM's saturation
def check_saturating(rng, x, zx, w, zw, stride, pad, dil):
    cw = K.ConvWeights(w, zw, x.shape[1])
    got = K.conv2d_acc(x, zx, cw, stride, pad, dil, path="depthwise_saturate")
    expect = depthwise_saturating_acc(x, zx, w, zw, stride, pad, dil)
    assert np.array_equal(got, expect)
    return got, conv_acc(x, zx, w, zw, x.shape[1], stride, pad, dil)


def test_depthwise_saturating_every_tail(backend, rng):
    for c in list(range(1, 71, 3)) + [64, 70]:
        for k, s in ((3, 1), (3, 2), (5, 1), (5, 2)):
            x = rand(rng, (1, c, 6, 7), np.uint8)
            w = rng.integers(-128, 128, (c, 1, k, k)).astype(np.int8)
            check_saturating(rng, x, int(rng.integers(0, 256)), w, rng.integers(-3, 4, c), (s, s),
                             (k // 2, k // 2), (1, 1))
    for width in range(1, 21):
        x = rand(rng, (2, 24, 3, width), np.uint8)
        w = rng.integers(-128, 128, (24, 1, 3, 3)).astype(np.int8)
        check_saturating(rng, x, 3, w, 0, (1, 1), (1, 1), (1, 1))


def test_depthwise_saturation_happens(backend, rng):
    """Constructed pairs at and past the int16 bounds: 255*127 + 255*127 = 64770 -> 32767;
    255*-128 * 2 = -65280 -> -32768; 128*127 + 129*127 = 32639 fits; one step more saturates."""
    c = 35
    x = np.full((1, c, 3, 3), 255, np.uint8)
    w = np.empty((c, 1, 3, 3), np.int8)
    w[0::3] = 127
    w[1::3] = -128
    w[2::3] = rng.integers(-128, 128, (len(range(2, c, 3)), 1, 3, 3))
    got, exact = check_saturating(rng, x, 0, w, 0, (1, 1), (0, 0), (1, 1))
    # 4 saturated pairs + the odd 9th tap alone (255 * 127 fits int16)
    assert got[0, 0, 0, 0] == 4 * 32767 + 255 * 127 and exact[0, 0, 0, 0] == 9 * 255 * 127
    assert got[0, 1, 0, 0] == 4 * -32768 + 255 * -128
    # the boundary: a pair summing to exactly 32767 stays, 32768 saturates by one
    x2 = np.zeros((1, 2, 1, 2), np.uint8)
    w2 = np.zeros((2, 1, 1, 2), np.int8)
    x2[0, 0, 0] = (129, 129)     # 129*127 + 129*127 = 32766
    x2[0, 1, 0] = (129, 130)     # 129*127 + 130*127 = 32893 -> 32767
    w2[:, 0, 0] = (127, 127)
    got2, exact2 = check_saturating(rng, x2, 0, w2, 0, (1, 1), (0, 0), (1, 1))
    assert got2[0, 0, 0, 0] == exact2[0, 0, 0, 0] == 32766
    assert got2[0, 1, 0, 0] == 32767 and exact2[0, 1, 0, 0] == 32893


def test_depthwise_saturating_padding_and_zero_points(backend, rng):
    # padded taps read zx raw (FBGEMM loads the zero point there), so they join the pairs
    c = 19
    x = rand(rng, (1, c, 4, 4), np.uint8)
    w = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    got, exact = check_saturating(rng, x, 250, w, rng.integers(-128, 128, c), (1, 1), (1, 1), (1, 1))
    # with no pair over the int16 bounds the two agree
    small = rng.integers(0, 40, (1, c, 4, 4)).astype(np.uint8)
    got, exact = check_saturating(rng, small, 20, rng.integers(-20, 20, (c, 1, 3, 3)).astype(np.int8),
                                  rng.integers(-3, 3, c), (1, 1), (1, 1), (1, 1))
    assert np.array_equal(got, exact)


# ------------------------------------------------------------------ requantized outputs
def nhwc(acc):
    return acc.transpose(0, 2, 3, 1).reshape(-1, acc.shape[1])


def from_nhwc(y2, shape):
    n, o, oh, ow = shape
    return y2.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)


REQUANT_CASES = [  # n, c, h, w, o, groups, k, stride, pad, path
    (1, 6, 7, 7, 10, 2, (3, 3), (1, 1), (1, 1), "gemm"),
    (2, 3, 9, 8, 70, 1, (3, 3), (2, 2), (1, 1), "gemm"),
    (1, 37, 6, 6, 37, 37, (3, 3), (1, 1), (1, 1), "depthwise"),
    (1, 70, 5, 9, 70, 70, (5, 5), (2, 2), (2, 2), "depthwise"),
    (1, 16, 5, 5, 16, 16, (3, 3), (1, 1), (1, 1), "depthwise_saturate"),
]


@pytest.mark.parametrize("case", REQUANT_CASES)
@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("out_dtype", [np.uint8, np.int8])
def test_requantized_conv(backend, rng, case, mode, out_dtype):
    n, c, h, w, o, groups, k, stride, pad, path = case
    x = rand(rng, (n, c, h, w), np.uint8)
    zx = int(rng.integers(0, 256))
    wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
    zw = np.zeros(o, np.int64) if path == "depthwise_saturate" else rng.integers(-2, 3, o)
    cw = K.ConvWeights(wq, zw, groups)
    x_scale, y_scale = 0.02, 0.5
    w_scales = rng.uniform(0.002, 0.02, o)
    bias = rng.normal(0, 2, o).astype(np.float32)
    y_zp_u8 = int(rng.integers(60, 200))
    relu = bool(rng.integers(0, 2))
    olo = -128 if out_dtype == np.int8 else 0
    if path == "depthwise_saturate":
        acc = depthwise_saturating_acc(x, zx, wq, zw, stride, pad, (1, 1))
    else:
        acc = conv_acc(x, zx, wq, zw, groups, stride, pad, (1, 1))
    common = dict(kind={"fbgemm": K.EPI_FBGEMM, "qnnpack": K.EPI_QNNPACK, "tflite": K.EPI_TFLITE}[mode],
                  out_zero_point=y_zp_u8 + olo, out_min=(y_zp_u8 if relu else 0) + olo, out_dtype=out_dtype,
                  path=path)
    if mode == "fbgemm":
        b, r, mult = reference.fbgemm_params(x_scale, w_scales, y_scale, bias, per_channel=True)
        ep = cw.epilogue(zx, np.uint8, bias=b, bias_mult=r, scale=mult, **common)
        expect = reference.requant_fbgemm(nhwc(acc), x_scale, w_scales, y_scale, y_zp_u8, bias, relu, True)
    elif mode == "qnnpack":
        bq, req = reference.qnnpack_params(x_scale, w_scales, y_scale, bias)
        ep = cw.epilogue(zx, np.uint8, int_bias=bq, scale=req, **common)
        expect = reference.requant_qnnpack(nhwc(acc), x_scale, w_scales, y_scale, y_zp_u8, bias, relu)
    else:
        q, s = reference.tflite_multipliers(x_scale, w_scales, y_scale, True)
        ib = rng.integers(-5000, 5000, o)
        ep = cw.epilogue(zx, np.uint8, int_bias=ib, multiplier=q, shift=s, rounding=1, **common)
        expect = reference.requant_tflite(nhwc(acc) + ib, q, s, y_zp_u8, y_zp_u8 if relu else 0, 255, "single")
    got = K.conv2d(x, ep, stride, pad, 1)
    expect = from_nhwc(np.asarray(expect, np.int64), acc.shape)
    assert got.dtype == out_dtype
    if out_dtype == np.int8:
        expect = expect - 128
    assert np.array_equal(got.astype(np.int64), expect)


# ------------------------------------------------------------------ errors
def test_errors():
    cw = K.ConvWeights(np.zeros((4, 2, 3, 3), np.int8), 0, 1)
    x = np.zeros((1, 2, 5, 5), np.uint8)
    with pytest.raises(TypeError, match="w:"):
        K.ConvWeights(np.zeros((4, 2, 3, 3), np.float32), 0)
    with pytest.raises(ValueError, match="groups"):
        K.ConvWeights(np.zeros((4, 2, 3, 3), np.int8), 0, 3)
    with pytest.raises(ValueError, match="w_zero_point"):
        K.ConvWeights(np.zeros((4, 2, 3, 3), np.int8), [0, 1])
    with pytest.raises(ValueError, match="x: expected 2 channels"):
        K.conv2d_acc(np.zeros((1, 3, 5, 5), np.uint8), 0, cw)
    with pytest.raises(ValueError, match="no output pixel"):
        K.conv2d_acc(np.zeros((1, 2, 2, 2), np.uint8), 0, cw)
    with pytest.raises(ValueError, match="stride"):
        K.conv2d_acc(x, 0, cw, stride=0)
    with pytest.raises(ValueError, match="padding"):
        K.conv2d_acc(x, 0, cw, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="x_zero_point"):
        K.conv2d_acc(x, 256, cw)
    with pytest.raises(ValueError, match="path"):
        K.conv2d_acc(x, 0, cw, path="depthwise")
    with pytest.raises(TypeError, match="x:"):
        K.conv2d_acc(x.astype(np.float32), 0, cw)
    ep = cw.epilogue(0, np.uint8)
    with pytest.raises(TypeError, match="x:"):
        K.conv2d(x.view(np.int8), ep)
    with pytest.raises(ValueError, match="scale"):
        cw.epilogue(0, np.uint8, kind=K.EPI_FBGEMM)
    with pytest.raises(ValueError, match="out_min"):
        cw.epilogue(0, np.uint8, kind=K.EPI_QNNPACK, scale=1.0, out_min=10, out_max=5)
    # an accumulator that could overflow int32: 16384 * 3 * 3 products of 255 * 255
    big = K.ConvWeights(np.full((1, 4096, 3, 3), -128, np.int8), 127, 1)
    with pytest.raises(ValueError, match="overflow"):
        K.conv2d_acc(np.full((1, 4096, 3, 3), 255, np.uint8), 0, big)


# ------------------------------------------------------------------ pooling
try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is an optional test dependency
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")


def tq(x, scale, zp):
    """x as a torch quantized tensor holding exactly these integers."""
    dt = torch.qint8 if x.dtype == np.int8 else torch.quint8
    q = torch.quantize_per_tensor(torch.from_numpy((x.astype(np.float32) - zp) * scale), scale, zp, dt)
    assert np.array_equal(q.int_repr().numpy(), x)
    return q


def max_pool_oracle(x, k, s, p, d, ceil):
    """max over in-bounds taps, explicit loops (padding never wins)."""
    n, c, h, w = x.shape
    oh = K.pool_output_size(h, k[0], s[0], p[0], d[0], ceil)
    ow = K.pool_output_size(w, k[1], s[1], p[1], d[1], ceil)
    y = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            hs = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
            ws = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
            hs = [v for v in hs if 0 <= v < h]
            ws = [v for v in ws if 0 <= v < w]
            y[:, :, i, j] = x[:, :, hs][:, :, :, ws].max(axis=(2, 3))
    return y


POOL_CASES = [  # c, h, w, kernel, stride, padding, dilation, ceil_mode
    (3, 7, 9, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (33, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (70, 7, 7, (3, 3), (2, 2), (0, 0), (1, 1), True),
    (5, 10, 6, (3, 2), (2, 1), (1, 1), (2, 1), True),
    (64, 5, 5, (5, 5), (1, 1), (2, 2), (1, 1), False),
    (1, 1, 20, (1, 4), (1, 3), (0, 2), (1, 1), True),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_max_pool(backend, rng, case, dtype):
    c, h, w, k, s, p, d, ceil = case
    x = rand(rng, (2, c, h, w), dtype)
    got = K.max_pool2d(x, k, s, p, d, ceil)
    assert np.array_equal(got, max_pool_oracle(x, k, s, p, d, ceil))
    if torch is not None:
        t = F.max_pool2d(tq(x, 0.1, 3), k, s, p, d, ceil_mode=ceil).int_repr().numpy()
        assert np.array_equal(got, t)


def test_max_pool_every_channel_tail(backend, rng):
    for c in range(1, 70):
        x = rand(rng, (1, c, 5, 4), np.uint8)
        assert np.array_equal(K.max_pool2d(x, 3, 2, 1, 1, True), max_pool_oracle(x, (3, 3), (2, 2), (1, 1), (1, 1), True))
    x1 = rand(rng, (2, 9, 17), np.int8)      # 1-D
    got = K.max_pool2d(x1, 3, 2, 1)
    assert np.array_equal(got, max_pool_oracle(x1[:, :, None, :], (1, 3), (1, 2), (0, 1), (1, 1), False)[:, :, 0])


AVG_CASES = [  # c, h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    (3, 7, 9, (3, 3), (2, 2), (1, 1), False, True, None),
    (3, 7, 9, (3, 3), (2, 2), (1, 1), False, False, None),
    (8, 8, 8, (2, 2), (2, 2), (0, 0), False, True, None),
    (4, 7, 7, (3, 3), (2, 2), (1, 1), True, True, None),
    (4, 7, 7, (3, 3), (2, 2), (1, 1), True, False, None),
    (2, 6, 5, (3, 2), (1, 2), (1, 1), False, True, 5),
    (16, 5, 5, (5, 5), (5, 5), (0, 0), False, True, None),
]


def avg_pool_acc_oracle(x, zx, k, s, p, ceil):
    """sum over in-bounds taps of (x - zx), explicit loops, int64."""
    n, c, h, w = x.shape
    oh = K.pool_output_size(h, k[0], s[0], p[0], 1, ceil)
    ow = K.pool_output_size(w, k[1], s[1], p[1], 1, ceil)
    acc = np.zeros((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            h0, h1 = max(i * s[0] - p[0], 0), min(i * s[0] - p[0] + k[0], h)
            w0, w1 = max(j * s[1] - p[1], 0), min(j * s[1] - p[1] + k[1], w)
            acc[:, :, i, j] = (x[:, :, h0:h1, w0:w1].astype(np.int64) - zx).sum(axis=(2, 3))
    return acc


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_avg_pool(rng, case, dtype):
    c, h, w, k, s, p, ceil, cip, div = case
    x = rand(rng, (2, c, h, w), dtype)
    zx = int(rng.integers(-20, 20)) + (0 if dtype == np.int8 else 128)
    acc, divisor = K.avg_pool2d(x, zx, k, s, p, ceil, cip, div)
    assert np.array_equal(acc, avg_pool_acc_oracle(x, zx, k, s, p, ceil))
    y, _ = K.avg_pool2d(x, zx, k, s, p, ceil, cip, div, y_zero_point=zx)
    lo = -128 if dtype == np.int8 else 0
    mult = (1.0 / divisor.astype(np.float64)).astype(np.float32)
    expect = np.clip(np.rint((acc.astype(np.float32) * mult).astype(np.float32) + np.float32(zx - lo)) + lo, lo, lo + 255)
    assert np.array_equal(y.astype(np.int64), expect.astype(np.int64))
    if torch is not None:
        t = F.avg_pool2d(tq(x, 0.1, zx), k, s, p, ceil, cip, div).int_repr().numpy()
        assert np.array_equal(y, t), np.argwhere(y != t)[:5]


def test_avg_pool_ties(rng):
    """Windows whose mean lies exactly on .5: the zero point joins before the rounding, so with
    zx = zy = 1 the means 1.5 and 2.5 (x - zx) give rne(2.5) = 2 and rne(3.5) = 4, where rounding
    the mean alone would give 2 + 1 = 3 and 2 + 1 = 3."""
    x = np.array([[[[2, 3], [2, 3]], [[3, 4], [3, 4]]]], np.uint8)      # x - 1: means 1.5 and 2.5
    y, _ = K.avg_pool2d(x, 1, 2, 2, 0, y_zero_point=1)
    assert y.reshape(-1).tolist() == [2, 4]
    if torch is not None:
        assert F.avg_pool2d(tq(x, 1.0, 1), 2, 2).int_repr().numpy().reshape(-1).tolist() == [2, 4]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_adaptive_avg_pool(rng, dtype):
    for h, w, oh, ow in [(7, 7, 1, 1), (7, 9, 3, 4), (5, 5, 5, 5), (6, 10, 4, 3)]:
        x = rand(rng, (2, 5, h, w), dtype)
        zx = 3 if dtype == np.int8 else 131
        acc, div = K.adaptive_avg_pool2d(x, zx, (oh, ow))
        for i in range(oh):
            for j in range(ow):
                h0, h1 = i * h // oh, -(-(i + 1) * h // oh)
                w0, w1 = j * w // ow, -(-(j + 1) * w // ow)
                assert np.array_equal(acc[:, :, i, j], (x[:, :, h0:h1, w0:w1].astype(np.int64) - zx).sum(axis=(2, 3)))
                assert div[i, j] == (h1 - h0) * (w1 - w0)
        y, _ = K.adaptive_avg_pool2d(x, zx, (oh, ow), y_zero_point=zx)
        mult = (1.0 / div.astype(np.float64)).astype(np.float32)
        lo = -128 if dtype == np.int8 else 0
        expect = np.clip(np.rint((acc.astype(np.float32) * mult).astype(np.float32) + np.float32(zx - lo)) + lo, lo, lo + 255)
        assert np.array_equal(y.astype(np.int64), expect.astype(np.int64))
        if torch is not None:
            t = F.adaptive_avg_pool2d(tq(x, 0.05, zx), (oh, ow)).int_repr().numpy()
            assert np.array_equal(y, t), (h, w, oh, ow, np.argwhere(y != t)[:3])


def test_plane_sums(backend, rng):
    for hw in list(range(1, 70)) + [96 * 96]:
        for dtype in (np.uint8, np.int8):
            x = rand(rng, (2, 3, hw), dtype)
            zx = -7 if dtype == np.int8 else 200
            assert np.array_equal(K.plane_sums(x, zx), (x.astype(np.int64) - zx).sum(axis=2))
    x = np.full((1, 1, 2048, 2048), 255, np.uint8)                  # 2^22 * 255: still exact
    assert K.plane_sums(x, 0)[0, 0] == 255 * 2**22


def test_pool_errors():
    x = np.zeros((1, 2, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="padding"):
        K.max_pool2d(x, 2, 1, 2)
    with pytest.raises(TypeError, match="x:"):
        K.max_pool2d(x.astype(np.float32), 2)
    with pytest.raises(ValueError, match="too small"):
        K.max_pool2d(x, 7)
    with pytest.raises(ValueError, match="divisor_override"):
        K.avg_pool2d(x, 0, 2, divisor_override=0)
    with pytest.raises(ValueError, match="x_zero_point"):
        K.plane_sums(x, -1)


# ------------------------------------------------------------------ channels-last layouts
LAYOUT_CASES = [  # c, h, w, o, groups, k, stride, pad, path
    (3, 9, 8, 8, 1, (3, 3), (2, 2), (1, 1), "gemm"),          # the 3-channel stem (short im2col runs)
    (8, 6, 7, 16, 1, (1, 1), (1, 1), (0, 0), "gemm"),         # 1x1: the buffer is the input copied
    (6, 5, 6, 9, 3, (3, 1), (1, 2), (1, 0), "gemm"),
    (8, 7, 9, 8, 8, (3, 3), (1, 1), (1, 1), "depthwise"),
    (8, 6, 6, 16, 8, (3, 3), (2, 2), (1, 1), "depthwise"),   # channel multiplier 2 (replicated)
    (16, 5, 5, 16, 16, (3, 3), (1, 1), (0, 0), "depthwise"),
    (5, 10, 140, 5, 5, (3, 3), (1, 1), (1, 1), "depthwise"),  # rows over one 128-pixel epilogue segment
]


@pytest.mark.parametrize("case", LAYOUT_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_layouts_nhwc(backend, rng, case, dtype):
    """layout_in / layout_out "nhwc" give the NCHW results transposed (the oracle's acc), for
    uint8 / int8 inputs, padding, channel multipliers, and 1-D inputs [N, L, C]."""
    c, h, w, o, groups, k, stride, pad, path = case
    x = rand(rng, (2, c, h, w), dtype)
    zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
    wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
    cw = K.ConvWeights(wq, 0, groups)
    xu, zu = as_u8(x, zx)
    expect = conv_acc(xu, zu, wq, 0, groups, stride, pad)
    ep = cw.epilogue(zx, dtype, kind=K.EPI_INT32, path=path)
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for lin, lout in (("nhwc", "nchw"), ("nchw", "nhwc"), ("nhwc", "nhwc")):
        got = K.conv2d(xn if lin == "nhwc" else x, ep, stride, pad, 1, layout_in=lin, layout_out=lout)
        if lout == "nhwc":
            got = got.transpose(0, 3, 1, 2)
        assert np.array_equal(got, expect), (lin, lout)
    if k[0] == 1:   # 1-D: [N, L, C]
        cw1 = K.ConvWeights(wq[:, :, 0, :], 0, groups)
        ep1 = cw1.epilogue(zx, dtype, kind=K.EPI_INT32, path=path)
        got = K.conv2d(np.ascontiguousarray(x[:, :, 0, :].transpose(0, 2, 1)), ep1, stride[1], pad[1], 1,
                       layout_in="nhwc", layout_out="nhwc")
        e1 = conv_acc(xu[:, :, :1, :], zu, wq, 0, groups, (1, stride[1]), (0, pad[1]))[:, :, 0, :]
        assert np.array_equal(got.transpose(0, 2, 1), e1)


def test_layout_errors():
    cw = K.ConvWeights(np.ones((2, 1, 1, 1), np.int8), 0)
    ep = cw.epilogue(0)
    x = np.zeros((1, 1, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="layout_in"):
        K.conv2d(x, ep, layout_in="chwn")
    with pytest.raises(ValueError, match="layout_out"):
        K.conv2d(x, ep, layout_out="NHWC ")
    with pytest.raises(ValueError, match="channels"):
        K.conv2d(np.zeros((1, 2, 2, 3), np.uint8), ep, layout_in="nhwc")


# ------------------------------------------------------------------ flat few-channel depthwise
@pytest.mark.parametrize("c", [1, 2, 4, 8, 16])
def test_depthwise_flat_every_width(backend, rng, c):
    """out_c in {1, 2, 4, 8, 16} with stride_w 1 runs each row as a flat vector of 32-value
    groups: every row length mod 32 (the tail group), stride_h 2, dilation along h, kernels
    3 / 5 / 1x7, channel multipliers, int8 input, exact and saturating."""
    for w in range(1, 3 + 64 // c):
        k = ((3, 3), (5, 5), (1, 7))[w % 3]
        pad = (k[0] // 2, k[1] // 2)
        check_acc(rng, 1, c, 4, w, c, c, k, (1 + w % 2, 1), pad, (1 + (k[0] == 3 and w % 4 == 3), 1), path="depthwise",
                  bias=w % 2 == 0, dtype=np.int8 if w % 5 == 0 else np.uint8)
    if c > 1:   # multiplier m: c // m input channels replicated m times
        check_acc(rng, 2, c // 2, 5, 7, c, c // 2, (3, 3), (1, 1), (1, 1), (1, 1), path="depthwise")
    x = rng.integers(0, 256, (1, c, 5, 9)).astype(np.uint8)
    x[:, :, ::2] = 255
    w = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
    zw = np.zeros(c, np.int64)
    cw = K.ConvWeights(w, zw, c)
    got = K.conv2d_acc(x, 7, cw, 1, 1, path="depthwise_saturate")
    assert np.array_equal(got, depthwise_saturating_acc(x, 7, w, zw, (1, 1), (1, 1), (1, 1)))


@pytest.mark.parametrize("mode", ["qnnpack", "onednn"])
def test_depthwise_flat_requantized(backend, rng, mode):
    """The flat path's epilogue runs over 32 virtual channels: per-channel scales and biases must
    follow channel l % out_c (distinct per channel here, so a misaligned replica shows)."""
    f32 = np.float32
    for c in (2, 8, 16):
        x = rng.integers(0, 256, (1, c, 6, 21)).astype(np.uint8)
        w = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
        cw = K.ConvWeights(w, 0, c)
        scale = rng.uniform(1e-3, 1e-2, c).astype(f32)
        acc = conv_acc(x, 3, w, 0, c, (1, 1), (1, 1))
        sc = scale[None, :, None, None]
        if mode == "qnnpack":
            ib = rng.integers(-500, 500, c)
            ep = cw.epilogue(3, kind=K.EPI_QNNPACK, int_bias=ib, scale=scale, out_zero_point=100)
            t = (acc + ib[None, :, None, None]).astype(f32) * sc
            expect = np.clip(np.rint(t) + 100, 0, 255)
        else:
            bias = rng.normal(0, 1, c).astype(f32)
            ep = cw.epilogue(3, kind="onednn", x_scale=0.02, out_scale=0.1, scale=scale, bias=bias,
                             out_zero_point=100)
            y = (acc.astype(f32) * (f32(1) / f32(1 / 0.02))) * sc + bias[None, :, None, None]
            t = y * (f32(1) / (f32(1) / f32(1 / 0.1))) + f32(100)
            expect = np.clip(np.rint(t), 0, 255)
        assert np.array_equal(K.conv2d(x, ep, 1, 1).astype(np.int64), expect.astype(np.int64)), (mode, c)


def test_backends_exercised():
    """Runs last: the conv and pool kernels of every backend of the table that has its own and
    runs here were called by the tests above (the conftest guard checks every family at the end
    of a run; this names the two families of this file)."""
    runs = K.kernel_runs()
    for row in K.backend_table():
        for family in ("conv", "pool"):
            if row["available"] and row["kernels"][family] == row["name"]:
                assert runs[family][row["name"]] > 0, (family, row["name"])


# ------------------------------------------------------------------ the call path (fq_conv2d_run)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("zw", [0, 3])
def test_pointwise_nhwc_in_place(backend, rng, dtype, zw):
    """A 1x1 stride-1 unpadded convolution reads an NHWC input where it lies (int8 through the
    GEMM's a_signed, no xor copy), including weight zero points (row sums of the raw bytes),
    channel counts off the 4-byte groups and a non-contiguous input (copied first)."""
    for c, o, n, h, w in [(1, 3, 1, 1, 1), (5, 9, 2, 3, 7), (67, 70, 1, 4, 5)]:
        x = rand(rng, (n, c, h, w), dtype)
        zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
        wq = rng.integers(-128, 128, (o, c, 1, 1)).astype(np.int8)
        cw = K.ConvWeights(wq, zw)
        ep = cw.epilogue(zx, dtype, kind=K.EPI_INT32)
        xu, zu = as_u8(x, zx)
        expect = conv_acc(xu, zu, wq, zw, 1)
        xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = K.conv2d(xn, ep, 1, 0, 1, layout_in="nhwc", layout_out="nhwc")
        assert np.array_equal(got.transpose(0, 3, 1, 2), expect)
        assert np.array_equal(xn.transpose(0, 3, 1, 2), x)        # the input is not modified
        strided = np.empty((n, h, 2 * w, c), dtype)[:, :, ::2, :]
        strided[...] = xn
        got = K.conv2d(strided, ep, 1, 0, 1, layout_in="nhwc", layout_out="nhwc")
        assert np.array_equal(got.transpose(0, 3, 1, 2), expect)


def test_im2col_runs_and_chunks(backend, rng):
    """im2col rows by increments: kernel-row runs of at most 16 bytes (one fixed move), up to
    32, longer; dilation and groups (tap by tap); chunks that end mid-row and mid-image."""
    for n, c, h, w, o, groups, k, stride, pad, dil in [
            (2, 1, 11, 9, 6, 1, (10, 4), (2, 2), (5, 1), (1, 1)),   # the DS-CNN stem: 4-byte runs
            (3, 3, 13, 12, 8, 1, (3, 3), (2, 2), (1, 1), (1, 1)),   # 9-byte runs
            (1, 5, 7, 8, 4, 1, (2, 5), (1, 3), (0, 2), (1, 1)),     # 25-byte runs
            (2, 7, 6, 9, 5, 1, (3, 6), (1, 1), (1, 2), (1, 1)),     # 42-byte runs
            (1, 4, 9, 9, 6, 1, (3, 3), (1, 2), (2, 2), (2, 3)),     # dilation: tap by tap
            (2, 6, 7, 7, 6, 3, (3, 3), (2, 1), (1, 1), (1, 1)),     # groups: tap by tap
            (2, 64, 20, 20, 16, 1, (3, 3), (1, 1), (1, 1), (1, 1)),  # chunks cross rows and images
    ]:
        check_acc(rng, n, c, h, w, o, groups, k, stride, pad, dil, dtype=np.int8, bias=True)
        check_acc(rng, n, c, h, w, o, groups, k, stride, pad, dil)


def check_nhwc_at_end(rng, n, c, h, w, o, groups, k, stride, pad, dil, dtype):
    """conv2d on an NHWC input that ends its allocation and on the NCHW one, against the oracle"""
    x = rand(rng, (n, c, h, w), dtype)
    zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
    wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
    zw = rng.integers(-3, 4, o)
    cw = K.ConvWeights(wq, zw, groups)
    ep = cw.epilogue(zx, dtype, kind=K.EPI_INT32)
    xu, zu = as_u8(x, zx)
    expect = conv_acc(xu, zu, wq, zw, groups, stride, pad, dil)
    buf = np.empty(x.size, dtype)
    xn = buf.reshape(n, h, w, c)
    xn[...] = x.transpose(0, 2, 3, 1)
    got = K.conv2d(xn, ep, stride, pad, dil, layout_in="nhwc", layout_out="nhwc")
    assert np.array_equal(got.transpose(0, 3, 1, 2), expect), (n, c, h, w, o, groups, k, stride, pad, dil)
    buf = np.empty(x.size, dtype)
    xc = buf.reshape(x.shape)
    xc[...] = x
    got = K.conv2d(xc, ep, stride, pad, dil)
    assert np.array_equal(got, expect), (n, c, h, w, o, groups, k, stride, pad, dil, "nchw")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_im2col_every_move_size(backend, rng, dtype):
    """im2col's fixed-size moves: kernel-row runs (k_w * C bytes) of every size class (<= 16,
    <= 32, <= 64 with 48 and exactly 64, > 64 with 65, 96, 128, 192) and tap-by-tap copies
    (groups, dilation) of cg = 1, 3, 16, 17, 32, 33, 64, 65 bytes: what a move writes past its
    run is overwritten by the next, what it reads past lies in the padded buffer's slack (the
    last pixel of the last image touches it); borders, stride 2, batches over chunk ends."""
    for n, c, h, w, o, groups, k, stride, pad, dil in [
            (1, 16, 32, 32, 16, 1, (3, 3), (1, 1), (1, 1), (1, 1)),    # ResNet-8 s1: 48-byte runs
            (2, 16, 9, 9, 32, 1, (3, 3), (2, 2), (1, 1), (1, 1)),      # s2_a: stride 2
            (1, 21, 6, 7, 5, 1, (3, 3), (1, 1), (1, 1), (1, 1)),       # 63
            (2, 8, 7, 9, 5, 1, (2, 8), (1, 1), (0, 3), (1, 1)),        # exactly 64
            (1, 13, 7, 7, 6, 1, (5, 5), (1, 2), (2, 2), (1, 1)),       # 65
            (2, 32, 6, 5, 20, 1, (3, 3), (1, 1), (1, 1), (1, 1)),      # 96
            (1, 32, 5, 6, 7, 1, (2, 4), (1, 1), (1, 2), (1, 1)),       # 128
            (1, 64, 5, 5, 9, 1, (3, 3), (2, 1), (1, 1), (1, 1)),       # 192
            (2, 3, 23, 23, 64, 1, (7, 7), (2, 2), (3, 3), (1, 1)),     # resnet stem: 21-byte runs
            (1, 1, 9, 8, 4, 1, (3, 3), (1, 1), (1, 1), (1, 1)),        # 3
            (1, 6, 7, 8, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1)),        # cg = 1 tap by tap
            (2, 6, 7, 7, 4, 2, (3, 3), (1, 2), (1, 1), (1, 1)),        # cg = 3
            (1, 16, 8, 9, 8, 1, (3, 3), (1, 1), (2, 2), (2, 2)),       # cg = 16, dilation
            (1, 34, 6, 6, 4, 2, (3, 3), (2, 2), (1, 1), (1, 1)),       # cg = 17
            (1, 64, 6, 7, 6, 2, (3, 2), (1, 1), (1, 1), (1, 1)),       # cg = 32
            (1, 33, 7, 6, 5, 1, (3, 3), (1, 1), (2, 1), (1, 2)),       # cg = 33
            (1, 128, 5, 5, 4, 2, (3, 3), (1, 1), (1, 1), (1, 1)),      # cg = 64
            (2, 65, 5, 6, 3, 1, (2, 3), (1, 2), (1, 1), (1, 2)),       # cg = 65
            (3, 16, 30, 30, 16, 1, (3, 3), (1, 1), (1, 1), (1, 1)),    # chunks end mid-row, mid-image
    ]:
        check_nhwc_at_end(rng, n, c, h, w, o, groups, k, stride, pad, dil, dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_small_channel_nchw_padding(backend, rng, dtype):
    """NCHW inputs of 1 to 4 channels are transposed into the padded buffer a row at a time
    with the channel count fixed (int8 flipped to uint8 terms there): every count, with and
    without padding, one- and two-pixel-wide rows, 5 channels on the general loop, the input
    at the end of its allocation."""
    for c in range(1, 6):
        for n, h, w, k, stride, pad in [(2, 7, 9, (3, 3), (1, 1), (1, 1)), (1, 6, 1, (3, 1), (1, 1), (1, 0)),
                                        (1, 5, 2, (1, 1), (1, 1), (1, 1)), (2, 11, 10, (7, 7), (2, 2), (3, 3)),
                                        (1, 4, 4, (2, 2), (1, 2), (0, 1))]:
            check_nhwc_at_end(rng, n, c, h, w, 5, 1, k, stride, pad, (1, 1), dtype)


@pytest.mark.parametrize("path", ["depthwise", "depthwise_saturate"])
def test_depthwise_weight_zero_points_zero_and_not(backend, rng, path):
    """The SIMD depthwise kernels skip sum_t x when every weight zero point is 0: both cases on
    64-channel and 32-channel blocks, tap counts around the 4-tap quads and 2-tap pairs."""
    for c in (7, 32, 33, 64, 100, 130):
        for k in ((1, 1), (1, 3), (2, 2), (1, 5), (3, 3), (3, 5)):
            x = rand(rng, (1, c, 5, 6), np.uint8)
            w = rng.integers(-128, 128, (c, 1) + k).astype(np.int8)
            for zw in (0, rng.integers(-128, 128, c)):
                if path == "depthwise":
                    cw = K.ConvWeights(w, zw, c)
                    got = K.conv2d_acc(x, 77, cw, 1, (k[0] // 2, k[1] // 2), 1, path=path)
                    assert np.array_equal(got, conv_acc(x, 77, w, zw, c, (1, 1), (k[0] // 2, k[1] // 2)))
                else:
                    check_saturating(rng, x, 77, w, zw, (1, 1), (k[0] // 2, k[1] // 2), (1, 1))


def test_scratch_reuse_and_threads(rng):
    """The per-thread scratch area grows and is reused: a large call between small ones, and
    two threads running the same layers at once, give the single-threaded results."""
    import threading
    layers = []
    for c, o, groups, k, pad, path in [(8, 16, 1, (3, 3), (1, 1), "gemm"), (24, 24, 24, (3, 3), (1, 1), "depthwise"),
                                       (16, 8, 1, (1, 1), (0, 0), "gemm")]:
        wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
        cw = K.ConvWeights(wq, 1, groups)
        layers.append((cw.epilogue(9, np.uint8, kind=K.EPI_INT32, path=path), pad, wq, groups))
    inputs = [rand(rng, (n, c, h, h), np.uint8) for n, h in ((1, 3), (4, 30), (1, 5), (2, 17))
              for c in (8, 24, 16)]

    def run_all():
        out = []
        for x in inputs:
            for ep, pad, wq, groups in layers:
                if x.shape[1] == wq.shape[1] * groups:
                    out.append(K.conv2d(x, ep, 1, pad, 1, num_threads=1))
        return out

    expect = []
    for x in inputs:
        for ep, pad, wq, groups in layers:
            if x.shape[1] == wq.shape[1] * groups:
                expect.append(conv_acc(x, 9, wq, 1, groups, (1, 1), pad))
    assert all(np.array_equal(a, b) for a, b in zip(run_all(), expect))
    results = [None] * 4

    def worker(i):
        results[i] = [run_all() for _ in range(3)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        for rep in r:
            assert len(rep) == len(expect) and all(np.array_equal(a, b) for a, b in zip(rep, expect))


# ------------------------------------------------------------------ depthwise by rows (unpadded input)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_depthwise_rows_every_width_and_tail(backend, rng, dtype):
    """The row kernels (exact depthwise read from the unpadded NHWC input, the zero point for
    taps outside it): symmetric weights (the AVX-512 streaming kernel for k_w = 3, k_h <= 3) and
    weight zero points (the column-buffer kernel), every output width 1..13 at stride 1 and 2,
    channel counts around the 32 / 64 blocks, k_h 2 and 3, padding 0..2, NCHW and NHWC input."""
    for c in (1, 17, 31, 32, 33, 63, 64, 65, 100, 129):
        for k in ((3, 3), (2, 3), (3, 5)):
            for stride in (1, 2):
                for w in range(1, 14):
                    pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
                    if w + 2 * pad[1] < k[1]:
                        continue
                    x = rand(rng, (1, c, 4, w), dtype)
                    zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
                    wq = rng.integers(-128, 128, (c, 1) + k).astype(np.int8)
                    zw = 0 if w % 3 else rng.integers(-3, 4, c)
                    cw = K.ConvWeights(wq, zw, c)
                    xu, zu = as_u8(x, zx)
                    expect = conv_acc(xu, zu, wq, zw, c, (stride, stride), pad)
                    got = K.conv2d_acc(x, zx, cw, stride, pad, 1, path="depthwise")
                    assert np.array_equal(got, expect), (c, k, stride, w, pad)
                    ep = cw.epilogue(zx, dtype, kind=K.EPI_INT32)
                    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
                    got = K.conv2d(xn, ep, stride, pad, 1, layout_in="nhwc", layout_out="nhwc")
                    assert np.array_equal(got.transpose(0, 3, 1, 2), expect), (c, k, stride, w, pad, "nhwc")


def test_depthwise_rows_extremes_and_wide_rows(backend, rng):
    """Largest |x w| on every tap with symmetric weights (no int16 anywhere in the exact row
    kernels), x = 255 against the zero point 0 in the padding; rows wider than one segment."""
    for c in (32, 64, 70):
        for x_val, w_val in [(255, -128), (255, 127), (0, -128)]:
            x = np.full((1, c, 5, 7), x_val, np.uint8)
            w = np.full((c, 1, 3, 3), w_val, np.int8)
            cw = K.ConvWeights(w, 0, c)
            for stride in (1, 2):
                got = K.conv2d_acc(x, 0, cw, stride, 1, 1, path="depthwise")
                assert np.array_equal(got, conv_acc(x, 0, w, 0, c, (stride, stride), (1, 1)))
    for c, w, stride in [(64, 150, 1), (40, 161, 2), (8, 300, 2)]:
        check_acc(rng, 2, c, 3, w, c, c, (3, 3), (stride, stride), (1, 1), (1, 1), path="depthwise", per_channel=False)
        x = rand(rng, (1, c, 3, w), np.uint8)
        wq = rng.integers(-128, 128, (c, 1, 3, 3)).astype(np.int8)
        cw = K.ConvWeights(wq, 0, c)
        got = K.conv2d_acc(x, 5, cw, stride, 1, 1, path="depthwise")
        assert np.array_equal(got, conv_acc(x, 5, wq, 0, c, (stride, stride), (1, 1)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_strided_pointwise_in_place(backend, rng, dtype):
    """A 1x1 unpadded strided convolution gathers its GEMM rows from the NHWC input where it
    lies (exact copies: nothing read past the array's end; int8 through a_signed): channel
    counts 16 / 32 / 64 (fixed moves) and others, odd sizes (the last pixel read), strides
    (2, 2), (2, 1), (3, 2), groups, weight zero points, chunks over several rows and images."""
    for c, o, groups, n, h, w, stride, zw in [
            (16, 32, 1, 1, 9, 9, (2, 2), 0), (32, 64, 1, 2, 7, 5, (2, 2), 3), (64, 20, 1, 1, 5, 5, (2, 1), 0),
            (5, 9, 1, 2, 7, 7, (3, 2), 1), (12, 6, 3, 1, 6, 9, (2, 2), 0), (1, 3, 1, 1, 3, 3, (2, 2), 2),
            (16, 16, 1, 3, 40, 40, (2, 2), 0)]:
        x = rand(rng, (n, c, h, w), dtype)
        zx = int(rng.integers(-128, 128) if dtype == np.int8 else rng.integers(0, 256))
        wq = rng.integers(-128, 128, (o, c // groups, 1, 1)).astype(np.int8)
        cw = K.ConvWeights(wq, zw, groups)
        ep = cw.epilogue(zx, dtype, kind=K.EPI_INT32)
        xu, zu = as_u8(x, zx)
        expect = conv_acc(xu, zu, wq, zw, groups, stride)
        # the input at the very end of an allocation: a read past it would fault or differ
        buf = np.empty(x.size, dtype)
        xn = buf.reshape(n, h, w, c)
        xn[...] = x.transpose(0, 2, 3, 1)
        got = K.conv2d(xn, ep, stride, 0, 1, layout_in="nhwc", layout_out="nhwc")
        assert np.array_equal(got.transpose(0, 3, 1, 2), expect), (c, o, groups, stride)
        assert np.array_equal(K.conv2d(x, ep, stride, 0, 1), expect), (c, o, groups, stride, "nchw")


# ------------------------------------------ convolution over the taps inside the input only
# csrc/conv/clip.c: pixels whose window overlaps the padding multiply only their taps inside the
# input, in windows of pixels that keep the same taps, with col_offset corrected for the
# padding's share. Forced on every qualifying layer here (conv_set_clip("always")) and held against
# the oracle, which sums every tap of the zero-point-padded input.
CLIP_CASES = [
    # n, c, h, w, o, groups, k, stride, pad, dil
    (3, 8, 4, 4, 20, 1, (3, 3), (1, 1), (1, 1), (1, 1)),      # resnet's last stage: 9 windows
    (2, 4, 7, 7, 70, 1, (3, 3), (2, 2), (1, 1), (1, 1)),      # stride 2: only the first row / column
    (2, 12, 1, 1, 16, 1, (3, 3), (1, 1), (1, 1), (1, 1)),     # one pixel: only the centre tap
    (1, 8, 2, 3, 9, 1, (3, 3), (1, 1), (1, 1), (1, 1)),       # every pixel an edge
    (2, 16, 5, 6, 130, 2, (3, 3), (1, 1), (1, 1), (1, 1)),    # groups of 8 channels, 2 panels
    (1, 4, 6, 6, 5, 1, (5, 5), (1, 1), (2, 2), (1, 1)),       # 5 bands a dimension
    (2, 4, 5, 5, 6, 1, (3, 3), (1, 1), (1, 1), (2, 2)),       # dilation
    (1, 4, 3, 3, 6, 1, (3, 3), (1, 1), (3, 2), (1, 1)),       # pixels with every tap in the padding
    (2, 8, 6, 9, 7, 1, (2, 5), (1, 2), (0, 2), (1, 1)),       # padding along w only
    (2, 8, 9, 6, 7, 1, (5, 2), (2, 1), (2, 0), (1, 1)),       # along h only: one run of K
    (1, 4, 1, 5, 4, 1, (17, 1), (1, 1), (8, 0), (1, 1)),      # one tap of 17 kept: one run of K
    (1, 4, 30, 4, 4, 1, (17, 3), (1, 1), (1, 1), (1, 1)),     # 17 runs > FQ_K_RUNS_MAX: the padded path
    (1, 4, 3, 3, 4, 1, (5, 1), (1, 1), (12, 0), (1, 1)),      # 9 bands > FQ_CONV_CLIP_BANDS_MAX: padded
    (2, 64, 20, 20, 24, 1, (3, 3), (1, 1), (1, 1), (1, 1)),   # 800 pixels: windows in chunks, one call each
    (3, 32, 40, 30, 40, 2, (3, 3), (2, 1), (1, 2), (1, 1)),   # groups in chunks (1 920 pixels)
    (2, 64, 3, 3, 64, 1, (3, 3), (1, 1), (1, 1), (1, 1)),     # the AVX-512 64-wide panel, 6-row tiles
    (1, 256, 2, 2, 32, 1, (3, 3), (1, 1), (1, 1), (1, 1)),
]


@pytest.fixture
def clip_always():
    old = K.conv_set_clip("always")
    yield
    K.conv_set_clip(old)


@pytest.mark.parametrize("case", CLIP_CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_gemm_conv_clipped(backend, rng, clip_always, case, dtype):
    runs = K.conv_clip_runs()
    check_acc(rng, *case, dtype=dtype, path="gemm", bias=True)
    check_acc(rng, *case, dtype=dtype, path="gemm", per_channel=False)
    took = K.conv_clip_runs() - runs
    n, c, h, w, o, groups, k, stride, pad, dil = case
    # the path runs where the group's channels are whole k-groups and the windows and runs fit
    # their bounds (the two cases after the one-run one say where it does not)
    expect = (c // groups) % 4 == 0 and case not in CLIP_CASES[11:13]
    assert took == (2 if expect else 0), (case, took)


def test_gemm_conv_clipped_1d(backend, rng, clip_always):
    runs = K.conv_clip_runs()
    for c, l, o, g, k, s, p, d in [(4, 9, 8, 1, 5, 1, 2, 1), (8, 12, 4, 2, 3, 2, 1, 3), (16, 3, 6, 1, 7, 1, 3, 1)]:
        check_acc(rng, 2, c, 1, l, o, g, (1, k), (1, s), (0, p), (1, d), one_d=True, bias=True)
    assert K.conv_clip_runs() - runs == 3


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "onednn", "tflite"])
def test_gemm_conv_clipped_requantized(backend, rng, clip_always, mode):
    # the fused epilogues read the window's col_offset; the same bytes as the padded path
    for case in CLIP_CASES[:5] + CLIP_CASES[13:]:   # all at once and in chunks
        n, c, h, w, o, groups, k, stride, pad, dil = case
        x = rand(rng, (n, c, h, w), np.uint8)
        wq = rng.integers(-128, 128, (o, c // groups) + k).astype(np.int8)
        cw = K.ConvWeights(wq, rng.integers(-3, 4, o), groups)
        kw = dict(kind=mode, scale=rng.uniform(1e-4, 1e-3, o).astype(np.float32), out_zero_point=int(rng.integers(0, 256)))
        if mode == "onednn":
            kw.update(bias=rng.standard_normal(o).astype(np.float32), x_scale=0.05, out_scale=0.1)
        elif mode == "fbgemm":
            kw.update(bias=rng.standard_normal(o).astype(np.float32))
        elif mode == "tflite":
            del kw["scale"]
            kw.update(multiplier=rng.integers(2**30, 2**31 - 1, o), shift=rng.integers(-12, -6, o), int_bias=rng.integers(-999, 999, o))
        ep = cw.epilogue(int(rng.integers(0, 256)), np.uint8, **kw)
        got = K.conv2d(x, ep, stride, pad, dil)
        old = K.conv_set_clip("never")
        try:
            want = K.conv2d(x, ep, stride, pad, dil)
        finally:
            K.conv_set_clip(old)
        assert np.array_equal(got, want), (mode, case)


@pytest.mark.parametrize("o", [16, 32, 48, 64, 100, 130])
def test_gemm_conv_clipped_every_width_and_rows(backend, rng, clip_always, o):
    # 3x3 pad 1 on a 3x3 input: the corner windows hold `batch` pixels, the edges 1 per image
    # more, so batches 1..17 give every rows-per-tile count of every panel width, with a 64-wide
    # and a narrow last panel (100, 130); several runs of K in the corner and side windows
    for n in (1, 2, 3, 5, 6, 7, 11, 13, 17):
        check_acc(rng, n, 8, 3, 3, o, 1, (3, 3), (1, 1), (1, 1), (1, 1), bias=True)


def test_gemm_conv_clipped_random_geometries(backend, rng, clip_always):
    # random layers (channels a multiple of 4 or not, groups, strides, dilations, paddings up to
    # past the kernel, one or two threads) against the oracle over every padded tap
    for _ in range(40):
        groups = int(rng.choice([1, 1, 2, 3]))
        cg = int(rng.choice([4, 8, 12, 20, 3]))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, 4))
        ph, pw = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        if h + 2 * ph < dh * (kh - 1) + 1 or w + 2 * pw < dw * (kw - 1) + 1:
            continue
        o = groups * int(rng.choice([1, 5, 16, 64, 70]))
        x = rand(rng, (int(rng.integers(1, 5)), cg * groups, h, w), np.uint8)
        zx = int(rng.integers(0, 256))
        wq = rng.integers(-128, 128, (o, cg, kh, kw)).astype(np.int8)
        zw = rng.integers(-4, 5, o) if rng.random() < 0.5 else 0
        ib = rng.integers(-2**20, 2**20, o)
        cw = K.ConvWeights(wq, zw, groups)
        got = K.conv2d_acc(x, zx, cw, (sh, sw), (ph, pw), (dh, dw), int_bias=ib, path="gemm",
                           num_threads=int(rng.integers(1, 3)))
        expect = conv_acc(x, zx, wq, zw, groups, (sh, sw), (ph, pw), (dh, dw), ib)
        assert np.array_equal(got, expect), (x.shape, o, groups, (kh, kw), (sh, sw), (ph, pw), (dh, dw))


def test_gemm_conv_clipped_threads(backend, rng, clip_always):
    # resnet18's last stages, big enough for threads: the windows' parts share each panel's
    # tasks between two threads; the oracle sums every padded tap
    for h, c, o, s, n in [(4, 256, 96, 1, 3), (7, 128, 130, 2, 2)]:
        x = rand(rng, (n, c, h, h), np.uint8)
        wq = rng.integers(-128, 128, (o, c, 3, 3)).astype(np.int8)
        zw = rng.integers(-3, 4, o)
        cw = K.ConvWeights(wq, zw, 1)
        got = K.conv2d_acc(x, 7, cw, s, 1, 1, path="gemm", num_threads=2)
        assert np.array_equal(got, conv_acc(x, 7, wq, zw, 1, (s, s), (1, 1))), (h, c, o, s, n)


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack", "onednn"])
def test_gemm_conv_clipped_fused_runs_every_tail(backend, rng, clip_always, mode):
    # the fused kernels over runs of K (AVX-512) against their twin (the microkernel per run,
    # the tiles summed, then the tile epilogue: gemm_set_fused(False)) and against the padded
    # path, byte for byte: every panel width (16..64, a narrow last panel) and every rows-per-tile
    # count (the corner windows hold `n` pixels), int8 and uint8 outputs
    for o in (16, 32, 48, 64, 100, 130):
        wq = rng.integers(-128, 128, (o, 8, 3, 3)).astype(np.int8)
        cw = K.ConvWeights(wq, rng.integers(-3, 4, o), 1)
        kw = dict(kind=mode, scale=rng.uniform(1e-4, 1e-3, o).astype(np.float32),
                  out_zero_point=int(rng.integers(-128, 128)), out_dtype=np.int8)
        if mode in ("onednn", "fbgemm"):
            kw.update(bias=rng.standard_normal(o).astype(np.float32))
        if mode == "onednn":
            kw.update(x_scale=0.05, out_scale=0.1)
        ep = cw.epilogue(int(rng.integers(0, 256)), np.uint8, **kw)
        for n in range(1, 18):
            x = rand(rng, (n, 8, 3, 3), np.uint8)
            got = K.conv2d(x, ep, 1, 1, 1)
            assert K.gemm_set_fused(False)
            try:
                twin = K.conv2d(x, ep, 1, 1, 1)
            finally:
                K.gemm_set_fused(True)
            K.conv_set_clip("never")
            try:
                padded = K.conv2d(x, ep, 1, 1, 1)
            finally:
                K.conv_set_clip("always")
            assert np.array_equal(got, twin) and np.array_equal(got, padded), (mode, o, n)
