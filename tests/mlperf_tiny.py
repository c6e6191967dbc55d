"""The four MLPerf Tiny v1 models in torch (architectures of the MLPerf Tiny reference
submission, github.com/mlcommons/tiny, benchmark/training), random weights from a fixed seed,
quantized by torch's eager flow (fuse_modules, prepare, calibrate on random data, convert).

    MODELS: name -> (builder, input shape without the batch, MACs per inference)
    quantized(name, engine) -> the converted torch model
BatchNorm statistics are randomized so that folding them changes the weights."""
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.ao.quantization as tq


def _cbr(cin, cout, k, stride=1, padding=0, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*(layers + ([nn.ReLU()] if relu else [])))


class DSCNN(nn.Module):
    """Keyword spotting: 1x49x10 MFCC features, a 10x4 stride-2 convolution, four depthwise-separable
    blocks of 64 channels, global average pooling, 12 classes."""
    def __init__(self, c=64, classes=12):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = _cbr(1, c, (10, 4), 2, (5, 1))
        self.blocks = nn.Sequential(*[nn.Sequential(_cbr(c, c, 3, 1, 1, groups=c), _cbr(c, c, 1)) for _ in range(4)])
        self.pool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class MobileNetV1(nn.Module):
    """Visual wake words: MobileNetV1 with width 0.25 on 3x96x96, 2 classes."""
    CFG = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)] + [(128, 128, 1)] * 5 + \
          [(128, 256, 2), (256, 256, 1)]

    def __init__(self, classes=2):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = _cbr(3, 8, 3, 2, 1)
        self.blocks = nn.Sequential(*[nn.Sequential(_cbr(i, i, 3, s, 1, groups=i), _cbr(i, o, 1))
                                      for i, o, s in self.CFG])
        self.pool = nn.AvgPool2d(3)
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        x = self.pool(self.blocks(self.stem(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = _cbr(cin, cout, 3, stride, 1)
        self.b = _cbr(cout, cout, 3, 1, 1, relu=False)
        self.short = _cbr(cin, cout, 1, stride, 0, relu=False) if stride != 1 or cin != cout else None
        self.add = nn.quantized.FloatFunctional()

    def forward(self, x):
        s = x if self.short is None else self.short(x)
        return self.add.add_relu(self.b(self.a(x)), s)


class ResNet8(nn.Module):
    """Image classification: ResNet-8 on 3x32x32 (CIFAR-10), three residual stacks of 16, 32, 64."""
    def __init__(self, classes=10):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.stem = _cbr(3, 16, 3, 1, 1)
        self.stacks = nn.Sequential(ResBlock(16, 16, 1), ResBlock(16, 32, 2), ResBlock(32, 64, 2))
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.stacks(self.stem(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class AutoEncoder(nn.Module):
    """Anomaly detection: the fully connected autoencoder 640-128-128-128-128-8-128-128-128-128-640
    (the reference's BatchNorm folded into the Linear layers), ReLU after every layer but the last."""
    DIMS = (640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640)

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        layers = []
        for i, (k, n) in enumerate(zip(self.DIMS[:-1], self.DIMS[1:])):
            layers.append(nn.Linear(k, n))
            if i < len(self.DIMS) - 2:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def _macs_conv(model, shape):
    total = []

    def hook(m, i, o):
        if isinstance(m, nn.Conv2d):
            total.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, nn.Linear):
            total.append(m.in_features * m.out_features)
    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros((1,) + shape))
    for h in hs:
        h.remove()
    return sum(total)


MODELS = {
    "kws": (DSCNN, (1, 49, 10)),
    "vww": (MobileNetV1, (3, 96, 96)),
    "ic": (ResNet8, (3, 32, 32)),
    "ad": (AutoEncoder, (640,)),
}
# MLPerf Tiny v1.0 / v1.1 closed division, Cortex-M4 at 120 MHz (ms): the TFLite Micro reference
# submission and the best published result; cycles per MAC = ms * 120 000 / MACs
PUBLISHED = {"kws": (2.657e6, 181.9, 43.2), "vww": (7.490e6, 600.6, 88.9), "ic": (12.50e6, 704.2, 165.1),
             "ad": (0.264e6, 10.05, 4.05)}


def _fuse_groups(model):
    groups = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential) and len(mod) >= 2 and isinstance(mod[0], nn.Conv2d) \
                and isinstance(mod[1], nn.BatchNorm2d):
            groups.append([name + ".0", name + ".1"] + ([name + ".2"] if len(mod) > 2 else []))
        if isinstance(mod, nn.Sequential) and isinstance(mod[0], nn.Linear):
            for i in range(len(mod) - 1):
                if isinstance(mod[i], nn.Linear) and isinstance(mod[i + 1], nn.ReLU):
                    groups.append(["%s.%d" % (name, i), "%s.%d" % (name, i + 1)])
    return groups


def float_model(name, seed=0):
    torch.manual_seed(seed)
    cls, shape = MODELS[name]
    m = cls().eval()
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m


def macs(name):
    return _macs_conv(float_model(name), MODELS[name][1])


def quantized(name, engine, seed=0, calibration=4):
    """The model converted by torch under `engine` ("x86" or "qnnpack"), calibrated on random
    normal inputs."""
    m = float_model(name, seed)
    shape = MODELS[name][1]
    groups = _fuse_groups(m)
    if groups:
        tq.fuse_modules(m, groups, inplace=True)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        m.qconfig = tq.get_default_qconfig(engine)
        gen = torch.Generator().manual_seed(seed + 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = tq.prepare(m)
            with torch.no_grad():
                for _ in range(calibration):
                    p(torch.randn((2,) + shape, generator=gen))
            return tq.convert(p)
    finally:
        torch.backends.quantized.engine = prev


def inputs(name, count, seed=0):
    """Random normal samples, some past the calibrated range."""
    rng = np.random.default_rng(100 + seed)
    return (rng.standard_normal((count,) + MODELS[name][1]) * 1.5).astype(np.float32)
