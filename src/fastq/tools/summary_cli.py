"""fastq summary MODEL_FILE [--shape D ...] [--seed S]: model.summary() of a saved model; with
--shape, shapes and constants come from one run on a random float input of that shape."""
from __future__ import annotations

import argparse

import numpy as np

import fastq

from ._args import check_elements, int_at_least, load_model


def _run(args):
    model = load_model(args.path, "MODEL_FILE")
    sample = ()
    if args.shape:
        check_elements("--shape", *args.shape)
        if len(model.inputs) != 1:
            raise SystemExit("fastq summary: --shape needs a model with one input, this one has %d"
                             % len(model.inputs))
        sample = (np.random.default_rng(args.seed).standard_normal(args.shape).astype(np.float32),)
    print(model.summary(*sample))
    return 0


def add_parser(subparsers):
    p = subparsers.add_parser("summary", help="one row per node of a saved model: op, shapes, qparams, bytes",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="a model file written by Model.save")
    p.add_argument("--shape", type=int_at_least(1), nargs="+", help="run once on a random input of this shape (e.g. 1 784)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of that random input (default 0)")
    p.set_defaults(run=_run)
