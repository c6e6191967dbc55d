"""Where one MLPerf Tiny model's Cortex-M4F instructions go: a per-function profile of one
net_run_quantized call (QEMU mps2-an386 with the TCG plugin tests/firmware/insnprofile.c, which
counts executions per translated block; blocks are mapped to functions by the ELF's symbols).
Built with -fno-inline-functions-called-once so that each layer's function keeps its own symbol
(the totals stay within ~1% of bench/mlperf_firmware.py's).

    cd tests && PYTHONPATH=../src python ../bench/firmware_profile.py vww x86 [--portable] [--top N]

One call is the program making 2 net_run_quantized calls minus the one making 1."""
from __future__ import annotations

import argparse
import bisect
import collections
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import fastq  # noqa: E402
from fastq import export  # noqa: E402
from firmware import harness  # noqa: E402
import mlperf_tiny as mt  # noqa: E402


def functions(exe):
    """Sorted (start, size, name) of the ELF's code symbols."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", exe], capture_output=True, text=True,
                         check=True).stdout
    syms = []
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tT":
            syms.append((int(p[0], 16) & ~1, int(p[1], 16), p[3]))
    return sorted(syms)


def per_function(target, case, reps, workdir, so):
    exe = harness.build(target, [case], workdir, repeat=reps, repeat_run=False,
                        extra_flags=["-fno-inline-functions-called-once"])
    prof = os.path.join(workdir, "profile.txt")
    subprocess.run(target.run[:1] + ["-plugin", so] + target.run[1:] + [exe], env=dict(os.environ, PROF_OUT=prof),
                   capture_output=True, timeout=900, check=True)
    syms = functions(exe)
    starts = [s[0] for s in syms]
    per = collections.Counter()
    with open(prof) as f:
        for line in f:
            pc, n, c = (int(v, 16 if i == 0 else 10) for i, v in enumerate(line.split()))
            i = bisect.bisect_right(starts, pc) - 1
            name = syms[i][2] if i >= 0 and pc < syms[i][0] + syms[i][1] else "0x%x" % pc
            per[name] += n * c
    return per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=sorted(mt.PUBLISHED))
    ap.add_argument("engine", choices=("x86", "qnnpack"))
    ap.add_argument("--portable", action="store_true", help="profile the portable loop (-DFASTQ_PORTABLE)")
    ap.add_argument("--top", type=int, default=40, help="functions to print (default 40)")
    args = ap.parse_args()
    if args.top < 1:
        ap.error("--top %d: expected a positive count" % args.top)
    model = fastq.from_torch(mt.quantized(args.model, args.engine), engine=args.engine)
    gen = export.generate(model, name=args.model, input_shape=mt.MODELS[args.model][1])
    x = mt.inputs(args.model, 1)
    first = next(n for n in model.nodes if type(n.layer).__name__ == "Quantize")
    q = model.run_values(x)[first.outputs[0]].values.reshape(1, -1)
    case = harness.Case(args.model, gen, x.reshape(1, -1), q)
    target = harness.TARGETS["cortex-m4f-portable" if args.portable else "cortex-m4f"]
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, "libinsnprofile.so")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", so,
                        os.path.join(HERE, "..", "tests", "firmware", "insnprofile.c")], check=True)
        one, two = (per_function(target, case, r, os.path.join(tmp, str(r)), so) for r in (1, 2))
    diff = {k: two[k] - one.get(k, 0) for k in two if two[k] - one.get(k, 0) > 0}
    total = sum(diff.values())
    print("%s %s (%s): %d instructions per net_run_quantized, %.3f per MAC" % (
        args.model, args.engine, target.name, total, total / mt.macs(args.model)))
    for name, v in sorted(diff.items(), key=lambda kv: -kv[1])[:args.top]:
        print("%10d %5.1f%%  %s" % (v, 100.0 * v / total, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
