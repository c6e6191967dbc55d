"""Instructions per inference of exported models: the ARM DSP and NEON dot-product fast paths
against the portable loop, counted under QEMU with a TCG plugin (tests/firmware/insncount.c).

    cd tests && PYTHONPATH=../src python ../bench/export_insns.py

Each program runs net_run_quantized on one sample R times; the count at R = 1 is subtracted
from the count at R = 1 + REPS, so start-up, printing and net_run drop out. Instruction counts
are not cycles (an SMLAD or SDOT is one instruction doing 2 or 16 MACs, a soft-float call is
dozens), but on in-order cores like the Cortex-M4 they track time closely."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastq  # noqa: E402
from fastq import export  # noqa: E402
from fastq.layers.elementwise import Dequantize, Quantize  # noqa: E402
from fastq.model import Model  # noqa: E402
from firmware import harness  # noqa: E402

REPS = 4
VARIANTS = ["cortex-m4f", "cortex-m4f-portable", "cortex-m3", "aarch64-dotprod", "aarch64"]


def mlp(requant, dtype, dims=(784, 256, 10), seed=0):
    rng = np.random.default_rng(seed)
    sx, zx = 0.02, (0 if dtype == "int8" else 128)
    layers = [Quantize(sx, zx, dtype)]
    s_in = sx
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        w = fastq.QTensor(rng.integers(-127, 128, (n, k)).astype(np.int8), rng.uniform(1e-3, 3e-3, n),
                          np.zeros(n, np.int64), axis=0)
        sy = s_in * 2e-3 * 128 * np.sqrt(k) * 0.15
        layers.append(fastq.QuantizedLinear(w, rng.standard_normal(n).astype(np.float32), sy, 3 if dtype == "uint8" else -120,
                                            relu=i == 0, requant=requant, dtype=dtype))
        s_in = sy
    layers.append(Dequantize())
    return Model(layers)


def plugin(workdir):
    so = os.path.join(workdir, "libinsncount.so")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", so, os.path.join(HERE, "..", "tests", "firmware", "insncount.c")],
                   check=True)
    return so


def count(target, case, reps, workdir, so):
    case = harness.Case(case.name, case.gen, case.x[:1], case.q[:1])
    exe = harness.build(target, [case], workdir, repeat=reps, repeat_run=False)
    cmd = target.run[:1] + ["-plugin", so] + target.run[1:]
    p = subprocess.run(cmd + [exe], capture_output=True, text=True, timeout=600)
    line = [l for l in (p.stderr + p.stdout).splitlines() if l.startswith("insns:")]
    if not line:
        raise RuntimeError("%s: no count (%s)" % (target.name, p.stderr[-500:]))
    return int(line[-1].split()[1])


def host_time(case, workdir, reps=2000):
    """Seconds per net_run_quantized call of the host build (portable loop, gcc -O2): the run
    at 1 + reps calls minus the run at 1 call, best of 3."""
    import time
    t = harness.TARGETS["host"]
    best = {}
    for r in (1, 1 + reps):
        exe = harness.build(t, [case], os.path.join(workdir, "host%d" % r), repeat=r, repeat_run=False)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe], capture_output=True, check=True)
            runs.append(time.perf_counter() - t0)
        best[r] = min(runs)
    return (best[1 + reps] - best[1]) / reps


def main():
    models = {"fbgemm uint8 784-256-10": mlp("fbgemm", "uint8"), "tflite int8 784-256-10": mlp("tflite", "int8")}
    with tempfile.TemporaryDirectory() as tmp:
        so = plugin(tmp)
        print("| model | target | instructions / inference | vs portable |")
        print("|---|---|---|---|")
        for label, model in models.items():
            gen = export.generate(model, name="net")
            x = np.random.default_rng(1).standard_normal((1, gen.input_size)).astype(np.float32)
            q = model[0](x).values
            case = harness.Case("net", gen, x, q)
            per = {}
            for v in VARIANTS:
                t = harness.TARGETS[v]
                if t.missing():
                    continue
                d = os.path.join(tmp, v)
                a = count(t, case, 1, d, so)
                b = count(t, case, 1 + REPS, d, so)
                per[v] = (b - a) / REPS
            case1 = harness.Case("net", gen, x[:1], q[:1])
            host_s = host_time(case1, tmp)
            import time
            qt, inner = model[0](x), list(model)[1:-1]     # the same integers through fastq's layers
            t0 = time.perf_counter()
            for _ in range(200):
                v = qt
                for layer in inner:
                    v = layer(v)
            fq_s = (time.perf_counter() - t0) / 200
            print("| %s | host (x86-64, portable loop, gcc -O2) | %.1f us per call (fastq in Python: %.1f us, %.1fx) | |"
                  % (label, host_s * 1e6, fq_s * 1e6, fq_s / host_s))
            for v, n in per.items():
                base = {"cortex-m4f": "cortex-m4f-portable", "aarch64-dotprod": "aarch64"}.get(v)
                ratio = "%.2fx fewer" % (per[base] / n) if base in per else ""
                print("| %s | %s | %.0f | %s |" % (label, v, n, ratio))


if __name__ == "__main__":
    main()
