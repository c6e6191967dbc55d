"""The MLPerf Tiny models on a Cortex-M4F: instructions per inference and per MAC (QEMU mps2-an386
with the TCG plugin of tests/firmware/insncount.c) beside MLPerf Tiny's published Cortex-M4
cycles per MAC, and the footprint from the ELF (flash: arm-none-eabi-size of the model's object;
RAM: its .bss (the arena) and the stack net_run_quantized used, measured by painting it).

    cd tests && PYTHONPATH=../src python ../bench/mlperf_firmware.py [--engine x86,qnnpack] [--models kws,ic] [--portable] \
        [--json PATH] [--png PATH]   # --png needs matplotlib (the bench extra)
    python ../bench/mlperf_firmware.py --from-json PATH --png PATH     # redraw without measuring

One net_run_quantized call is counted as the count of a program making 2 calls minus that of a
program making 1 (start-up, printing and net_run drop out). A Cortex-M4 retires at most one
instruction per cycle, so instructions per MAC bound its cycles per MAC from below."""
from __future__ import annotations

import argparse
import json
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
import insns_plot  # noqa: E402

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


ENGINES = ("x86", "qnnpack")


def comma_list(what, allowed):
    def parse(text):
        items = [v for v in text.split(",") if v]
        bad = [v for v in items if v not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError("%s %r: expected a comma-separated list of %s" % (what, text, ", ".join(allowed)))
        return items
    return parse


def measure(engine, name, portable, tmp):
    """Instructions of one net_run_quantized call per target, and the footprint, of one model."""
    so = plugin(tmp)
    model = fastq.from_torch(mt.quantized(name, engine), engine=engine)
    gen = export.generate(model, name=name, input_shape=mt.MODELS[name][1])
    x = mt.inputs(name, 1)
    first = next(n for n in model.nodes if type(n.layer).__name__ == "Quantize")
    q = model.run_values(x)[first.outputs[0]].values.reshape(1, -1)
    case = harness.Case(name, gen, x.reshape(1, -1), q)
    per = {}
    for v in ["cortex-m4f"] + (["cortex-m4f-portable"] if portable else []):
        t = harness.TARGETS[v]
        d = os.path.join(tmp, engine, name, v)
        per[v] = count(t, case, 2, d, so) - count(t, case, 1, d, so)
    fp = footprint(gen, q[0], os.path.join(tmp, engine, name, "fp"))
    return per, fp


def toolchain():
    t = harness.TARGETS["cortex-m4f"]
    gcc = subprocess.run([t.cc, "-dumpversion"], capture_output=True, text=True, check=True).stdout.strip()
    qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    return "%s %s -O2 %s; %s -M mps2-an386, instructions counted by tests/firmware/insncount.c" % (
        t.cc, gcc, " ".join(f for f in t.flags if f.startswith("-m")), qemu.split("(")[0].strip())


def results_of(models, engines, portable):
    """Every figure the tables and the picture show, as a JSON-ready dict."""
    out = {"models": models, "engines": engines, "portable": portable, "toolchain": toolchain(),
           "macs": {}, "instructions": {}, "per_mac": {}, "footprint": {}, "published": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            macs = mt.macs(name)
            pm, ref, best = mt.PUBLISHED[name]
            out["macs"][name] = macs
            out["published"][name] = {"macs": pm, "tflm_reference_ms": ref, "best_ms": best, "mhz": 120}
            per_mac = {"TFLM reference": ref * 120000 / pm, "best published": best * 120000 / pm}
            for engine in engines:
                per, fp = measure(engine, name, portable, tmp)
                out["instructions"].setdefault(engine, {})[name] = per
                out["footprint"].setdefault(engine, {})[name] = fp
                per_mac["fastq %s M4F DSP" % engine] = per["cortex-m4f"] / macs
                if portable:
                    per_mac["fastq %s M4F portable" % engine] = per["cortex-m4f-portable"] / macs
                sys.stderr.write("%s %s done\n" % (engine, name))
            out["per_mac"][name] = per_mac
    out["caption"] = ("fastq: instructions per net_run_quantized call / MACs, a lower bound on Cortex-M4 cycles; "
                      "%s. Published: MLPerf Tiny v1.0 Cortex-M4 @ 120 MHz latencies, cycles = ms x 120 000 / MACs."
                      % out["toolchain"])
    return out


def print_tables(r):
    portable = r["portable"]
    print("Cortex-M4F: %s\n" % r["toolchain"])
    for engine in r["engines"]:
        print("engine %s\n" % engine)
        print("| model | MACs | M4F instructions / inference | per MAC | TFLM reference cycles / MAC | best published "
              "cycles / MAC |%s" % (" portable loop / MAC |" if portable else ""))
        print("|---|---|---|---|---|---|%s" % ("---|" if portable else ""))
        for name in r["models"]:
            n, pm = r["instructions"][engine][name]["cortex-m4f"], r["per_mac"][name]
            print("| %s | %.3f M | %.3f M | %.2f | %.1f | %.2f |%s" % (
                name, r["macs"][name] / 1e6, n / 1e6, pm["fastq %s M4F DSP" % engine], pm["TFLM reference"],
                pm["best published"], (" %.2f |" % pm["fastq %s M4F portable" % engine]) if portable else ""))
        print("\n| model | flash (bytes) | weights + constants | code | RAM (bytes) | arena | stack (painted) | "
              "sum of all activations |")
        print("|---|---|---|---|---|---|---|---|")
        for name in r["models"]:
            fp = r["footprint"][engine][name]
            print("| %s | %d | %d | %d | %d | %d | %d | %d |" % (name, fp["flash"], fp["weights"], fp["code"], fp["ram"],
                                                            fp["arena"], fp["stack"], fp["activations"]))
        print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default=["x86"], type=comma_list("--engine", ENGINES),
                    help="x86, qnnpack or x86,qnnpack (default x86)")
    ap.add_argument("--models", default=list(mt.PUBLISHED), type=comma_list("--models", tuple(mt.PUBLISHED)),
                    help="comma-separated, default kws,vww,ic,ad")
    ap.add_argument("--portable", action="store_true", help="also count the portable loop on the M4F")
    ap.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    ap.add_argument("--png", metavar="PATH", help="draw instructions per MAC beside the published cycles per MAC "
                    "(needs matplotlib)")
    ap.add_argument("--from-json", metavar="PATH", help="print and draw the figures of an earlier --json run "
                    "instead of measuring")
    args = ap.parse_args()
    if args.png and not insns_plot.available():
        sys.stderr.write("warning: %s\n" % insns_plot.MISSING.replace("the table above", "the table"))
    if args.from_json:
        with open(args.from_json) as f:
            r = json.load(f)
    else:
        r = results_of(args.models, args.engine, args.portable)
    print_tables(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1, sort_keys=True)
            f.write("\n")
    if args.png:
        if not insns_plot.available():
            sys.stderr.write("error: %s\n" % insns_plot.MISSING)
            return 1
        insns_plot.draw(r, args.png)
        sys.stderr.write("wrote %s\n" % args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
