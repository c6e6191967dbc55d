"""`fastq explain`: one output element of a quantized Linear layer, worked out by pen and paper.

  fastq explain                         the classic 2x2 walk-through (torch -0.7907, by hand -0.7886)
  fastq explain --requant qnnpack       the same layer in another mode (fbgemm, qnnpack, tflite)
  fastq explain --random --seed 3 --k 40 --per-channel --relu --out-dtype int8
  fastq explain --dynamic               a dynamic (float in, float out) layer
  fastq explain --compare fbgemm qnnpack          two modes or roundings side by side
  fastq explain --model m.npz --node fc1 --row 0 --col 3 [--input x.npy]
  fastq explain --values 1.99 2.00 0.59 12.30 8.50 8.99 --bits 2    price tags

Each trace shows x_q, w_q and their zero points, every product (x - z_x)(w - z_w), their sum,
the same accumulator through the four terms the kernels use, then the requantization steps of
the layer's mode with each rounding shown as exact value -> result, the output integer, and
what fastq.reference and the compiled kernel give for the same element; then the hand
computation (dequantize, multiply, stop) and where it parts from the integer path.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

import fastq
from fastq import engines
from fastq.explain import OBSERVERS, explain, node_input, price_tags, with_mode
from ._args import UsageError, check_elements, int_at_least, load_model, one_line, readable_file

f32 = np.float32

# ----------------------------------------------------------------------- the classic 2x2 example
# "A Manual Implementation of Quantization in PyTorch" (2024): a Linear(2, 2) without bias,
# QuantStub -> Linear -> DeQuantStub, MinMaxObserver (quint8 activations, qint8 per-tensor
# affine weights), calibrated on the one sample it then runs. The post prints x_q = [90, 255]
# at scale 0.0021285151597112417 / zero point 0, the output scale 0.0058139534667134285 / zero
# point 136, torch's output [-0.7907, 0.6919] and its own by-hand result [-0.7886, 0.6932]. It
# does not print its weights or sample (torch.randn); this sample and these weights give every
# number it prints, on torch 2.13 engines x86, fbgemm and qnnpack (tests/test_explain.py).
SEED_X = np.array([[0.1916, 0.5427713394165039]], dtype=np.float32)
SEED_W = np.array([[0.75, -1.7183663845062256], [-0.25, 1.3660967350006104]], dtype=np.float32)
SEED_TORCH = (-0.7907, 0.6919)         # as the post prints them (4 decimals)
SEED_HAND = (-0.7886, 0.6932)


def seed_float_output():
    """y = x W^T as torch's float Linear computes it for K = 2 (two products, one sum, float32)."""
    x, w = SEED_X[0], SEED_W
    return np.array([[f32(f32(x[0] * w[n, 0]) + f32(x[1] * w[n, 1])) for n in range(2)]], dtype=np.float32)


def seed_example(requant="fbgemm", rounding="double"):
    """(layer, x_q, qparams): the 2x2 layer quantized as the post's MinMaxObservers do."""
    y = seed_float_output()
    sx, zx = fastq.choose_qparams(float(SEED_X.min()), float(SEED_X.max()), "uint8")
    sw, zw = fastq.choose_qparams(float(SEED_W.min()), float(SEED_W.max()), "int8")       # affine
    sy, zy = fastq.choose_qparams(float(y.min()), float(y.max()), "uint8")
    x_q = fastq.quantize(SEED_X, sx, zx, "uint8")
    w_q = fastq.quantize(SEED_W, sw, zw, "int8")
    layer = fastq.QuantizedLinear(w_q, None, sy, zy, requant=requant, rounding=rounding)
    return layer, x_q, dict(sx=sx, zx=zx, sw=sw, zw=zw, sy=sy, zy=zy, y=y)


