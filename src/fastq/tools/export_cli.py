"""`fastq export-c MODEL --out DIR --name net`: a saved fastq model as standalone C."""
from __future__ import annotations

from fastq import export

from ._args import UsageError, int_at_least, load_model, one_line, output_folder


def _main(args):
    model = load_model(args.model, "MODEL")
    output_folder(args.out, "--out")
    try:
        gen = export.export_c(model, args.out, name=args.name, input_size=args.input_size)
    except OSError as e:
        raise UsageError("--out %s: %s" % (one_line(repr(args.out)), e)) from None
    except export.ExportError as e:          # a node or value the C export does not take
        raise UsageError("MODEL %s: %s" % (one_line(repr(args.model)), e)) from None
    print("wrote %s/%s.h and %s/%s.c" % (args.out, args.name, args.out, args.name))
    print("  int %s_run(const float *input, float *output): %d floats in, %d out"
          % (args.name, gen.input_size, gen.output_size))
    if gen.has_quantized:
        print("  int %s_run_quantized(const %s_t *input, %s_t *output)%s"
              % (args.name, gen.qinput_dtype, gen.qoutput_dtype, "  (integer only)" if gen.integer_only else ""))
    for line in gen.footprint.lines():
        print("  " + line)
    return 0


def add_parser(subparsers):
    p = subparsers.add_parser("export-c", help="a saved model as standalone C (net.h / net.c) for firmware",
                              description=__doc__)
    p.add_argument("model", help="a model file written by fastq's Model.save")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", default="net", help="C name prefix and file name (default: net)")
    p.add_argument("--input-size", type=int_at_least(1, 2**31 - 1), default=None,
                   help="floats per sample (only for models without a Linear layer)")
    p.set_defaults(run=_main)
    return p
