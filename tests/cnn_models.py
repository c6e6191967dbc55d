"""Real convolutional torch models for the from_torch tests, each fused, calibrated and converted
under one engine (torch's eager flow: fuse_modules, prepare, convert).
FAMILIES: name -> builder(engine) -> (converted torch model, list of float inputs)."""
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.ao.quantization as tq

CAL_SCALE, TEST_SCALE = 1.0, 3.0        # test inputs reach 3x past the calibrated range


def convert(m, engine, cal_shape, fuse=(), seed=0, qconfig=None):
    m.eval()
    for group in fuse:
        tq.fuse_modules(m, group, inplace=True)
    m.qconfig = qconfig or tq.get_default_qconfig(engine)
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        for _ in range(3):
            p(torch.randn(*cal_shape, generator=gen) * CAL_SCALE)
        return tq.convert(p)


def inputs(shape_tail, seed=0, batches=(1, 3)):
    rng = np.random.default_rng(1000 + seed)
    return [(rng.standard_normal((b,) + tuple(shape_tail)) * TEST_SCALE).astype(np.float32) for b in batches]


def cbr(cin, cout, k, stride=1, padding=0, groups=1, bias=False, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias), nn.BatchNorm2d(cout)]
    return nn.Sequential(*(layers + ([nn.ReLU()] if relu else [])))


def _fuse_cbr(model):
    groups = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential) and len(mod) >= 2 and isinstance(mod[0], nn.Conv2d) \
                and isinstance(mod[1], nn.BatchNorm2d):
            groups.append([name + ".0", name + ".1"] + ([name + ".2"] if len(mod) > 2 and isinstance(mod[2], nn.ReLU)
                                                         else []))
    return groups


def _randomize_bn(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.c1, self.r1, self.p1 = nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.c2, self.r2, self.p2 = nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.f1, self.r3, self.f2 = nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 10)

    def forward(self, x):
        x = self.p1(self.r1(self.c1(self.quant(x))))
        x = self.p2(self.r2(self.c2(x)))
        return self.dequant(self.f2(self.r3(self.f1(torch.flatten(x, 1)))))


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting: 1x49x10 MFCC input, depthwise-separable blocks, AvgPool."""
    def __init__(self, c=64):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = cbr(1, c, (10, 4), (2, 2), (5, 1))
        self.blocks = nn.Sequential(*[nn.Sequential(cbr(c, c, 3, 1, 1, groups=c), cbr(c, c, 1)) for _ in range(4)])
        self.pool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(c, 12)

    def forward(self, x):
        x = self.blocks(self.stem(self.quant(x)))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride, relu_add):
        super().__init__()
        self.a = cbr(cin, cout, 3, stride, 1)
        self.b = cbr(cout, cout, 3, 1, 1, relu=False)
        self.short = cbr(cin, cout, 1, stride, 0, relu=False) if stride != 1 or cin != cout else None
        self.add = nn.quantized.FloatFunctional()
        self.relu_add = relu_add
        self.relu = nn.ReLU()

    def forward(self, x):
        s = x if self.short is None else self.short(x)
        y = self.b(self.a(x))
        return self.add.add_relu(y, s) if self.relu_add else self.relu(self.add.add(y, s))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification (32x32x3): residual add and add_relu."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = cbr(3, 16, 3, 1, 1)
        self.s1, self.s2, self.s3 = ResBlock(16, 16, 1, True), ResBlock(16, 32, 2, False), ResBlock(32, 64, 2, True)
        self.pool, self.fc = nn.AvgPool2d(8), nn.Linear(64, 10)

    def forward(self, x):
        x = self.s3(self.s2(self.s1(self.stem(self.quant(x)))))
        return self.dequant(self.fc(torch.flatten(self.pool(x), 1)))


class MobileNetV1(nn.Module):
    """MobileNetV1 width 0.25 (visual wake words), on small inputs."""
    def __init__(self, alpha=0.25):
        super().__init__()
        c = lambda n: max(8, int(n * alpha))   # noqa: E731
        cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        layers, cin = [cbr(3, c(32), 3, 2, 1)], c(32)
        for cout, s in cfg:
            layers += [cbr(cin, cin, 3, s, 1, groups=cin), cbr(cin, c(cout), 1)]
            cin = c(cout)
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 2)

    def forward(self, x):
        x = self.features(self.quant(x))
        x = F.avg_pool2d(x, 2)
        return self.dequant(self.fc(torch.flatten(x, 1)))


class Conv1dNet(nn.Module):
    """A sensor net: Conv1d with dilation, stride, groups; 1-D max and average pooling."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.c1, self.r1 = nn.Conv1d(6, 16, 5, stride=2, padding=2), nn.ReLU()
        self.c2, self.r2 = nn.Conv1d(16, 16, 3, dilation=2, padding=2, groups=4), nn.ReLU()
        self.p1 = nn.MaxPool1d(3, 2, 1)
        self.c3 = nn.Conv1d(16, 24, 3, groups=2, bias=False)
        self.p2 = nn.AvgPool1d(3, 2, 1, count_include_pad=False)
        self.fc = nn.Linear(24 * 6, 5)

    def forward(self, x):
        x = self.p1(self.r2(self.c2(self.r1(self.c1(self.quant(x))))))
        x = self.p2(self.c3(x))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class OddGeometry(nn.Module):
    """Non-square kernels, stride (2, 1), padding 0, no bias, channel counts not multiples of 8,
    groups = 2, dilation (1, 2); the output is the last convolution's (no head)."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.c1, self.r1 = nn.Conv2d(3, 7, (3, 5), stride=(2, 1), padding=(1, 0)), nn.ReLU()
        self.c2 = nn.Conv2d(7, 13, (1, 3), bias=False, dilation=(1, 2))
        self.c3 = nn.Conv2d(13, 10, (2, 2), stride=(1, 2), groups=1, padding=0)
        self.c4, self.r4 = nn.Conv2d(10, 6, 3, groups=2, padding=1), nn.ReLU()

    def forward(self, x):
        x = self.c2(self.r1(self.c1(self.quant(x))))
        return self.dequant(self.r4(self.c4(self.c3(x))))


class Pools(nn.Module):
    """Every pooling variant on a convolution's (channels-last) output and on a quantized input (NCHW)."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv = nn.Conv2d(3, 20, 3, padding=1)
        self.pools = nn.ModuleList([
            nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d((2, 3), (1, 2)),
            nn.AvgPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
            nn.AvgPool2d(2, 2, ceil_mode=True), nn.AvgPool2d(3, 1, 1, divisor_override=4), nn.AvgPool2d((2, 4))])

    def forward(self, x):
        q = self.quant(x)
        c = self.conv(q)
        outs = [p(c) for p in self.pools] + [p(q) for p in self.pools]
        outs += [F.avg_pool2d(c, 2), F.max_pool2d(q, 2, 1)]
        return tuple(self.dequant(o) for o in outs)


