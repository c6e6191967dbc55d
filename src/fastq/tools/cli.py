"""The `fastq` command: demo, explain, bench, model, info (each subcommand lives in its own module)."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import fastq

from . import demo, export_cli, model_cli, summary_cli
from . import explain as explain_cli
from .bench import cli as bench_cli

from ._args import UsageError, one_line

# Errors a user's arguments or files cause: one line on stderr, exit 2. fastq's API raises
# TypeError / ValueError naming the argument for bad input, OSError comes from files and folders.
USER_ERRORS = (UsageError, OSError, ValueError, TypeError)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block): `fastq CMD: error: ...`, exit 2.
    Subparsers inherit the class."""

    def error(self, message):
        self.exit(2, "%s: error: %s\n" % (self.prog, one_line(message)))


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
    parser = Parser(prog="fastq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, threads, versions")
    p.set_defaults(run=_info)
    for command in (demo, explain_cli, bench_cli, summary_cli, export_cli, model_cli):
        command.add_parser(sub)
    args = parser.parse_args(argv)
    command = " ".join(v for v in (args.command, getattr(args, "model_command", None)) if v)
    try:
        return args.run(args)
    except SystemExit as e:
        if not isinstance(e.code, str):
            raise
        message = e.code
    except USER_ERRORS as e:
        message = "fastq %s: %s" % (command, e)
    except MemoryError:
        message = "fastq %s: out of memory (the sizes given are too large for this machine)" % command
    print(one_line(message), file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
