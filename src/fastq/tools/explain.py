"""`fastq explain` on the command line: the text of fastq.explain for a random layer."""
from __future__ import annotations

import argparse

from ..explain import explain, random_layer
from .. import explain as _explain_module

__doc__ = _explain_module.__doc__


def _run(args):
    layer, x_q = random_layer(args.requant, args.k, args.n, args.m, args.seed, args.per_channel,
                              args.relu, not args.no_bias, args.rounding)
    text = explain(layer, x_q, args.row, args.col)
    print(text, end="")
    return 0 if "all equal" in text else 1


def add_parser(subparsers):
    p = subparsers.add_parser("explain", help="one output element of a quantized Linear, step by step",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requant", choices=("fbgemm", "qnnpack", "tflite"), default="fbgemm",
                   help="requantization mode (default fbgemm, torch's x86 engine)")
    p.add_argument("--seed", type=int, default=0, help="random layer and input (default 0)")
    p.add_argument("--m", type=int, default=2, help="rows of the input (default 2)")
    p.add_argument("--k", type=int, default=8, help="input features K (default 8)")
    p.add_argument("--n", type=int, default=4, help="output features N (default 4)")
    p.add_argument("--row", type=int, default=0, help="output row m to explain (default 0)")
    p.add_argument("--col", type=int, default=0, help="output column n to explain (default 0)")
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    p.add_argument("--relu", action="store_true", help="fused ReLU")
    p.add_argument("--no-bias", action="store_true", help="no bias")
    p.add_argument("--rounding", choices=("double", "single", "double_up"), default="double",
                   help="tflite only: double (gemmlowp, default), single (TFLITE_SINGLE_ROUNDING) "
                        "or double_up (ruy, LiteRT's optimized kernels)")
    p.set_defaults(run=_run)
    return p
