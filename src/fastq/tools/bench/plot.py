"""The PNG of a `fastq bench` results dict (matplotlib, imported lazily):
left, operations per second by type (scalar multiplies and SIMD peaks, log scale);
right, Linear-layer throughput against M for each implementation, with the int8 and fp32
peaks of one core as dashed lines."""
from __future__ import annotations

IMPL_STYLE = {"fastq int8": ("C0", "o"), "torch quantized": ("C1", "s"),
              "torch float32": ("C2", "^"), "onnxruntime int8": ("C3", "D")}


def require_matplotlib():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("matplotlib is not installed (pip install matplotlib): no plot") from e
    matplotlib.use("Agg")   # files only, no display needed
    import matplotlib.pyplot as plt
    return plt


def _ops_bars(results):
    """[(label, ops/s, color)]: scalar throughput per type, then the widest of each SIMD op."""
    bars = []
    for r in results.get("scalar", []):
        if r["mode"] == "throughput":
            color = "C1" if r["dtype"].startswith("float") else "C0"
            bars.append(("scalar %s mul (C)" % r["dtype"], r["ops_per_s"], color))
    best = {}
    for r in results.get("simd", []):
        if r["instr"] not in best or r["ops_per_s"] > best[r["instr"]]["ops_per_s"]:
            best[r["instr"]] = r
    for r in best.values():
        color = "C1" if r["instr"].startswith("vfmadd") else "C0"
        bars.append(("%s %d-bit\n(%s)" % (r["instr"], r["bits"], r["type"]), r["ops_per_s"], color))
    return bars


def write_png(results, path):
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 6))
    bars = _ops_bars(results)
    if bars:
        labels, values, colors = zip(*bars)
        y = range(len(bars))
        ax1.barh(list(y), [v / 1e9 for v in values], color=colors)
        ax1.set_yticks(list(y))
        ax1.set_yticklabels(labels, fontsize=8)
        ax1.invert_yaxis()
        ax1.set_xscale("log")
        for yi, v in zip(y, values):
            g = v / 1e9
            ax1.text(g, yi, " %.0f" % g if g >= 100 else " %.3g" % g, va="center", fontsize=7)
        ax1.set_xlabel("G operations / s, one core (multiply-accumulate = 2)")
        ghz = results.get("core_ghz")
        ax1.set_title("What a multiply costs%s" % (" (core ~%.2f GHz)" % ghz if ghz else ""))
        ax1.text(0.99, 0.01, "blue: integer, orange: float", transform=ax1.transAxes,
                 ha="right", va="bottom", fontsize=7)
    layer = results.get("layer")
    if layer and layer["rows"]:
        for impl in IMPL_STYLE:
            rows = [r for r in layer["rows"] if r["impl"] == impl]
            if rows:
                color, marker = IMPL_STYLE[impl]
                label = impl
                if impl == "fastq int8":   # the backend matters: scalar vs SIMD kernels
                    label += " (%s)" % results.get("machine", {}).get("fastq_backend", "?")
                ax2.plot([r["m"] for r in rows], [r["gops"] for r in rows], marker=marker,
                         color=color, label=label)
        peaks = results.get("peaks", {})
        for key, label, color in (("int8_gops", "int8 peak (vpdpbusd)", "C0"),
                                  ("fp32_gflops", "fp32 peak (vfmadd231ps)", "C2")):
            if peaks.get(key):
                ax2.axhline(peaks[key], color=color, linestyle="--", linewidth=0.8, label=label)
        ax2.set_xscale("log", base=2)
        from matplotlib.ticker import ScalarFormatter
        ax2.xaxis.set_major_formatter(ScalarFormatter())
        ax2.set_yscale("log")
        ax2.set_xlabel("M (rows of the batch)")
        ax2.set_ylabel("G operations / s (2 per multiply-accumulate)")
        ax2.set_title("Linear %dx%d, %d thread(s)" % (layer["k"], layer["n"], results["threads"]))
        ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
        ax2.grid(True, which="both", alpha=0.3)
    else:
        ax2.text(0.5, 0.5, "layer benchmark skipped\n(torch not installed)", ha="center",
                 va="center", transform=ax2.transAxes)
        ax2.set_axis_off()
    fig.suptitle(results.get("machine", {}).get("cpu", ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
