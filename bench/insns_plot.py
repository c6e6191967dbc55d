"""The instructions-per-MAC picture of bench/mlperf_firmware.py: one group of bars per MLPerf Tiny
model, fastq's Cortex-M4F instruction counts per MAC beside MLPerf Tiny's published Cortex-M4 cycles
per MAC. matplotlib is optional (the bench extra); `available()` says whether it is installed."""
from __future__ import annotations

MISSING = ("matplotlib is not installed, so no PNG was drawn (pip install matplotlib, or "
           "pip install 'fastq[bench]'); the table above is complete without it")

# (key in a row's "per_mac", legend label, colour); fastq's bars first, the published ones last
SERIES = [("fastq x86 M4F DSP", "fastq, engine x86 (M4F DSP, instructions)", "#1f77b4"),
          ("fastq qnnpack M4F DSP", "fastq, engine qnnpack (M4F DSP, instructions)", "#17becf"),
          ("fastq x86 M4F portable", "fastq, engine x86, portable loop (instructions)", "#9ecae1"),
          ("fastq qnnpack M4F portable", "fastq, engine qnnpack, portable loop (instructions)", "#c7e9f0"),
          ("TFLM reference", "TFLM reference kernels (published cycles)", "#d62728"),
          ("best published", "best published Cortex-M4 result (cycles)", "#ff9896")]


def available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def series(results):
    """{label: [value per model]} for the series measured in `results` (mlperf_firmware's JSON)."""
    models = results["models"]
    out = {}
    for key, label, colour in SERIES:
        vals = [results["per_mac"][m].get(key) for m in models]
        if all(v is not None for v in vals):
            out[key] = (label, colour, vals)
    return out


def draw(results, path):
    """Write the grouped bar chart of `results` (mlperf_firmware's JSON dict) to the PNG `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    bars = series(results)
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=90)
    for i, (key, (label, colour, vals)) in enumerate(bars.items()):
        xs = [m + (i - (len(bars) - 1) / 2) * width for m in range(len(models))]
        ax.bar(xs, vals, width, label=label, color=colour, edgecolor="black", linewidth=0.4)
        for x, v in zip(xs, vals):
            ax.text(x, v + 0.08, "%.2f" % v if v < 10 else "%.1f" % v, ha="center", va="bottom", fontsize=6.5)
    ax.set_xticks(range(len(models)))
    ax.set_xticklabels([m.upper() for m in models])
    ax.set_ylabel("per MAC (lower is faster)")
    ax.set_title("MLPerf Tiny on a Cortex-M4F: instructions (fastq) and cycles (published) per MAC", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_ylim(0, max(max(v) for _, _, v in bars.values()) * 1.35)
    ax.spines[["top", "right"]].set_visible(False)
    fig.text(0.01, 0.01, results["caption"], fontsize=6.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