def seed_torch(requant="fbgemm"):
    """The post's model through torch eager mode: (torch's output, the post's manual QuantM2
    output), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    import torch.nn as nn
    import torch.ao.quantization as tq
    engine = engines.for_requant(requant)
    if engine is None or engine not in torch.backends.quantized.supported_engines:
        return None
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = nn.Sequential(tq.QuantStub(), nn.Linear(2, 2, bias=False), tq.DeQuantStub()).eval()
            with torch.no_grad():
                model[1].weight.copy_(torch.from_numpy(SEED_W))
            model.qconfig = tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
                                       weight=tq.MinMaxObserver.with_args(dtype=torch.qint8))
            prepared = tq.prepare(model)
            x = torch.from_numpy(SEED_X)
            prepared(x)
            q = tq.convert(prepared)
            out = q(x).numpy()
            xq, w = q[0](x), q[1].weight()
            manual = ((xq.int_repr().double() - xq.q_zero_point())
                      @ (w.int_repr().double() - w.q_zero_point()).T) * (xq.q_scale() * w.q_scale())
            return out, manual.numpy(), engine
    finally:
        torch.backends.quantized.engine = old


def _seed_intro(out, qp, x_q, layer):
    out("The classic 2x2 walk-through (\"A Manual Implementation of Quantization in PyTorch\"):")
    out("  x = %s, W = %s (no bias; y = x W^T = %s)" % (_mat(SEED_X), _mat(SEED_W), _mat(qp["y"])))
    out("  MinMaxObserver: x quint8 s_x = %.17g, z_x = %d;  W qint8 (affine) s_w = %.9g, z_w = %d;"
        % (qp["sx"], qp["zx"], qp["sw"], qp["zw"]))
    out("                  y quint8 s_y = %.17g, z_y = %d" % (qp["sy"], qp["zy"]))
    out("  x_q = %s, W_q = %s; the post prints torch %s and by hand %s"
        % (_mat(x_q.values), _mat(layer.weight.values), list(SEED_TORCH), list(SEED_HAND)))
    out("")


def _seed_outro(out, layer, x_q, requant):
    y_q = layer(x_q)
    fq = fastq.dequantize(y_q)
    hands = [layer.explain(x_q, 0, n).hand().hand for n in range(2)]
    out("The whole output: fastq %s (y_q = %s); the hand computation %s"
        % (_mat(np.round(fq.astype(np.float64), 4)), _mat(y_q.values), _mat(np.round([hands], 4))))
    t = seed_torch(requant)
    if t is None:
        out("  (torch is not installed or has no engine for %r: pip install torch==2.13.0 to compare)" % requant)
        return 0
    tout, manual, engine = t
    same = np.array_equal(tout, fq) and np.allclose(manual, hands, rtol=0, atol=1e-12)
    out("  torch %s (engine %s): %s; the post's manual QuantM2: %s -> %s"
        % (__import__("torch").__version__, engine, _mat(np.round(tout.astype(np.float64), 4)),
           _mat(np.round(manual, 4)), "fastq identical to both" if same else "DIFFERENT"))
    return 0 if same else 1


def _mat(a):
    a = np.asarray(a)
    return "[" + ", ".join("[" + ", ".join(_num(v) for v in row) + "]" for row in a) + "]"


def _num(v):
    """float32: the shortest decimal that reads back to it; float64: 8 digits; ints as they are."""
    if isinstance(v, np.float32):
        return str(v)
    return "%.8g" % v if isinstance(v, (float, np.floating)) else str(int(v))


# ----------------------------------------------------------------------- random layers
def random_layer(requant="fbgemm", k=8, n=4, m=2, seed=0, per_channel=False, relu=False, bias=True,
                 rounding="double", in_dtype="uint8", out_dtype="uint8", w_zero_point=False):
    """A random layer and input, calibrated like an observer would (output range from the data)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, n) if per_channel else float(rng.uniform(0.002, 0.02))
    if per_channel:
        zw = rng.integers(-10, 11, n).astype(np.int32) if w_zero_point else np.zeros(n, np.int32)
    else:
        zw = int(rng.integers(-10, 11)) if w_zero_point else 0
    weight = fastq.QTensor(w, w_scale, zw, axis=0 if per_channel else None)
    sx = float(f32(rng.uniform(0.01, 0.1)))
    if np.dtype(in_dtype) == np.int8:
        x_q = fastq.QTensor(rng.integers(-128, 128, (m, k)).astype(np.int8), sx, int(rng.integers(-128, 128)))
    else:
        x_q = fastq.QTensor(rng.integers(0, 256, (m, k)).astype(np.uint8), sx, int(rng.integers(0, 256)))
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if bias else None
    acc = (x_q.values.astype(np.int64) - x_q.zero_point) @ (w.astype(np.int64) - np.reshape(zw, (-1, 1))).T
    real = acc.astype(np.float64) * sx * np.asarray(w_scale)
    if b is not None:
        real = real + b
    qmin, qmax = (-128, 127) if np.dtype(out_dtype) == np.int8 else (0, 255)
    lo, hi = min(real.min(), 0.0), max(real.max(), 0.0)
    sy = float(f32(max((hi - lo) / 255.0, 1e-6)))
    zy = int(np.clip(qmin + round(-lo / sy), qmin, qmax))
    layer = fastq.QuantizedLinear(weight, b, sy, zy, relu=relu, requant=requant, rounding=rounding,
                                  dtype=out_dtype)
    return layer, x_q


