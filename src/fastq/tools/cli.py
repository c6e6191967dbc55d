"""The `fastq` command: demo, explain, bench, model, info (each subcommand lives in its own module)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import fastq

from . import demo, export_cli, model_cli, summary_cli
from . import explain as explain_cli
from .bench import cli as bench_cli


def _info(args):
    print("fastq %s, numpy %s" % (fastq.__version__, np.__version__))
    print("backends this CPU can run: %s (current: %s)" % (", ".join(fastq.backends()), fastq.get_backend()))
    print("threads: %d" % fastq.get_num_threads())
    try:
        import torch
        print("torch %s, quantized engines %s" % (torch.__version__, torch.backends.quantized.supported_engines))
    except ImportError:
        print("torch: not installed (optional: pip install torch==2.13.0)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, threads, versions")
    p.set_defaults(run=_info)
    for command in (demo, explain_cli, bench_cli, summary_cli, export_cli, model_cli):
        command.add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
