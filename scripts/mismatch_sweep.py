"""Count fastq-vs-torch mismatches over many random quantized Linear layers, per engine.

    python scripts/mismatch_sweep.py [--layers 200] [--seed 0]

Each layer: M 1-64, K 1-4096 (odd and prime sizes included), N 1-100, per-tensor or
per-channel weights with asymmetric zero points, bias or none, ReLU or not, random input
and output quantization; every ISA backend this CPU runs. Prints outputs compared and
mismatches per engine and backend (expected: 0)."""
import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
warnings.filterwarnings("ignore")

import fastq  # noqa: E402
from torch_helpers import ENGINES, engine, make_linear, random_qinput  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    primes = [1, 2, 3, 5, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093]
    total_bad = 0
    for eng in ENGINES:
        counts = {b: [0, 0] for b in fastq.backends()}
        with engine(eng):
            for i in range(args.layers):
                k = int(rng.choice(primes)) if i % 3 == 0 else int(rng.integers(1, 4097))
                n, m_rows = int(rng.integers(1, 101)), int(rng.integers(1, 65))
                mod = make_linear(rng, k, n, per_channel=bool(rng.integers(0, 2)), relu=bool(rng.integers(0, 2)),
                                  has_bias=bool(rng.integers(0, 4)), w_zero_points=bool(rng.integers(0, 2)))
                x = random_qinput(rng, (m_rows, k))
                expected = mod(x).int_repr().numpy()
                layer = fastq.QuantizedLinear.from_torch(mod)
                xq = fastq.QTensor.from_torch(x)
                for b in counts:
                    fastq.set_backend(b)
                    got = layer(xq).values
                    counts[b][0] += expected.size
                    counts[b][1] += int((got != expected).sum())
        fastq.set_backend("auto")
        for b, (tot, bad) in counts.items():
            print("engine %-8s backend %-11s outputs %9d mismatches %d" % (eng, b, tot, bad))
            total_bad += bad
    return 1 if total_bad else 0


if __name__ == "__main__":
    sys.exit(main())
