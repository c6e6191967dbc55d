"""Small float CNNs of the families deployed on microcontrollers, with the module lists a torch
user gives fuse_modules for each (the oracle's fusion, written by hand, not derived by fastq)."""
import torch
import torch.nn as nn
from torch.ao.nn.quantized import FloatFunctional


def randomize_bn(model, seed):
    """Running statistics and affine parameters away from their initial 0 / 1, so that folding
    changes the weights (a fresh BatchNorm folds to almost the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.05)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=g) * 0.5 + 1)
                m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu3 = nn.Linear(16 * 4 * 4, 32), nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))

    fuse = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]
    shape = (1, 28, 28)


def conv_bn_relu(cin, cout, k, stride=1, padding=0, groups=1, bias=False):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias),
                         nn.BatchNorm2d(cout), nn.ReLU())


class DSCNN(nn.Module):
    """Keyword spotting DS-CNN: a strided stem, depthwise-separable blocks (depthwise 3x3 and
    pointwise 1x1, each Conv + BN + ReLU), average pooling, a Linear head."""

    def __init__(self, c=12):
        super().__init__()
        self.stem = conv_bn_relu(1, c, (5, 3), stride=(2, 1), padding=(2, 1), bias=True)
        self.dw1, self.pw1 = conv_bn_relu(c, c, 3, padding=1, groups=c), conv_bn_relu(c, c, 1)
        self.dw2, self.pw2 = conv_bn_relu(c, c, 3, padding=1, groups=c), conv_bn_relu(c, 10, 1)
        self.pool = nn.AvgPool2d((4, 5))
        self.fc = nn.Linear(10, 6)

    def forward(self, x):
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))

    fuse = [[p + ".0", p + ".1", p + ".2"] for p in ("stem", "dw1", "pw1", "dw2", "pw2")]
    shape = (1, 8, 5)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.add = FloatFunctional()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.down is None else self.down(x)
        return self.add.add_relu(y, skip)

    def fuse_list(self, prefix):
        out = [[prefix + "conv1", prefix + "bn1", prefix + "relu1"], [prefix + "conv2", prefix + "bn2"]]
        if self.down is not None:
            out.append([prefix + "down.0", prefix + "down.1"])
        return out


class ResNet8(nn.Module):
    """MLPerf Tiny ResNet-8 shape at a small width: stem, three residual stages (add_relu; the
    last stage joins with a plain add and a separate ReLU), global pooling, Linear."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = conv_bn_relu(3, c, 3, padding=1)
        self.s1, self.s2, self.s3 = BasicBlock(c, c, 1), BasicBlock(c, 2 * c, 2), BasicBlock(2 * c, 12, 2)
        self.extra = nn.Conv2d(12, 12, 1)
        self.plus, self.relu = FloatFunctional(), nn.ReLU()
        self.pool = nn.AvgPool2d(4)                 # global: the 4x4 map of the last stage
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        x = self.s3(self.s2(self.s1(self.stem(x))))
        x = self.relu(self.plus.add(self.extra(x), x))
        return self.fc(torch.flatten(self.pool(x), 1))

    @property
    def fuse(self):
        out = [["stem.0", "stem.1", "stem.2"]]
        for s in ("s1", "s2", "s3"):
            out += getattr(self, s).fuse_list(s + ".")
        return out

    shape = (3, 16, 16)


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 0.25 (channels 8, 16, 32, ...), ReLU6 after each Conv + BN (torch
    fuses Conv + BN only: ReLU6 stays a module of its own), 7 channels in the head."""

    def __init__(self):
        super().__init__()
        cfg = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2)]
        layers = [nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()]
        for cin, cout, s in cfg:
            layers += [nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                       nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(3)                 # global: the 3x3 map of the last block
        self.fc = nn.Linear(64, 7)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    @property
    def fuse(self):
        return [["features.%d" % i, "features.%d" % (i + 1)] for i in range(0, len(self.features), 3)]

    shape = (3, 24, 24)


class SensorNet(nn.Module):
    """A Conv1d net on 6 sensor channels: dilation, stride, groups = 2, BatchNorm1d, ReLU6, max
    (ceil_mode) and average pooling, a FloatFunctional cat and mul, a Linear + BatchNorm1d."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.r1 = nn.Conv1d(6, 10, 5, stride=2, padding=2), nn.BatchNorm1d(10), nn.ReLU()
        self.c2, self.b2 = nn.Conv1d(10, 10, 3, dilation=2, groups=2, padding=2, bias=False), nn.BatchNorm1d(10)
        self.hs = nn.ReLU6()
        self.c3, self.r3 = nn.Conv1d(10, 6, 1), nn.ReLU()
        self.pool = nn.MaxPool1d(2, ceil_mode=True)
        self.cat, self.mul = FloatFunctional(), FloatFunctional()
        self.gap = nn.AvgPool1d(10)
        self.fc, self.bn = nn.Linear(16, 8), nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        a = self.r1(self.b1(self.c1(x)))
        b = self.hs(self.b2(self.c2(a)))
        c = self.r3(self.c3(b))
        y = self.cat.cat([self.pool(b), self.pool(self.mul.mul(c, c))], dim=1)
        return self.head(self.bn(self.fc(torch.flatten(self.gap(y), 1))))

    fuse = [["c1", "b1", "r1"], ["c2", "b2"], ["c3", "r3"], ["fc", "bn"]]
    shape = (6, 37)


class Pools(nn.Module):
    """Pooling variants between convolutions: max (padding, ceil_mode), average (padding,
    count_include_pad off; count_include_pad on, stride 1)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 5, 3, padding=1)
        self.mp = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.c2, self.r2 = nn.Conv2d(5, 6, (3, 1)), nn.ReLU()
        self.ap = nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)
        self.c3 = nn.Conv2d(6, 4, 1, bias=False)
        self.aap = nn.AvgPool2d((2, 3), 1, padding=1)
        self.fc = nn.Linear(4 * 4 * 3, 3)

    def forward(self, x):
        x = self.ap(self.r2(self.c2(self.mp(self.c1(x)))))
        return self.fc(torch.flatten(self.aap(self.c3(x)), 1))

    fuse = [["c2", "r2"]]
    shape = (2, 13, 11)


FAMILIES = {"lenet": LeNet, "dscnn": DSCNN, "resnet8": ResNet8, "mobilenet_v1": MobileNetV1,
            "sensor1d": SensorNet, "pools": Pools}


def build(family, seed=0):
    torch.manual_seed(seed)
    return randomize_bn(FAMILIES[family](), seed).eval()