def random_dynamic(mode="fbgemm", k=8, n=4, m=2, seed=0, per_channel=False, relu=False, bias=True):
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    if per_channel:
        weight = fastq.QTensor(w, rng.uniform(0.002, 0.02, n), np.zeros(n, np.int32), axis=0)
    else:
        weight = fastq.QTensor(w, float(rng.uniform(0.002, 0.02)), 0)
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if bias else None
    x = rng.standard_normal((m, k)).astype(np.float32)
    return fastq.DynamicQuantizedLinear(weight, b, relu=relu, mode=mode), x


# ----------------------------------------------------------------------- the command
def parse_mode(text):
    """'fbgemm' | 'qnnpack' | 'tflite' | 'tflite:ROUNDING' | a rounding (double, single,
    double_up: tflite with that rounding) -> (requant, rounding)."""
    t = text.replace("/", ":")
    if t in ("double", "single", "double_up"):
        return "tflite", t
    if t.startswith("tflite:"):
        return "tflite", t.split(":", 1)[1]
    if t in ("fbgemm", "qnnpack", "tflite"):
        return t, "double"
    raise ValueError("--compare: %r is not a mode (fbgemm, qnnpack, tflite, tflite:single, double, single, "
                     "double_up)" % text)


def _layer_and_input(args, requant, rounding):
    """The layer and the input the command explains, built for one mode / rounding."""
    if args.model:
        model = load_model(args.model, "--model")
        x = _model_input(model, args)
        node = _node_arg(model, args.node)
        layer, value = node_input(model, x, node)
        if not isinstance(layer, (fastq.QuantizedLinear, fastq.DynamicQuantizedLinear)):
            raise TypeError("--node: %r is a %s; explain covers QuantizedLinear and DynamicQuantizedLinear"
                            % (node, type(layer).__name__))
        return layer, value, model, x
    if args.dynamic:
        if args.random:
            layer, x = random_dynamic(requant, args.k, args.n, args.m, args.seed, args.per_channel,
                                      args.relu, not args.no_bias)
        else:
            w_q = seed_example()[0].weight
            layer, x = fastq.DynamicQuantizedLinear(w_q, None, mode=requant), SEED_X
        return layer, x, None, None
    if args.random:
        layer, x = random_layer(requant, args.k, args.n, args.m, args.seed, args.per_channel, args.relu,
                                not args.no_bias, rounding, args.in_dtype, args.out_dtype, args.w_zero_point)
        return layer, x, None, None
    layer, x, _ = seed_example(requant, rounding)
    return layer, x, None, None


def _node_arg(model, text):
    """--node: a node name, or an index when no node has that name; by default the first
    Linear node."""
    names = [nd.name for nd in model.nodes]
    if text is None:
        linear = (fastq.QuantizedLinear, fastq.DynamicQuantizedLinear)
        return next((nd.name for nd in model.nodes if isinstance(nd.layer, linear)), 0)
    if text not in names and text.lstrip("-").isdigit():
        return int(text)
    return text


