"""fastq.fusion against torch.nn.utils.fusion (what fuse_modules runs), bit for bit: random
BatchNorms, constructed cases where one rounding more or less changes the result, and the
argument checks."""
import numpy as np
import pytest

from fastq import fusion

torch = pytest.importorskip("torch")
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights  # noqa: E402

f32 = np.float32


def _t(a):
    return None if a is None else torch.from_numpy(a)


def torch_conv_fold(w, b, mean, var, eps, gamma, beta, transpose=False):
    fw, fb = fuse_conv_bn_weights(_t(w), _t(b), _t(mean), _t(var), eps, _t(gamma), _t(beta), transpose)
    return fw.detach().numpy(), fb.detach().numpy()


def torch_linear_fold(w, b, mean, var, eps, gamma, beta):
    fw, fb = fuse_linear_bn_weights(_t(w), _t(b), _t(mean), _t(var), eps, _t(gamma), _t(beta))
    return fw.detach().numpy(), fb.detach().numpy()


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def bn(rng, n, var_scale=1.0):
    return ((rng.standard_normal(n) * 0.5).astype(f32), (rng.random(n) * var_scale + 1e-7).astype(f32),
            (rng.standard_normal(n) + 1).astype(f32), (rng.standard_normal(n) * 0.3).astype(f32))


@pytest.mark.parametrize("shape", [(7, 3, 3, 3), (16, 1, 3, 3), (5, 4, 7), (33, 8, 1, 1)])
@pytest.mark.parametrize("eps", [1e-5, 1e-3, 0.1])
def test_conv_fold_equals_torch(shape, eps):
    rng = np.random.default_rng(shape[0] * 7 + int(eps * 1e5))
    w = rng.standard_normal(shape).astype(f32)
    b = rng.standard_normal(shape[0]).astype(f32)
    mean, var, gamma, beta = bn(rng, shape[0], var_scale=rng.choice([1e-4, 1.0, 100.0]))
    for bias in (b, None):
        for g, be in ((gamma, beta), (None, None)):         # affine=False: gamma 1, beta 0
            mine = fusion.fold_conv_bn(w, bias, mean, var, eps, g, be)
            theirs = torch_conv_fold(w, bias, mean, var, eps, g, be)
            assert same(mine[0], theirs[0]) and same(mine[1], theirs[1])


def test_conv_transpose_fold_equals_torch():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((4, 6, 3, 3)).astype(f32)          # ConvTranspose: [C_in, C_out, kh, kw]
    mean, var, gamma, beta = bn(rng, 6)
    mine = fusion.fold_conv_bn(w, None, mean, var, 1e-5, gamma, beta, transpose=True)
    theirs = torch_conv_fold(w, None, mean, var, 1e-5, gamma, beta, transpose=True)
    assert same(mine[0], theirs[0]) and same(mine[1], theirs[1])


@pytest.mark.parametrize("n,k", [(1, 1), (9, 17), (64, 40)])
def test_linear_fold_equals_torch(n, k):
    rng = np.random.default_rng(n + k)
    w = rng.standard_normal((n, k)).astype(f32)
    b = rng.standard_normal(n).astype(f32)
    mean, var, gamma, beta = bn(rng, n)
    for bias in (b, None):
        mine = fusion.fold_linear_bn(w, bias, mean, var, 1e-5, gamma, beta)
        theirs = torch_linear_fold(w, bias, mean, var, 1e-5, gamma, beta)
        assert same(mine[0], theirs[0]) and same(mine[1], theirs[1])


def test_eps_is_rounded_to_float32_before_the_add():
    """Variances where f32(var + f32(eps)) and f32(var + eps in double) differ: torch adds the
    float32 eps (its wrapped-number rule), and so does fastq; the double sum would differ."""
    rng = np.random.default_rng(0)
    var = (rng.random(20000) * 1e-4).astype(f32)
    eps = 1e-5
    double = (var.astype(np.float64) + eps).astype(f32)
    single = (var + f32(eps)).astype(f32)
    var = var[double != single][:64]
    assert var.size > 0
    n = var.size
    ones, zeros = np.ones(n, f32), np.zeros(n, f32)
    w = np.ones((n, 1, 1, 1), f32)
    mine = fusion.fold_conv_bn(w, None, zeros, var, eps, ones, zeros)
    theirs = torch_conv_fold(w, None, zeros, var, eps, ones, zeros)
    assert same(mine[0], theirs[0])
    via_double = (f32(1) / np.sqrt((var.astype(np.float64) + eps).astype(f32))).astype(f32)
    assert not np.array_equal(mine[0].reshape(-1), via_double)


def test_bias_order_of_operations():
    """((b - mean) * rsqrt) * gamma rounds differently from (b - mean) * (gamma * rsqrt) (the
    Linear formula) on some channels: each fold follows its own torch function."""
    rng = np.random.default_rng(1)
    n = 4096
    w = np.ones((n, 1), f32)
    b = rng.standard_normal(n).astype(f32)
    mean, var, gamma, beta = bn(rng, n)
    conv_b = fusion.fold_conv_bn(w.reshape(n, 1, 1), b, mean, var, 1e-5, gamma, beta)[1]
    lin_b = fusion.fold_linear_bn(w, b, mean, var, 1e-5, gamma, beta)[1]
    assert not np.array_equal(conv_b, lin_b)
    assert same(conv_b, torch_conv_fold(w.reshape(n, 1, 1), b, mean, var, 1e-5, gamma, beta)[1])
    assert same(lin_b, torch_linear_fold(w, b, mean, var, 1e-5, gamma, beta)[1])


def test_zero_variance_and_zero_eps_give_inf_as_torch():
    w = np.ones((2, 1, 1), f32)
    z, o = np.zeros(2, f32), np.ones(2, f32)
    mine = fusion.fold_conv_bn(w, None, z, z, 0.0, o, z)
    theirs = torch_conv_fold(w, None, z, z, 0.0, o, z)
    assert np.isinf(mine[0]).all() and same(mine[0], theirs[0])


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(weight=np.ones((2, 1, 1), np.float64)), TypeError, "weight: expected float32"),
    (dict(weight=np.ones(2, f32)), ValueError, "weight: expected at least 2 dimensions"),
    (dict(running_var=np.ones(3, f32)), ValueError, r"running_var: expected shape \(2,\)"),
    (dict(running_var=-np.ones(2, f32)), ValueError, "running_var: expected finite values >= 0"),
    (dict(eps=-1.0), ValueError, "eps: expected a finite float >= 0, got -1.0"),
    (dict(eps="1e-5"), ValueError, "eps: expected"),
    (dict(bias=np.ones(2, np.int32)), TypeError, "bias: expected float32"),
    (dict(running_mean=None), ValueError, "running_mean: is required"),
])
def test_fold_refuses_bad_arguments(kwargs, exc, match):
    args = dict(weight=np.ones((2, 1, 1), f32), bias=None, running_mean=np.zeros(2, f32),
                running_var=np.ones(2, f32), eps=1e-5)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        fusion.fold_conv_bn(**args)
