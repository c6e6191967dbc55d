"""What `fastq bench` measures, as a list of steps, and the results as one JSON-ready dict.

Levels: "quick" (seconds: tiny counts and shapes, for tests and CI), "default" (about a
minute), "full" (larger layers, more M values and repeats). Every figure is single-threaded unless
`threads` says otherwise, so it compares with the one-core peaks of fastq._bench.
Steps that need torch or onnxruntime are skipped with a note when those are missing.
"""
from __future__ import annotations

import contextlib
import os
import platform
import time

import numpy as np

import fastq

LEVELS = {
    # scalar_n / simd_n: loop iterations per C call; repeats: best-of for C and Python timings
    "quick": dict(scalar_n=20_000, simd_n=2_000, add_n=200_000, repeats=1, min_time=0.002,
                  layer_kn=64, layer_ms=(1, 8), mlp=(32, 64, 10), mlp_batches=(1, 8)),
    "default": dict(scalar_n=4_000_000, simd_n=1_000_000, add_n=20_000_000, repeats=5, min_time=0.2,
                    layer_kn=1024, layer_ms=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                    mlp=(784, 1024, 1024, 10), mlp_batches=(1, 256)),
    "full": dict(scalar_n=8_000_000, simd_n=2_000_000, add_n=50_000_000, repeats=7, min_time=0.5,
                 layer_kn=2048, layer_ms=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
                 mlp=(784, 2048, 2048, 1024, 10), mlp_batches=(1, 16, 256)),
}

LAYER_IMPLS = ("fastq int8", "torch quantized", "torch float32", "onnxruntime int8")
MLP_IMPLS = ("fastq int8", "torch quantized", "torch float32")


def best_seconds(fn, min_time=0.05, repeats=3):
    """Seconds per call of fn(): the best of `repeats` timings of a loop lasting ~min_time
    (the loop count comes from one warm-up call)."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_time / once))
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        t = (time.perf_counter() - t0) / loops
        best = t if best is None or t < best else best
    return best


def cpu_name():
    """The CPU's model name (plus vendor family/model, which names the core generation)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = {}
            for line in f:
                if ":" in line:
                    key, value = (s.strip() for s in line.split(":", 1))
                    info.setdefault(key, value)
                if not line.strip() and info:
                    break
        name = info.get("model name", "unknown CPU")
        if "cpu family" in info:
            name += " (family %s, model %s)" % (info["cpu family"], info.get("model", "?"))
        return name
    except OSError:
        return platform.processor() or platform.machine()