def _model_input(model, args):
    """--input X.npy as it is; otherwise one random normal row of the first Linear's width, drawn
    from its own stream (seed, row): row R of the random input exists without rows 0..R-1, so
    the memory does not grow with --row (args.x_row says which row of x is explained)."""
    if args.input:
        readable_file(args.input, "--input")
        try:
            return np.load(args.input, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UsageError("--input %r: not a .npy array file (%s)" % (args.input, one_line(e))) from None
    k = next((nd.layer.in_features for nd in model.nodes if hasattr(nd.layer, "in_features")), None)
    if k is None:
        raise UsageError("--input: this model's input size is unknown; pass --input x.npy")
    check_elements("--model input row", k)
    args.x_row = 0
    return np.random.default_rng((args.seed, args.row)).standard_normal((1, k)).astype(np.float32)


def _explain(layer, x, args):
    """explain(...) of output [--row, --col]; with the model's random input x holds that row only."""
    x_row = getattr(args, "x_row", None)
    trace = explain(layer, x, args.row if x_row is None else x_row, args.col)
    trace.row = args.row
    return trace


def _check_sizes(args):
    if args.values is None and not args.model and (args.random or args.dynamic):
        check_elements("--m x --k", args.m, args.k)
        check_elements("--k x --n", args.k, args.n)
        check_elements("--m x --n", args.m, args.n)


def _run(args):
    _check_sizes(args)
    if args.values is not None:
        tags = price_tags(args.values, args.bits, args.dtype, args.symmetric, args.observer, args.qrange)
        print(json.dumps(tags.to_dict(), indent=1) if args.json else tags, end="" if not args.json else "\n")
        return 0
    if args.node is not None and not args.model:
        raise SystemExit("fastq explain: --node needs --model FILE")
    requant, rounding = args.requant, args.rounding
    if args.dynamic and requant == "tflite":
        raise SystemExit("fastq explain: a dynamic layer runs as fbgemm or qnnpack")
    layer, x, model, x_model = _layer_and_input(args, requant, rounding)
    if args.model and (args.requant_given or args.rounding_given):
        layer = with_mode(layer, requant, rounding)
    if args.compare:
        (ra, ro_a), (rb, ro_b) = parse_mode(args.compare[0]), parse_mode(args.compare[1])
        if not (args.model or args.random or args.dynamic):
            la, lb = seed_example(ra, ro_a)[0], seed_example(rb, ro_b)[0]
        else:
            la, lb = with_mode(layer, ra, ro_a), with_mode(layer, rb, ro_b)
        ta, tb = _explain(la, x, args), _explain(lb, x, args)
        c = ta.compare(tb, labels=args.compare)
        if args.json:
            print(json.dumps({"a": ta.to_dict(), "b": tb.to_dict(), "compare": c.to_dict()}, indent=1))
        else:
            print(c, end="")
        return 0 if ta.equal and tb.equal else 1
    trace = _explain(layer, x, args)
    if args.json:
        print(json.dumps({"trace": trace.to_dict(), "hand": trace.hand().to_dict()}, indent=1))
        return 0 if trace.equal else 1
    seed = not (args.model or args.random or args.dynamic)
    if seed:
        _seed_intro(print, seed_example(requant, rounding)[2], x, layer)
    if args.model:
        print("Model %s, node %r: its input computed by the model from %s\n"
              % (args.model, args.node if args.node is not None else "(the first Linear)",
                 args.input or "row %d of a random normal input (--seed %d; each row drawn from its own "
                 "stream (seed, row))" % (args.row, args.seed)))
    print(trace, end="")
    print()
    print(trace.hand(), end="")
    bad = 0 if trace.equal else 1
    if seed:
        print()
        bad |= _seed_outro(print, layer, x, requant)
    return bad


class _Given(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, self.dest + "_given", True)


class _Random(argparse.Action):
    """An option that only means something for a random layer: giving it asks for one."""
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        namespace.random = True


def add_parser(subparsers):
    p = subparsers.add_parser("explain", help="one output element of a quantized Linear, step by step; "
                              "modes compared; price tags",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(requant_given=False, rounding_given=False, random=False)
    p.add_argument("--requant", choices=("fbgemm", "qnnpack", "tflite"), default="fbgemm", action=_Given,
                   help="requantization mode (default fbgemm, torch's x86 engine); for --dynamic, the mode")
    p.add_argument("--rounding", choices=("double", "single", "double_up"), default="double", action=_Given,
                   help="tflite only: double (gemmlowp, default), single (TFLITE_SINGLE_ROUNDING) "
                        "or double_up (ruy, LiteRT's optimized kernels)")
    p.add_argument("--row", type=int_at_least(0), default=0, help="output row m to explain (default 0)")
    p.add_argument("--col", type=int_at_least(0), default=0, help="output column n to explain (default 0)")
    g = p.add_argument_group("random layers (any of these implies --random)")
    g.add_argument("--random", action="store_true", help="a random layer instead of the classic 2x2 one")
    g.add_argument("--dynamic", action="store_true", help="a dynamic layer (float in, float out)")
    g.add_argument("--seed", type=int_at_least(0), default=0, action=_Random, help="random layer and input (default 0)")
    g.add_argument("--m", type=int_at_least(1), default=2, action=_Random, help="rows of the input (default 2)")
    g.add_argument("--k", type=int_at_least(1), default=8, action=_Random, help="input features K (default 8)")
    g.add_argument("--n", type=int_at_least(1), default=4, action=_Random, help="output features N (default 4)")
    g.add_argument("--per-channel", action=_Random, nargs=0, default=False, help="per-channel weight scales")
    g.add_argument("--relu", action=_Random, nargs=0, default=False, help="fused ReLU")
    g.add_argument("--no-bias", action=_Random, nargs=0, default=False, help="no bias")
    g.add_argument("--w-zero-point", action=_Random, nargs=0, default=False, help="nonzero weight zero points")
    g.add_argument("--in-dtype", choices=("uint8", "int8"), default="uint8", action=_Random,
                   help="activation dtype (default uint8)")
    g.add_argument("--out-dtype", choices=("uint8", "int8"), default="uint8", action=_Random,
                   help="output dtype (default uint8)")
    g = p.add_argument_group("compare and models")
    g.add_argument("--compare", nargs=2, metavar=("A", "B"),
                   help="two modes or roundings side by side: fbgemm, qnnpack, tflite, tflite:single, "
                        "double, single, double_up")
    g.add_argument("--model", metavar="FILE", help="a saved fastq model (Model.save)")
    g.add_argument("--node", help="the node (layer) of --model to explain: a name or an index "
                                  "(default: the first Linear)")
    g.add_argument("--input", metavar="X.npy", help="the model's float input (default: random normal)")
    g = p.add_argument_group("price tags: a few numbers on a few levels, no network")
    g.add_argument("--values", type=float, nargs="+", metavar="V", help="the real numbers to quantize")
    g.add_argument("--bits", type=int, default=8, help="levels = 2^bits (default 8)")
    g.add_argument("--dtype", choices=("uint8", "int8"), default="uint8",
                   help="unsigned [0, 2^bits - 1] or signed [-2^(bits-1), 2^(bits-1) - 1] levels")
    g.add_argument("--symmetric", action="store_true", help="symmetric quantization (zero point fixed)")
    g.add_argument("--observer", choices=OBSERVERS, default="minmax",
                   help="minmax (torch MinMaxObserver, default), histogram (torch HistogramObserver) or tight "
                        "(the walk-through's min -> qmin, max -> qmax)")
    g.add_argument("--qrange", type=int, nargs=2, metavar=("QMIN", "QMAX"), help="the integer levels, explicitly")
    p.add_argument("--json", action="store_true", help="the numbers as JSON (trace.to_dict())")
    p.set_defaults(run=_main)
    return p


def _main(args):
    try:
        return _run(args)
    except (TypeError, ValueError, OSError, UsageError) as e:
        print(one_line("fastq explain: %s" % e), file=sys.stderr)
        return 2
