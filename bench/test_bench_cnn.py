"""Whole convolutional models, one thread, batch 1 and 32, ratios from one run: fastq
(from_torch of the converted model) against torch's converted model (engine x86) and ONNX
Runtime (the float model exported with torch.onnx.export(dynamo=False), quantize_static QDQ,
per-channel int8 weights, uint8 activations: ONNX Runtime's fast form on x86).

    PYTHONPATH=src python -m pytest bench/test_bench_cnn.py --benchmark-only -s [--quick]

Models (tests/cnn_models.py): DS-CNN (64 channels, 1x49x10), ResNet-8 (3x32x32),
MobileNetV1-0.25 at 96x96; torchvision's quantizable resnet18 at 112x112 (built without
weights, its own fuse_model; left out with a note when torchvision is absent: see
tests/torchvision_helpers.py). Before timing, fastq's output is checked bit for bit against
torch's (the model the user converted); ONNX Runtime computes its own quantization, so only
its time is compared."""
import copy
import os
import sys
import tempfile
import warnings

import numpy as np
import pytest

from conftest import is_quick
import fastq
from fastq.tools.bench import measure

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

torch = pytest.importorskip("torch")
import cnn_models as CM  # noqa: E402



def resnet18():
    """torchvision's quantizable resnet18 (float, unfused), random weights."""
    from torchvision_helpers import quantizable_models
    return quantizable_models().resnet18(weights=None, quantize=False)


MODELS = {   # name -> (float module builder, input shape of one sample)
    "DS-CNN": (lambda: CM.DSCNN(c=64), (1, 49, 10)),
    "ResNet-8": (CM.ResNet8, (3, 32, 32)),
    "MobileNetV1-0.25 96x96": (CM.MobileNetV1, (3, 96, 96)),
    "resnet18 112x112": (resnet18, (3, 112, 112)),
}
BATCHES = (1, 32)
QUICK_SIZES = True       # --quick shortens the timing loops (same models and batches)


def build(name, seed=0):
    """(float module, torch converted module under engine x86)."""
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    m = make()
    CM._randomize_bn(m, seed)
    m.eval()
    float_model = copy.deepcopy(m)
    torch.backends.quantized.engine = "x86"
    if hasattr(m, "fuse_model"):     # torchvision's quantizable models fuse their own modules
        m.fuse_model()
        fuse = ()
    else:
        fuse = CM._fuse_cbr(m)
    return float_model, CM.convert(m, "x86", (8,) + shape, fuse, seed=seed)


def available_models():
    """MODELS' names whose builders run here (resnet18 needs torchvision), printing why not."""
    names = []
    for name in MODELS:
        try:
            MODELS[name][0]()
        except (ImportError, pytest.skip.Exception) as e:
            print("%s left out: %s" % (name, e))
            continue
        names.append(name)
    return names


def ort_quantized(float_model, shape, seed=0):
    """An ONNX Runtime session of the float model, quantized static QDQ per-channel, uint8 activations."""
    ort = pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            g = np.random.default_rng(seed)
            self.data = iter([{"x": g.standard_normal((8,) + shape).astype(np.float32)} for _ in range(3)])

        def get_next(self):
            return next(self.data, None)

    with tempfile.TemporaryDirectory() as d:
        f, q = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(float_model, torch.randn((1,) + shape), f, dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17)
            quantize_static(f, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(q, opts, providers=["CPUExecutionProvider"])


def test_cnn_models(benchmark, request):
    quick = is_quick(request.config)
    min_time = 0.02 if quick else 0.1
    rows = []
    with measure.threads(1):
        for name in available_models():
            float_model, tm = build(name)
            fm = fastq.from_torch(tm, engine="x86")
            shape = MODELS[name][1]
            try:
                sess = ort_quantized(float_model, shape)
            except Exception as e:      # noqa: BLE001 - a peer that cannot build this model is reported, not fatal
                print("onnxruntime: %s: %s" % (name, e))
                sess = None
            for b in BATCHES:
                x = (np.random.default_rng(b).standard_normal((b,) + shape) * 2).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.no_grad():
                    want = tm(xt).numpy()
                got = fm(x)
                assert np.array_equal(np.asarray(got, np.float32).view(np.uint32), want.view(np.uint32)), name
                t_fastq = measure.best_seconds(lambda: fm(x), min_time)

                def run_torch():
                    with torch.no_grad():
                        return tm(xt)
                t_torch = measure.best_seconds(run_torch, min_time)
                t_ort = measure.best_seconds(lambda: sess.run(None, {"x": x}), min_time) if sess else float("nan")
                rows.append((name, b, t_fastq, t_torch, t_ort))
    fm1 = fastq.from_torch(build("DS-CNN")[1], engine="x86")
    x1 = np.zeros((1,) + MODELS["DS-CNN"][1], np.float32)
    benchmark.pedantic(lambda: fm1(x1), rounds=10, iterations=5)
    print("\nbackend %s, one thread" % fastq.get_backend())
    benchmark.extra_info["backend"] = fastq.get_backend()
    benchmark.extra_info["threads"] = 1
    benchmark.extra_info["torch"] = torch.__version__
    try:
        import onnxruntime
        benchmark.extra_info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        benchmark.extra_info["onnxruntime"] = None
    print("%-24s %5s %10s %10s %10s %11s %9s" % ("model", "batch", "fastq ms", "torch ms", "ORT ms", "torch/fastq",
                                                  "ORT/fastq"))
    for name, b, tf, tt, to in rows:
        print("%-24s %5d %10.3f %10.3f %10.3f %11.2f %9.2f" % (name, b, tf * 1e3, tt * 1e3, to * 1e3, tt / tf, to / tf))
        benchmark.extra_info["%s b%d" % (name, b)] = {"fastq_s": tf, "torch_s": tt, "ort_s": to}
