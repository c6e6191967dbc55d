"""Draw the CNN speed-against-peers picture from a pytest-benchmark JSON of bench/test_bench_cnn.py:
milliseconds per call of fastq, torch (engine x86) and ONNX Runtime (QDQ int8), one thread, per model
and batch, on a log scale.

    PYTHONPATH=src python -m pytest bench/test_bench_cnn.py --benchmark-only --benchmark-json=cnn.json
    python bench/plot_cnn.py cnn.json docs/cnn_peers.png

Needs matplotlib (the bench extra)."""
from __future__ import annotations

import argparse
import json
import math
import sys

PEERS = [("fastq_s", "fastq", "#1f77b4"), ("torch_s", "torch (engine x86)", "#ff7f0e"),
         ("ort_s", "ONNX Runtime (QDQ int8)", "#2ca02c")]


def rows_of(doc, path):
    """[(label "model, batch N", {peer key: seconds})] from test_cnn_models's extra_info."""
    found = [b for b in doc.get("benchmarks", []) if b.get("name", "").startswith("test_cnn_models")]
    if not found:
        raise ValueError("%s: no test_cnn_models benchmark in it; expected the --benchmark-json of "
                         "bench/test_bench_cnn.py" % path)
    rows = []
    for key, val in found[0]["extra_info"].items():
        if isinstance(val, dict) and "fastq_s" in val:
            model, batch = key.rsplit(" b", 1)
            rows.append(("%s\nbatch %s" % (model.replace(" ", "\n"), batch), val))
    return rows, found[0]["extra_info"]


def caption(doc, info):
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {}).get("brand_raw") or m.get("processor") or "unknown CPU"
    commit = doc.get("commit_info", {}).get("id", "")[:7]
    return "%s, one thread; fastq backend %s%s; torch %s; onnxruntime %s; Python %s; %s" % (
        cpu, info.get("backend", "?"), (" at " + commit) if commit else "", info.get("torch", "?"),
        info.get("onnxruntime") or "absent", m.get("python_version", "?"), doc.get("datetime", "")[:10])


def draw(rows, text, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(PEERS)
    fig, ax = plt.subplots(figsize=(max(8, 1.15 * len(rows)), 4.4), dpi=90)
    for i, (key, label, colour) in enumerate(PEERS):
        xs = [r + (i - (len(PEERS) - 1) / 2) * width for r in range(len(rows))]
        ms = [v[key] * 1e3 for _, v in rows]
        keep = [(x, t) for x, t in zip(xs, ms) if not math.isnan(t)]
        if not keep:
            continue
        ax.bar([x for x, _ in keep], [t for _, t in keep], width, label=label, color=colour, edgecolor="black",
               linewidth=0.4)
        for x, t in keep:
            ax.text(x, t * 1.08, "%.3g" % t, ha="center", va="bottom", fontsize=6.5)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r for r, _ in rows], fontsize=7.5)
    ax.set_ylabel("ms per call (log scale, lower is faster)")
    ax.set_title("Quantized CNNs on the CPU: fastq against torch and ONNX Runtime", fontsize=10)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 3)
    fig.text(0.01, 0.01, text, fontsize=6.5, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="the --benchmark-json file of bench/test_bench_cnn.py")
    ap.add_argument("png", help="the picture to write")
    args = ap.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.stderr.write("error: matplotlib is not installed (pip install matplotlib, or pip install 'fastq[bench]')\n")
        return 1
    try:
        with open(args.json) as f:
            doc = json.load(f)
        rows, info = rows_of(doc, args.json)
    except (OSError, ValueError) as e:
        sys.stderr.write("error: %s\n" % e)
        return 1
    for label, v in rows:
        sys.stdout.write("%-32s fastq %8.3f ms  torch %8.3f ms  ORT %8.3f ms\n" % (
            label.replace("\n", ", "), v["fastq_s"] * 1e3, v["torch_s"] * 1e3, v["ort_s"] * 1e3))
    draw(rows, caption(doc, info), args.png)
    sys.stderr.write("wrote %s\n" % args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
