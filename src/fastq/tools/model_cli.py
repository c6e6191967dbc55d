"""`fastq model check FILE...` (load each file with every check, one line each; exit 1 if any
is refused) and `fastq model convert OLD NEW` (an .npz of formats 1 / 2 -> format 3)."""
from __future__ import annotations

import collections
import sys
import warnings

import fastq

from ._args import UsageError, load_model, one_line


def add_parser(sub):
    p = sub.add_parser("model", help="check or convert model files")
    msub = p.add_subparsers(dest="model_command", required=True)
    c = msub.add_parser("check", help="load each file with every check; one line per file")
    c.add_argument("paths", nargs="+", metavar="FILE")
    c.set_defaults(run=_check)
    v = msub.add_parser("convert", help="rewrite a model file (e.g. an old .npz) in the current format")
    v.add_argument("source", metavar="OLD")
    v.add_argument("target", metavar="NEW")
    v.set_defaults(run=_convert)


def _summary(model):
    ops = collections.Counter(type(layer).__name__ for layer in model)
    nbytes = sum(a.nbytes for layer in model for a in layer.get_arrays().values())
    return "%d nodes (%s), %d array bytes" % (len(model), ", ".join("%d %s" % (n, op) for op, n in ops.items()),
                                               nbytes)


def _load(path, option):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = load_model(path, option)
        except UsageError as e:
            raise ValueError(str(e)) from None
    return model, [str(w.message) for w in caught]


def _check(args):
    bad = 0
    for path in args.paths:
        try:
            model, notes = _load(path, "")
        except (ValueError, OSError) as e:
            print("REFUSED %s" % one_line(e))
            bad += 1
            continue
        print("ok %s: %s" % (path, _summary(model)))
        for note in notes:
            print("   note: %s" % note)
    return 1 if bad else 0


def _convert(args):
    try:
        model, notes = _load(args.source, "OLD")
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    for note in notes:
        print("note: %s" % one_line(note), file=sys.stderr)
    try:
        model.save(args.target)
    except OSError as e:
        raise UsageError("NEW %s: %s" % (one_line(repr(args.target)), e.strerror or e)) from None
    print("wrote %s: %s" % (args.target, _summary(model)))
    return 0
