"""Markdown tables from a pytest-benchmark JSON of bench/test_bench_peers.py.

    python bench/report.py bench-out/peers.json [--peak-gops 465]

The table is fastq.tools.bench.report.peers_markdown's; the peak defaults to the measured
vpdpbusd throughput of one core (fastq._bench.peak_int8_gops())."""
import argparse
import json

from fastq.tools.bench.report import peers_markdown


def measured_peak():
    try:
        from fastq import _bench
        return _bench.peak_int8_gops()
    except ImportError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--peak-gops", type=float, default=None, help="int8 peak of one core (default: measure)")
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    print(peers_markdown(data, args.peak_gops or measured_peak() or 465.0), end="")


if __name__ == "__main__":
    main()
