"""What `fastq bench` measures, as a list of steps, and the results as one JSON-ready dict.

Levels: "quick" (seconds: tiny counts and shapes, for tests and CI), "default" (about a
minute), "full" (larger layers, more M values and repeats). Every figure is single-threaded unless
`threads` says otherwise, so it compares with the one-core peaks of fastq._bench.
Steps that need torch or onnxruntime are skipped with a note when those are missing.
"""
from __future__ import annotations

import os
import platform

import numpy as np

import fastq

from . import measure, models as bm, peers
from .models import quiet_torch

try:
    from ... import _bench          # the C microbenchmarks: an optional extension (setup.py)
    _BENCH_MISSING = None
except ImportError as e:
    _bench, _BENCH_MISSING = None, str(e)

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
        if _bench is None:
            self.skip("C microbenchmarks", "fastq._bench is not built (%s)" % _BENCH_MISSING)
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

    def thread_settings(self):
        """fastq and torch use `threads` inside, and get their settings back afterwards."""
        return measure.threads(self.threads)

    def skip(self, what, why):
        note = "%s: %s" % (what, why)
        if note not in self.results["skipped"]:
            self.results["skipped"].append(note)

    # -- C microbenchmarks ------------------------------------------------------------
    def core_clock(self):
        ghz = _bench.core_ghz(self.cfg["add_n"], self.cfg["repeats"], refresh=True)
        self.results["core_ghz"] = ghz
        self.results["core_ghz_method"] = "dependent chain of 64-bit integer adds, 1 per cycle"

    def scalar(self, dtype, mode):
        ns = _bench.scalar_mul_ns(dtype, mode, self.cfg["scalar_n"], self.cfg["repeats"])
        ghz = self.results["core_ghz"]
        self.results["scalar"].append({"dtype": dtype, "mode": mode, "ns": ns, "cycles": ns * ghz,
                                       "ops_per_s": 1e9 / ns})

    def simd(self, instr, bits):
        row = _bench.simd_throughput(instr, bits, self.cfg["simd_n"], self.cfg["repeats"],
                                     ghz=self.results["core_ghz"])
        self.results["simd"].append(row)
        key = {"vpdpbusd": "int8_gops", "vpmaddwd": "int16_gops", "vpmulld": "int32_mul_gops",
               "vfmadd231ps": "fp32_gflops", "vfmadd231pd": "fp64_gflops"}[instr]
        self.results["peaks"][key] = max(self.results["peaks"].get(key, 0.0), row["ops_per_s"] / 1e9)

    # -- one Linear layer against M: the layer peers of bench/test_bench_peers.py -------------
    def layer_setup(self):
        k = n = self.cfg["layer_kn"]
        self.results["layer"] = {"k": k, "n": n, "rows": []}

    def layer_row(self, m):
        k, n = self.results["layer"]["k"], self.results["layer"]["n"]
        peak = self.results["peaks"].get("int8_gops")
        ops = measure.matmul_ops(m, k, n)
        for name, build in peers.LAYER_PEERS.items():
            impl = peers.LABELS[name]
            try:
                fn = build(m, k, n, np.random.default_rng(m), threads=self.threads)
            except ImportError as e:
                self.skip(impl, str(e))
                continue
            s = measure.best_seconds(fn, self.cfg["min_time"], self.cfg["repeats"])
            g = measure.gops(ops, s)
            self.results["layer"]["rows"].append({
                "impl": impl, "m": m, "seconds": s, "gops": g, "pct_int8_peak": measure.pct_of_peak(g, peak)})

    # -- a whole MLP ---------------------------------------------------------------------
    def mlp(self):
        sizes = list(self.cfg["mlp"])
        self.results["mlp"] = {"sizes": sizes, "rows": [], "weights_bytes": {}}
        try:
            bm.require_torch()
        except ImportError as e:
            self.skip("MLP", str(e))
            return
        models = bm.mlp_models(sizes, "x86")
        self.results["mlp"]["weights_bytes"] = models["weights"]
        rng = np.random.default_rng(0)
        mismatches = 0
        for batch in self.cfg["mlp_batches"]:
            x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
            mismatches += bm.mlp_mismatches(models, x)
            for impl, fn in bm.mlp_calls(models, x).items():
                s = measure.best_seconds(fn, self.cfg["min_time"], self.cfg["repeats"])
                self.results["mlp"]["rows"].append({
                    "impl": impl, "batch": batch, "seconds": s, "samples_per_s": batch / s})
        self.results["mlp"]["fastq_vs_torch_mismatches"] = mismatches
