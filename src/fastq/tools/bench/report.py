"""Tables of a `fastq bench` results dict: rich tables when rich is installed, plain text
otherwise. tables(results) gives (title, header, rows) for either renderer.
peers_markdown(data) is the peer table of a pytest-benchmark JSON of bench/test_bench_peers.py."""
from __future__ import annotations

import sys
from collections import defaultdict

from . import measure


def _f(x, fmt):
    return "-" if x is None else fmt % x


def _si(x, unit):
    if x is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return "%.1f %s%s" % (x / scale, prefix, unit)
    return "%.1f %s" % (x, unit)


def _bytes(b):
    return "%.2f MB" % (b / 1e6) if b >= 1e5 else "%.1f kB" % (b / 1e3)


def tables(results):
    out = []
    ghz = results.get("core_ghz")
    if results.get("scalar"):
        rows = {}
        for r in results["scalar"]:
            rows.setdefault(r["dtype"], {})[r["mode"]] = r
        body = []
        for dtype, modes in rows.items():
            lat, thr = modes.get("latency"), modes.get("throughput")
            body.append([dtype,
                         _f(lat and lat["ns"], "%.3f"), _f(lat and lat["cycles"], "%.2f"),
                         _f(thr and thr["ns"], "%.3f"), _f(thr and thr["cycles"], "%.2f"),
                         _si(thr and thr["ops_per_s"], "mul/s")])
        out.append(("Scalar multiply in C (core clock %.2f GHz, from an add chain)" % ghz,
                    ["type", "latency ns", "cycles", "throughput ns", "cycles", "mul/s"], body))
    if results.get("simd"):
        body = [[r["instr"], str(r["bits"]), r["type"], "%.2f" % r["instr_per_cycle"],
                 "%.0f" % r["ops_per_cycle"], _si(r["ops_per_s"], "op/s")] for r in results["simd"]]
        out.append(("SIMD multiply-accumulate peak, one core (1 MAC = 2 ops)",
                    ["instruction", "bits", "lane op", "instr/cycle", "ops/cycle", "ops/s"], body))
    layer = results.get("layer")
    if layer and layer["rows"]:
        # one row per M, one column per implementation: GOPS (% of the int8 peak)
        impls, by_m = [], {}
        for r in layer["rows"]:
            if r["impl"] not in impls:
                impls.append(r["impl"])
            cell = "%.1f" % r["gops"]
            if r.get("pct_int8_peak") is not None:
                cell += " (%.0f%%)" % r["pct_int8_peak"]
            by_m.setdefault(r["m"], {})[r["impl"]] = cell
        body = [[str(m)] + [cells.get(i, "-") for i in impls] for m, cells in by_m.items()]
        peak = results.get("peaks", {}).get("int8_gops")
        out.append(("Linear layer K=N=%d, %d thread(s): GOPS (%% of the int8 peak%s)" % (
            layer["k"], results["threads"], ", %.0f GOPS" % peak if peak else ""),
            ["M"] + impls, body))
    mlp = results.get("mlp")
    if mlp and mlp["rows"]:
        wb = mlp.get("weights_bytes", {})
        body = [[r["impl"], str(r["batch"]), "%.1f" % (r["seconds"] * 1e6),
                 _si(r["samples_per_s"], "/s"), _bytes(wb[r["impl"]]) if r["impl"] in wb else "-"]
                for r in mlp["rows"]]
        title = "MLP %s (fastq vs torch quantized: %s mismatching outputs)" % (
            "-".join(str(s) for s in mlp["sizes"]), mlp.get("fastq_vs_torch_mismatches", "?"))
        out.append((title, ["implementation", "batch", "us/call", "samples/s", "weights"], body))
    return out


def markdown(results):
    """The same tables as GitHub markdown (for docs: paste, or `fastq bench --markdown`)."""
    lines = ["Measured on %s, %d thread(s), fastq backend %s." % (
        results.get("machine", {}).get("cpu", "?"), results.get("threads", 1),
        results.get("machine", {}).get("fastq_backend", "?")), ""]
    for title, header, body in tables(results):
        lines += ["**%s**" % title, "", "| " + " | ".join(header) + " |",
                  "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines.append("")
    for note in results.get("skipped", []):
        lines.append("- skipped: %s" % note)
    return "\n".join(lines) + "\n"


def print_tables(results, file=None, use_rich=True):
    file = file or sys.stdout
    console = None
    if use_rich:
        try:
            from rich.console import Console
            from rich.table import Table
            console = Console(file=file)
        except ImportError:
            console = None
    for title, header, body in tables(results):
        if console is not None:
            t = Table(title=title, title_justify="left")
            for i, h in enumerate(header):
                t.add_column(h, justify="left" if i == 0 else "right")
            for row in body:
                t.add_row(*row)
            console.print(t)
        else:
            widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
            print(title, file=file)
            print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))),
                  file=file)
            for row in body:
                print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))),
                      file=file)
            print(file=file)
    for note in results.get("skipped", []):
        print("skipped: %s" % note, file=file)


def peers_markdown(data, peak_gops):
    """The markdown table of bench/test_bench_peers.py from its pytest-benchmark JSON (a dict).
    Ratios come from the one run the JSON holds, from each benchmark's minimum time (the
    machine is shared and noisy: the minimum is the run least disturbed by others)."""
    by_shape = defaultdict(dict)
    threads = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        t = b["stats"]["min"]
        if not {"impl", "m", "k", "n"} <= set(info):     # another suite's benchmark in the same JSON
            continue
        if info["impl"].startswith("fastq_linear_") and info["impl"].endswith("t"):
            threads[info["impl"]] = t
            continue
        by_shape[(info["m"], info["k"], info["n"])][info["impl"]] = t
    lines = ["Machine: %s; minimum times; int8 peak used for %%: %.0f GOPS (one core)" % (
        data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?"), peak_gops), "",
        "| M×K×N | fastq layer µs | torch x86 µs | ORT QLinearMatMul µs | fastq vs faster peer | fastq GOPS "
        "| % of peak | vs torch f32 | fastq qgemm µs | ORT MatMulInteger µs | torch._int_mm µs |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for shape in sorted(by_shape, key=lambda s: (s[1] * s[2], s[0])):
        r = by_shape[shape]
        f = r.get("fastq_linear")
        peers = [r[p] for p in ("torch_qlinear", "ort_qlinear") if p in r]
        g = measure.gops(measure.matmul_ops(*shape), f) if f else nan

        def us(key):
            return "%.1f" % (r[key] * 1e6) if key in r else "—"
        lines.append("| %d×%d×%d | %s | %s | %s | %.2f× | %.0f | %.0f %% | %.2f× | %s | %s | %s |" % (
            shape + (us("fastq_linear"), us("torch_qlinear"), us("ort_qlinear"),
                     min(peers) / f if f and peers else nan, g, measure.pct_of_peak(g, peak_gops) or nan,
                     r["torch_f32"] / f if f and "torch_f32" in r else nan,
                     us("fastq_qgemm"), us("ort_matmulint"), us("torch_int_mm"))))
    if len(threads) == 2:
        lines += ["", "2 threads vs 1 at 256×1024×1024: %.2f×" % (threads["fastq_linear_1t"] / threads["fastq_linear_2t"])]
    return "\n".join(lines) + "\n"