def _pools_qnnpack_ok():
    return [m for m in Pools().pools]


def build(name, engine, seed=0):
    torch.manual_seed(seed)
    if name == "lenet":
        m = LeNet()
        return convert(m, engine, (8, 1, 32, 32), [["c1", "r1"], ["c2", "r2"], ["f1", "r3"]]), inputs((1, 32, 32))
    if name == "dscnn":
        m = DSCNN(c=32)
        _randomize_bn(m, seed)
        return convert(m, engine, (8, 1, 49, 10), _fuse_cbr(m)), inputs((1, 49, 10))
    if name == "resnet8":
        m = ResNet8()
        _randomize_bn(m, seed)
        return convert(m, engine, (8, 3, 32, 32), _fuse_cbr(m)), inputs((3, 32, 32))
    if name == "mobilenet_v1_025":
        m = MobileNetV1()
        _randomize_bn(m, seed)
        return convert(m, engine, (4, 3, 64, 64), _fuse_cbr(m)), inputs((3, 64, 64))
    if name == "conv1d":
        m = Conv1dNet()
        return convert(m, engine, (8, 6, 56), [["c1", "r1"], ["c2", "r2"]]), inputs((6, 56))
    if name == "odd":
        m = OddGeometry()
        return convert(m, engine, (8, 3, 17, 19), [["c1", "r1"], ["c4", "r4"]]), inputs((3, 17, 19))
    if name == "pools":
        m = Pools()
        if engine == "qnnpack":        # qnnpack: no ceil_mode average pooling (torch leaves cells unwritten)
            m.pools = nn.ModuleList([p for p in m.pools if not (isinstance(p, nn.AvgPool2d) and p.ceil_mode)])
        return convert(m, engine, (4, 3, 15, 15)), inputs((3, 15, 15))
    raise KeyError(name)


FAMILIES = ("lenet", "dscnn", "resnet8", "mobilenet_v1_025", "conv1d", "odd", "pools")


def mismatches(tm, model, xs):
    """(mismatching output elements, total): float32 bit patterns of the dequantized outputs."""
    bad = total = 0
    for x in xs:
        with torch.no_grad():
            expected = tm(torch.from_numpy(x))
        got = model(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            e = e.numpy()
            assert g.shape == e.shape, (g.shape, e.shape)
            bad += int(np.sum(g.astype(np.float32).view(np.uint32) != e.view(np.uint32)))
            total += e.size
    return bad, total