def _versions():
    out = {"python": platform.python_version(), "numpy": np.__version__, "fastq": fastq.__version__}
    for mod in ("torch", "onnxruntime", "matplotlib"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


class Bench:
    """Runs the steps of one level and collects the results dict."""

    def __init__(self, level="default", threads=1):
        if level not in LEVELS:
            raise ValueError("level: expected one of %s, got %r" % (", ".join(LEVELS), level))
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError("threads: expected a positive int, got %r" % (threads,))
        self.level = level
        self.cfg = LEVELS[level]
        self.threads = threads
        self.results = {
            "fastq_bench": 1, "level": level, "threads": threads,
            "machine": {"cpu": cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(),
                        "fastq_backend": fastq.get_backend(), **_versions()},
            "scalar": [], "simd": [], "peaks": {}, "layer": None, "mlp": None, "skipped": [],
        }

    # -- the plan ---------------------------------------------------------------------
    def steps(self):
        """[(description, callable)]: run them in order (a progress bar counts them)."""
        try:
            from ... import _bench
        except ImportError as e:
            self.skip("C microbenchmarks", "fastq._bench is not built (%s)" % e)
            _bench = None
        steps = []
        if _bench is not None:
            steps += self._c_steps(_bench)
        steps.append(("layer setup", self.layer_setup))
        for m in self.cfg["layer_ms"]:
            steps.append(("layer M=%d" % m, lambda m=m: self.layer_row(m)))
        steps.append(("MLP", self.mlp))
        return steps

    def _c_steps(self, _bench):
        steps = [("core clock (add chain)", self.core_clock)]
        for dtype in _bench.DTYPES:
            for mode in _bench.MODES:
                steps.append(("scalar %s multiply %s" % (dtype, mode),
                              lambda d=dtype, m=mode: self.scalar(d, m)))
        for instr, bits in _bench.simd_available():
            steps.append(("%s %d-bit" % (instr, bits), lambda i=instr, b=bits: self.simd(i, b)))
        return steps

    def run(self, progress=None):
        """Runs every step; progress(i, n, description) is called before each."""
        from .models import quiet_torch
        steps = self.steps()
        with self.thread_settings():
            for i, (desc, fn) in enumerate(steps):
                if progress is not None:
                    progress(i, len(steps), desc)
                with quiet_torch():
                    fn()
        if progress is not None:
            progress(len(steps), len(steps), "done")
        return self.results

    @contextlib.contextmanager
    def thread_settings(self):
        """fastq and torch use `threads` inside, and get their settings back afterwards."""
        torch = None
        try:
            import torch
        except ImportError:
            pass
        before = (fastq.get_num_threads(), torch.get_num_threads() if torch else None)
        fastq.set_num_threads(self.threads)
        if torch:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            fastq.set_num_threads(before[0])
            if torch:
                torch.set_num_threads(before[1])

    def skip(self, what, why):
        note = "%s: %s" % (what, why)
        if note not in self.results["skipped"]:
            self.results["skipped"].append(note)

    # -- C microbenchmarks ------------------------------------------------------------
    def core_clock(self):
        from ... import _bench
        ghz = _bench.core_ghz(self.cfg["add_n"], self.cfg["repeats"], refresh=True)
        self.results["core_ghz"] = ghz
        self.results["core_ghz_method"] = "dependent chain of 64-bit integer adds, 1 per cycle"

    def scalar(self, dtype, mode):
        from ... import _bench
        ns = _bench.scalar_mul_ns(dtype, mode, self.cfg["scalar_n"], self.cfg["repeats"])
        ghz = self.results["core_ghz"]
        self.results["scalar"].append({"dtype": dtype, "mode": mode, "ns": ns, "cycles": ns * ghz,
                                       "ops_per_s": 1e9 / ns})

    def simd(self, instr, bits):
        from ... import _bench
        row = _bench.simd_throughput(instr, bits, self.cfg["simd_n"], self.cfg["repeats"],
                                     ghz=self.results["core_ghz"])
        self.results["simd"].append(row)
        key = {"vpdpbusd": "int8_gops", "vpmaddwd": "int16_gops", "vpmulld": "int32_mul_gops",
               "vfmadd231ps": "fp32_gflops", "vfmadd231pd": "fp64_gflops"}[instr]
        self.results["peaks"][key] = max(self.results["peaks"].get(key, 0.0), row["ops_per_s"] / 1e9)

    # -- one Linear layer against M ----------------------------------------------------
    def layer_setup(self):
        from . import models as bm
        k = n = self.cfg["layer_kn"]
        self.results["layer"] = {"k": k, "n": n, "rows": []}
        self._layer = {}
        try:
            torch = bm.require_torch()
        except ImportError as e:
            self.skip("layer throughput", str(e))
            return
        flin, qlin, xs, xzp = bm.quantized_linear(k, n)
        self._layer = {"torch": torch, "flin": flin, "qlin": qlin, "xs": xs, "xzp": xzp,
                       "fastq": fastq.QuantizedLinear.from_torch(qlin, engine="x86")}
        try:
            self._layer["ort"] = bm.onnx_qlinear(qlin, xs, xzp, self.threads)
        except ImportError as e:
            self.skip("onnxruntime int8", str(e))

    def layer_row(self, m):
        if not self._layer:
            return
        L = self._layer
        torch = L["torch"]
        k, n = self.results["layer"]["k"], self.results["layer"]["n"]
        rng = np.random.default_rng(m)
        x_u8 = rng.integers(0, 128, (m, k), dtype=np.uint8)   # x86 activations: reduce_range
        x_fq = fastq.QTensor(x_u8, L["xs"], L["xzp"])
        x_tq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_u8), L["xs"], L["xzp"])
        x_f = torch.from_numpy(x_u8.astype(np.float32))
        calls = {"fastq int8": lambda: L["fastq"](x_fq), "torch quantized": lambda: L["qlin"](x_tq)}

        def float_call():
            with torch.no_grad():
                return L["flin"](x_f)
        calls["torch float32"] = float_call
        if "ort" in L:
            calls["onnxruntime int8"] = lambda: L["ort"](x_u8)
        peak = self.results["peaks"].get("int8_gops")
        for impl, fn in calls.items():
            s = best_seconds(fn, self.cfg["min_time"], self.cfg["repeats"])
            gops = 2.0 * m * k * n / s / 1e9
            self.results["layer"]["rows"].append({
                "impl": impl, "m": m, "seconds": s, "gops": gops,
                "pct_int8_peak": 100.0 * gops / peak if peak else None})

    # -- a whole MLP ---------------------------------------------------------------------
    def mlp(self):
        from . import models as bm
        sizes = list(self.cfg["mlp"])
        self.results["mlp"] = {"sizes": sizes, "rows": [], "weights_bytes": {}}
        try:
            torch = bm.require_torch()
        except ImportError as e:
            self.skip("MLP", str(e))
            return
        rng = np.random.default_rng(0)
        fmodel = bm.float_mlp(sizes)
        calib = rng.standard_normal((256, sizes[0])).astype(np.float32)
        qmodel = bm.quantized_mlp(fmodel, calib, "x86")
        fq = bm.FastqMLP(qmodel, engine="x86")
        self.results["mlp"]["weights_bytes"] = {
            "fastq int8": bm.fastq_mlp_bytes(fq), "torch quantized": bm.torch_quantized_bytes(qmodel),
            "torch float32": bm.torch_float_bytes(fmodel)}
        mismatches = 0
        for batch in self.cfg["mlp_batches"]:
            x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
            xt = torch.from_numpy(x)
            ours = fq.quantized(fastq.quantize(x, fq.in_scale, fq.in_zero_point)).values
            with torch.no_grad():
                theirs = qmodel.body(qmodel.quant(xt)).int_repr().numpy()
            mismatches += int(np.count_nonzero(ours != theirs))

            def run_torch(model):
                def call():
                    with torch.no_grad():
                        return model(xt)
                return call
            calls = {"fastq int8": lambda: fq(x), "torch quantized": run_torch(qmodel),
                     "torch float32": run_torch(fmodel)}
            for impl, fn in calls.items():
                s = best_seconds(fn, self.cfg["min_time"], self.cfg["repeats"])
                self.results["mlp"]["rows"].append({
                    "impl": impl, "batch": batch, "seconds": s, "samples_per_s": batch / s})
        self.results["mlp"]["fastq_vs_torch_mismatches"] = mismatches
