"""The MLPerf Tiny models on a Cortex-M4F: instructions per inference and per MAC (QEMU mps2-an386
with the TCG plugin of tests/firmware/insncount.c) beside MLPerf Tiny's published Cortex-M4
cycles per MAC, and the footprint from the ELF (flash: arm-none-eabi-size of the model's object;
RAM: its .bss (the arena) and the stack net_run_quantized used, measured by painting it).

    cd tests && PYTHONPATH=../src python ../bench/mlperf_firmware.py [--engine x86|qnnpack] [--models kws,ic]

One net_run_quantized call is counted as the count of a program making 2 calls minus that of a
program making 1 (start-up, printing and net_run drop out). A Cortex-M4 retires at most one
instruction per cycle, so instructions per MAC bound its cycles per MAC from below."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import fastq  # noqa: E402
from fastq import export  # noqa: E402
from firmware import harness  # noqa: E402
import mlperf_tiny as mt  # noqa: E402
from export_insns import count, plugin  # noqa: E402

PAINT = 0xA5A5A5A5
STACK_WINDOW = 16384     # bytes painted below main's stack pointer


def stack_main(name, gen, q):
    """A program: paint the stack below SP, call net_run_quantized once, print the deepest byte
    it wrote (bytes below main's SP) and the .bss arena size."""
    ct = "uint8_t" if gen.qinput_dtype == "uint8" else "int8_t"
    ot = "uint8_t" if gen.qoutput_dtype == "uint8" else "int8_t"
    return "\n".join([
        "#include <stdio.h>", "#include <stdint.h>", '#include "%s.h"' % name,
        "static const %s qin[%d] = {%s};" % (ct, len(q), ", ".join(str(int(v)) for v in q)),
        "static %s qout[%d];" % (ot, gen.output_size if gen.qoutput_dtype else 1),
        "__attribute__((noinline)) static uint32_t *sp_now(void) { uint32_t *sp; __asm volatile (\"mov %0, sp\" : \"=r\"(sp)); return sp; }",
        "int main(void)", "{",
        "    uint32_t *sp = sp_now(), *p, *lo = sp - %d;" % (STACK_WINDOW // 4),
        "    for (p = lo; p < sp - 16; p++) *p = 0x%08xu;" % PAINT,
        "    %s_run_quantized(qin, qout);" % name,
        "    for (p = lo; p < sp - 16 && *p == 0x%08xu; p++) {}" % PAINT,
        '    printf("STACK %lu\\n", (unsigned long)((char *)sp - (char *)p));',
        '    printf("DONE\\n");', "    return 0;", "}", ""])


def footprint(gen, q, workdir):
    t = harness.TARGETS["cortex-m4f"]
    os.makedirs(workdir, exist_ok=True)
    h, c = gen.write(workdir)
    obj = os.path.join(workdir, gen.name + ".o")
    subprocess.run([t.cc] + t.flags + ["-c", c, "-o", obj], check=True)
    out = subprocess.run(["arm-none-eabi-size", obj], capture_output=True, text=True, check=True).stdout.split("\n")[1].split()
    text, data, bss = int(out[0]), int(out[1]), int(out[2])
    main = os.path.join(workdir, "stack_main.c")
    with open(main, "w") as f:
        f.write(stack_main(gen.name, gen, q))
    exe = os.path.join(workdir, "stack.elf")
    subprocess.run([t.cc] + t.flags + ["-I", workdir] + t.link + [main, c, "-o", exe], check=True)
    rc, stdout, err = harness.run(t, exe, timeout=600)
    stack = int([line for line in stdout.splitlines() if line.startswith("STACK")][0].split()[1])
    return {"flash": text + data, "weights": gen.footprint.weights, "code": text + data - gen.footprint.weights,
            "arena": bss, "stack": stack, "ram": bss + data + stack, "activations": gen.activation_bytes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="x86", choices=("x86", "qnnpack"))
    ap.add_argument("--models", default="kws,vww,ic,ad")
    ap.add_argument("--portable", action="store_true", help="also count the portable loop on the M4F")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        so = plugin(tmp)
        for name in args.models.split(","):
            model = fastq.from_torch(mt.quantized(name, args.engine), engine=args.engine)
            gen = export.generate(model, name=name, input_shape=mt.MODELS[name][1])
            x = mt.inputs(name, 1)
            first = next(n for n in model.nodes if type(n.layer).__name__ == "Quantize")
            q = model.run_values(x)[first.outputs[0]].values.reshape(1, -1)
            case = harness.Case(name, gen, x.reshape(1, -1), q)
            macs = mt.macs(name)
            per = {}
            for v in ["cortex-m4f"] + (["cortex-m4f-portable"] if args.portable else []):
                t = harness.TARGETS[v]
                d = os.path.join(tmp, name, v)
                per[v] = count(t, case, 2, d, so) - count(t, case, 1, d, so)
            fp = footprint(gen, q[0], os.path.join(tmp, name, "fp"))
            rows.append((name, macs, per, fp))
            sys.stderr.write("%s done\n" % name)
    print("engine %s; Cortex-M4F (mps2-an386, -O2 -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard)\n" % args.engine)
    print("| model | MACs | M4F instructions / inference | per MAC | TFLM reference cycles / MAC | best published "
          "cycles / MAC |%s" % (" portable loop / MAC |" if args.portable else ""))
    print("|---|---|---|---|---|---|%s" % ("---|" if args.portable else ""))
    for name, macs, per, fp in rows:
        pm, ref, best = mt.PUBLISHED[name]
        n = per["cortex-m4f"]
        print("| %s | %.3f M | %.3f M | %.2f | %.1f | %.2f |%s" % (
            name, macs / 1e6, n / 1e6, n / macs, ref * 120000 / pm, best * 120000 / pm,
            (" %.2f |" % (per["cortex-m4f-portable"] / macs)) if args.portable else ""))
    print("\n| model | flash (bytes) | weights + constants | code | RAM (bytes) | arena | stack (painted) | "
          "sum of all activations |")
    print("|---|---|---|---|---|---|---|---|")
    for name, macs, per, fp in rows:
        print("| %s | %d | %d | %d | %d | %d | %d | %d |" % (name, fp["flash"], fp["weights"], fp["code"], fp["ram"],
                                                        fp["arena"], fp["stack"], fp["activations"]))


if __name__ == "__main__":
    main()
