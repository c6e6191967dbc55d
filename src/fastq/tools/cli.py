"""The `fastq` command: demo, explain, bench, model, info (each subcommand lives in its own module)."""
from __future__ import annotations

import argparse
import sys


def _info(args):
    import numpy as np

    import fastq
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
    try:
        from . import demo
        demo.add_parser(sub)
    except ImportError:
        pass
    try:
        from .explain import add_parser as add_explain_parser
        add_explain_parser(sub)
    except ImportError:
        pass
    try:
        from .bench import cli as bench_cli
        bench_cli.add_parser(sub)
    except ImportError:
        pass
    try:
        from .summary_cli import add_parser as add_summary_parser
        add_summary_parser(sub)
    except ImportError:
        pass
    try:
        from .export_cli import add_parser as add_export_parser
        add_export_parser(sub)
    except ImportError:
        pass
    try:
        from .model_cli import add_parser as add_model_parser
        add_model_parser(sub)
    except ImportError:
        pass
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
