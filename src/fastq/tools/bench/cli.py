"""`fastq bench`: what a multiply costs on this machine, in about a minute.

Runs the C microbenchmarks (scalar multiplies, SIMD peaks), one quantized Linear layer
against M (fastq, torch quantized, torch float32, ONNX Runtime) and an MLP, with a progress
bar; prints tables and writes JSON and a PNG plot. Missing matplotlib / torch / onnxruntime:
a note, and the rest still runs.
"""
from __future__ import annotations

import json
import os
import sys

from .._args import int_at_least
from . import plot as bench_plot
from .report import markdown, print_tables
from .suite import Bench

DEFAULT_JSON = os.path.join("bench-out", "fastq-bench.json")
DEFAULT_PNG = os.path.join("bench-out", "fastq-bench.png")


def add_parser(subparsers):
    p = subparsers.add_parser("bench", help="what a multiply costs: microbenchmarks, layer and MLP speed",
                              description=__doc__)
    level = p.add_mutually_exclusive_group()
    level.add_argument("--quick", dest="level", action="store_const", const="quick",
                       help="a few seconds: tiny counts and shapes (checks that everything runs)")
    level.add_argument("--full", dest="level", action="store_const", const="full",
                       help="larger layers, more M values and repeats (several minutes)")
    p.set_defaults(level="default")
    p.add_argument("--json", default=DEFAULT_JSON, metavar="PATH",
                   help="results as JSON (default: %(default)s)")
    p.add_argument("--png", default=DEFAULT_PNG, metavar="PATH",
                   help="plot (default: %(default)s); needs matplotlib")
    p.add_argument("--no-png", action="store_true", help="do not plot")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables as markdown")
    p.add_argument("--threads", type=int_at_least(1, 4096), default=1,
                   help="threads for fastq, torch and onnxruntime (default 1: per-core figures)")
    p.add_argument("--plain", action="store_true", help="plain-text tables and progress, even with rich")
    p.set_defaults(run=run_command)
    return p


def _progress_plain(stream):
    """A text bar redrawn in place on a terminal; one line per step otherwise (logs)."""
    tty = hasattr(stream, "isatty") and stream.isatty()

    def progress(i, n, desc):
        if tty:
            done = int(30 * i / max(n, 1))
            stream.write("\r[%s%s] %d/%d %-34s" % ("#" * done, "." * (30 - done), i, n, desc[:34]))
            if i == n:
                stream.write("\n")
            stream.flush()
        else:
            print("[%d/%d] %s" % (i, n, desc), file=stream, flush=True)
    return progress


class _RichProgress:
    def __init__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        self.bar = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                            transient=True)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, i, n, desc):
        if self.task is None:
            self.task = self.bar.add_task(desc, total=n)
        self.bar.update(self.task, completed=i, description=desc)


def run_bench(level="default", threads=1, json_path=None, png_path=None, progress=None):
    """Runs one level; writes JSON (and the PNG where png_path is given and matplotlib is
    installed). Returns the results dict; results["files"] lists what was written."""
    bench = Bench(level, threads)
    results = bench.run(progress)
    files = {}
    if png_path:
        try:
            _makedirs_for(png_path)
            files["png"] = bench_plot.write_png(results, png_path)
        except ImportError as e:
            bench.skip("plot", str(e))
    results["files"] = files
    if json_path:
        _makedirs_for(json_path)
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1)
        files["json"] = json_path
    return results


def _makedirs_for(path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)


def run_command(args):
    if args.threads < 1:
        print("fastq bench: --threads must be at least 1", file=sys.stderr)
        return 2
    use_rich = not args.plain
    png = None if args.no_png else args.png
    try:
        if not use_rich:
            raise ImportError
        progress = _RichProgress()
    except ImportError:
        progress = None
    if progress is not None:
        with progress:
            results = run_bench(args.level, args.threads, args.json, png, progress)
    else:
        results = run_bench(args.level, args.threads, args.json, png, _progress_plain(sys.stderr))
    print("fastq bench (%s level) on %s" % (args.level, results["machine"]["cpu"]))
    print_tables(results, use_rich=use_rich)
    if args.markdown:
        _makedirs_for(args.markdown)
        with open(args.markdown, "w") as f:
            f.write(markdown(results))
        results["files"]["markdown"] = args.markdown
    for kind, path in results["files"].items():
        print("wrote %s: %s" % (kind, path))
    return 0
