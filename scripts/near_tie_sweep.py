"""Near-tie sweep: constructed cases next to every rounding of every requantization step,
fastq and fastq.reference against real torch (engines pinned) or, for the fixed-point steps
(no torch counterpart), against fastq.reference.

    python scripts/near_tie_sweep.py [--scale 1] [--seed 0] [--backend all|auto]

Prints per mode and step: cases, decisive (cases the nearest wrong formula gets wrong, i.e.
how sharp the construction is), fastq mismatches, reference mismatches. Exit 1 on any fastq
mismatch. Expected: 0 everywhere (fbgemm per-tensor float bias needs the fused
fmaf(bias, rcp, acc) epilogue; docs/ARITHMETIC.md "fbgemm")."""
import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
warnings.filterwarnings("ignore")

import fastq  # noqa: E402
import near_tie_cases  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1, help="layers per generator multiplier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="all", help="'all' (every ISA backend) or one backend name")
    args = ap.parse_args()
    backends = fastq.backends() if args.backend == "all" else [args.backend]
    bad = 0
    print("%-18s %-44s %8s %9s %7s %9s  %s" % ("mode", "step", "cases", "decisive", "fastq", "reference", "oracle"))
    for b in backends:
        fastq.set_backend(b)
        rows = near_tie_cases.table(near_tie_cases.all_batches(np.random.default_rng(args.seed), args.scale))
        print("-- backend %s" % b)
        for mode, step, cases, decisive, mis, ref_mis, oracle in rows:
            print("%-18s %-44s %8d %9d %7d %9d  %s" % (mode, step, cases, decisive, mis, ref_mis, oracle))
            bad += mis
    fastq.set_backend("auto")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
