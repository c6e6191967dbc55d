"""Build exported models into one program per target, run it, and read the outputs back.

Targets: the host (gcc), Cortex-M4F hard float (DSP fast path on, and off), Cortex-M3 soft
float (QEMU mps2 boards, semihosting), aarch64 with and without +dotprod (qemu-aarch64). Each
model's samples are compiled in as arrays of float bits; the program prints every output as
the hex of its float bits (or the integer, for net_run_quantized) and the return code."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off", "-O2"]
ARM_LINK = ["--specs=rdimon.specs", "-nostartfiles", "-T", os.path.join(HERE, "mps2.ld"),
            os.path.join(HERE, "startup.c")]
QEMU_MPS2 = ["-nographic", "-monitor", "none", "-serial", "none",
             "-semihosting-config", "enable=on,target=native", "-kernel"]
PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm qemu-user gcc-aarch64-linux-gnu"
INSTALL = "sudo apt-get install -y " + PACKAGES


@dataclass
class Target:
    name: str
    cc: str
    flags: List[str]
    run: List[str] = field(default_factory=list)       # the emulator command before the program
    link: List[str] = field(default_factory=list)
    tools: List[str] = field(default_factory=list)

    def missing(self):
        out = [t for t in [self.cc] + self.tools if shutil.which(t) is None]
        if not out and self.link:        # newlib's semihosting library (libnewlib-arm-none-eabi)
            p = subprocess.run([self.cc] + self.flags[:4] + ["-print-file-name=librdimon.a"],
                               capture_output=True, text=True)
            if not os.path.isabs(p.stdout.strip()):
                out.append("librdimon.a")
        return out


M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
M3 = ["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"]
TARGETS = {
    "host": Target("host", "gcc", WARN),
    "cortex-m4f": Target("cortex-m4f", "arm-none-eabi-gcc", M4 + WARN,
                         ["qemu-system-arm", "-M", "mps2-an386"] + QEMU_MPS2, ARM_LINK, ["qemu-system-arm"]),
    "cortex-m4f-portable": Target("cortex-m4f-portable", "arm-none-eabi-gcc", M4 + WARN + ["-DFASTQ_PORTABLE"],
                                  ["qemu-system-arm", "-M", "mps2-an386"] + QEMU_MPS2, ARM_LINK, ["qemu-system-arm"]),
    "cortex-m3": Target("cortex-m3", "arm-none-eabi-gcc", M3 + WARN,
                        ["qemu-system-arm", "-M", "mps2-an385"] + QEMU_MPS2, ARM_LINK, ["qemu-system-arm"]),
    "aarch64": Target("aarch64", "aarch64-linux-gnu-gcc", ["-march=armv8-a", "-static"] + WARN,
                      ["qemu-aarch64", "-cpu", "max"], [], ["qemu-aarch64"]),
    "aarch64-dotprod": Target("aarch64-dotprod", "aarch64-linux-gnu-gcc", ["-march=armv8.2-a+dotprod", "-static"] + WARN,
                              ["qemu-aarch64", "-cpu", "max"], [], ["qemu-aarch64"]),
}


@dataclass
class Case:
    """One exported model and its samples."""
    name: str                       # the C name (m0, m1, ...)
    gen: object                     # fastq.export.Generated
    x: np.ndarray                   # float32 [S, input_size]
    q: Optional[np.ndarray] = None  # quantized inputs [S, qinput_size] for net_run_quantized


@dataclass
class Result:
    rc: np.ndarray                  # [S] net_run's return codes
    y: np.ndarray                   # uint32 [S, output_size], float bits
    qrc: Optional[np.ndarray] = None
    qy: Optional[np.ndarray] = None  # int64 [S, qoutput_size]


def _c_array(ctype, name, rows):
    body = ",\n".join("    {" + ", ".join(rows_i) + "}" for rows_i in rows)
    return "static const %s %s[%d][%d] = {\n%s\n};" % (ctype, name, len(rows), len(rows[0]), body)


def main_source(cases, repeat=1, repeat_run=True):
    """The test program: every case's samples through net_run (and net_run_quantized).
    repeat > 1 runs each call that many times (for instruction counts / timing); with
    repeat_run=False only net_run_quantized is repeated."""
    lines = ["#include <stdio.h>", "#include <stdint.h>", "#include <string.h>"]
    max_in = max(c.gen.input_size for c in cases)
    max_out = max(c.gen.output_size for c in cases)
    for c in cases:
        lines.append('#include "%s.h"' % c.name)
        lines.append(_c_array("uint32_t", c.name + "_x",
                              [["0x%08xu" % b for b in row] for row in np.asarray(c.x, np.float32).view(np.uint32)]))
        if c.q is not None:
            ct = "uint8_t" if c.gen.qinput_dtype == "uint8" else "int8_t"
            lines.append(_c_array(ct, c.name + "_q", [[str(int(v)) for v in row] for row in c.q]))
    lines += [
        "static float in_buf[%d], out_buf[%d];" % (max_in, max_out),
        "static int8_t qout_buf[%d];" % max_out if any(c.q is not None for c in cases) else "",
        "static void put_floats(int model, int s, int rc, int n)",
        "{",
        "    int i;",
        '    printf("F %d %d %d", model, s, rc);',
        "    for (i = 0; i < n; i++) {",
        "        uint32_t b;",
        "        memcpy(&b, &out_buf[i], 4);",
        '        printf(" %08lx", (unsigned long)b);',
        "    }",
        '    printf("\\n");',
        "}",
        "int main(void)",
        "{",
        "    int s, r, rc;",
        "    (void)r;",
    ]
    for i, c in enumerate(cases):
        up = c.name.upper()
        s_count = len(c.x)
        lines += [
            "    for (s = 0; s < %d; s++) {" % s_count,
            "        memcpy(in_buf, %s_x[s], sizeof %s_x[s]);" % (c.name, c.name),
            "        for (r = 0; r < %d; r++) rc = %s_run(in_buf, out_buf);" % (repeat if repeat_run else 1, c.name),
            "        put_floats(%d, s, rc, %s_OUTPUT_SIZE);" % (i, up),
            "    }",
        ]
        if c.q is not None:
            qt = "uint8_t" if c.gen.qoutput_dtype == "uint8" else "int8_t"
            lines += [
                "    for (s = 0; s < %d; s++) {" % s_count,
                "        int i;",
                "        for (r = 0; r < %d; r++) rc = %s_run_quantized(%s_q[s], (%s *)(void *)qout_buf);"
                % (repeat, c.name, c.name, qt),
                '        printf("Q %d %%d %%d", s, rc);' % i,
                "        for (i = 0; i < %s_QOUTPUT_SIZE; i++) printf(\" %%d\", (int)((%s *)(void *)qout_buf)[i]);"
                % (up, qt),
                '        printf("\\n");',
                "    }",
            ]
    lines += ['    printf("DONE\\n");', "    return 0;", "}", ""]
    return "\n".join(lines)


def build(target, cases, workdir, repeat=1, extra_flags=(), repeat_run=True):
    """Compiles the cases' net.c files and the test program for `target`; returns the program."""
    os.makedirs(workdir, exist_ok=True)
    sources = []
    for c in cases:
        h, src = c.gen.write(workdir)
        sources.append(src)
    main = os.path.join(workdir, "main.c")
    with open(main, "w") as f:
        f.write(main_source(cases, repeat, repeat_run))
    # one translation unit for all models (their runtime helpers are shared, each model's own
    # names carry its prefix): arm_neon.h is parsed once, not once per model
    unity = os.path.join(workdir, "models.c")
    with open(unity, "w") as f:
        f.write("".join('#include "%s"\n' % os.path.basename(s) for s in sources))
    exe = os.path.join(workdir, "prog_%s.elf" % target.name)
    cmd = [target.cc] + target.flags + list(extra_flags) + ["-I", workdir] + target.link + [main, unity, "-o", exe]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError("%s: compile failed:\n%s\n%s" % (target.name, " ".join(cmd), p.stderr[-4000:]))
    return exe


def run(target, exe, timeout=120):
    p = subprocess.run(target.run + [exe], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def parse(stdout, cases):
    """{case name: Result} from the program's output (raises when it stopped early)."""
    lines = stdout.splitlines()
    if not lines or lines[-1].strip() != "DONE":
        raise RuntimeError("the program stopped early; last lines:\n%s" % "\n".join(lines[-5:]))
    rows = {}
    for line in lines[:-1]:
        parts = line.split()
        kind, model, s, rc = parts[0], int(parts[1]), int(parts[2]), int(parts[3])
        rows.setdefault((kind, model), []).append((s, rc, parts[4:]))
    out = {}
    for i, c in enumerate(cases):
        f = sorted(rows.get(("F", i), []))
        res = Result(np.array([r[1] for r in f]), np.array([[int(v, 16) for v in r[2]] for r in f], np.uint32))
        if c.q is not None:
            q = sorted(rows.get(("Q", i), []))
            res.qrc = np.array([r[1] for r in q])
            res.qy = np.array([[int(v) for v in r[2]] for r in q], np.int64)
        out[c.name] = res
    return out
