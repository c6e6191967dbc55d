"""Markdown tables from a pytest-benchmark JSON of bench/test_bench_peers.py.

    python bench/report.py bench-out/peers.json [--peak-gops 465]

Ratios are computed within the one run the JSON holds, from each benchmark's minimum time
(the machine is shared and noisy: the minimum is the run least disturbed by others)."""
import argparse
import json
from collections import defaultdict


def measured_peak():
    try:
        from fastq import _bench
        return _bench.peak_int8_gops()
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--peak-gops", type=float, default=None, help="int8 peak of one core (default: measure)")
    args = ap.parse_args()
    data = json.load(open(args.json))
    peak = args.peak_gops or measured_peak() or 465.0
    by_shape = defaultdict(dict)
    threads = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        t = b["stats"]["min"]
        shape = (info["m"], info["k"], info["n"])
        if info["impl"].startswith("fastq_linear_") and info["impl"].endswith("t"):
            threads[info["impl"]] = t
            continue
        by_shape[shape][info["impl"]] = t
    print("Machine: %s; minimum times; int8 peak used for %%: %.0f GOPS (one core)\n" % (data["machine_info"].get("cpu", {}).get("brand_raw", "?"), peak))
    print("| M×K×N | fastq layer µs | torch x86 µs | ORT QLinearMatMul µs | fastq vs faster peer | fastq GOPS | % of peak | vs torch f32 | fastq qgemm µs | ORT MatMulInteger µs | torch._int_mm µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for shape in sorted(by_shape, key=lambda s: (s[1] * s[2], s[0])):
        r = by_shape[shape]
        m, k, n = shape
        ops = 2 * m * k * n
        f = r.get("fastq_linear")
        peers = [r[p] for p in ("torch_qlinear", "ort_qlinear") if p in r]
        us = lambda key: "%.1f" % (r[key] * 1e6) if key in r else "—"
        gops = ops / f / 1e9 if f else float("nan")
        print("| %d×%d×%d | %s | %s | %s | %.2f× | %.0f | %.0f %% | %.2f× | %s | %s | %s |" % (
            m, k, n, us("fastq_linear"), us("torch_qlinear"), us("ort_qlinear"),
            min(peers) / f if f and peers else float("nan"), gops, 100 * gops / peak,
            r["torch_f32"] / f if f and "torch_f32" in r else float("nan"),
            us("fastq_qgemm"), us("ort_matmulint"), us("torch_int_mm")))
    if len(threads) == 2:
        print("\n2 threads vs 1 at 256×1024×1024: %.2f×" % (threads["fastq_linear_1t"] / threads["fastq_linear_2t"]))


if __name__ == "__main__":
    main()
