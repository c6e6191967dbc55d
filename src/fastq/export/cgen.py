"""fastq.Model -> net.h / net.c: walk the nodes, build one Step per node, place the values in
one static arena, and write the run functions around the steps."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..layers import LAYER_TYPES
from ..layers._base import ANY, FLOAT, QUANT
from .emit import EmitContext, ExportError
from .footprint import Footprint, estimate
from . import layout
from .plan import Value, allocate, c_ident

_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ERRORS = (("OK", 0, "success"),
          ("ERR_NULL", 1, "input or output is NULL"),
          ("ERR_NONFINITE", 2, "a dynamic layer's input holds NaN or inf (no quantization exists for it)"))

@dataclass
class Generated:
    name: str
    header: str
    source: str
    footprint: Footprint
    has_quantized: bool            # net_run_quantized exists
    input_size: int
    output_size: int
    qinput_dtype: str = None       # "uint8" | "int8" (net_run_quantized's types)
    qoutput_dtype: str = None
    integer_only: bool = False     # net_run_quantized uses no float operation
    activation_bytes: int = 0      # every value the arena holds, summed (what no reuse would need)

    def write(self, directory):
        os.makedirs(directory, exist_ok=True)
        h = os.path.join(directory, self.name + ".h")
        c = os.path.join(directory, self.name + ".c")
        with open(h, "w") as f:
            f.write(self.header)
        with open(c, "w") as f:
            f.write(self.source)
        return h, c


def _graph(model):
    """(nodes as (name, layer, inputs, outputs), model inputs, model outputs)."""
    if hasattr(model, "nodes") and hasattr(model, "inputs") and hasattr(model, "outputs"):
        nodes = [(n.name, n.layer, tuple(n.inputs), tuple(n.outputs)) for n in model.nodes]
        return nodes, tuple(model.inputs), tuple(model.outputs)
    layers = list(getattr(model, "layers", []))
    names = list(getattr(model, "names", [str(i) for i in range(len(layers))]))
    nodes, prev = [], "input"
    for i, (name, layer) in enumerate(zip(names, layers)):
        out = "%s#%d" % (name, i)
        nodes.append((str(name), layer, (prev,), (out,)))
        prev = out
    return nodes, ("input",), (prev,)


def _input_size(nodes, input_size):
    """Floats per sample in: the input width of the first layer with weights (in_features),
    else input_size, which is then required."""
    for name, layer, _, _ in nodes:
        k = getattr(layer, "in_features", None)
        if isinstance(k, int) and not isinstance(k, bool):
            if input_size is not None and int(input_size) != k:
                raise ValueError("input_size: %d, but node %r takes %d inputs" % (input_size, name, k))
            return k
    if input_size is None:
        raise ValueError("input_size: required for a model without Linear layers (its sample size "
                         "cannot be inferred)")
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ValueError("input_size: expected a positive int, got %r" % (input_size,))
    return int(input_size)


def _check_takes(node, op, layer, xs):
    """The one refusal of a value of the wrong kind, from the op's declared `takes`."""
    takes = getattr(layer, "takes", ANY)
    if takes == QUANT and any(x.kind == "float" for x in xs):
        raise ExportError("node %r (%s) receives floats; the model needs a Quantize before it" % (node, op))
    if takes == FLOAT and any(x.kind == "quant" for x in xs):
        raise ExportError("node %r (%s) receives quantized values; the model needs a Dequantize before it"
                          % (node, op))


def _node_step(node, op, layer, xs, out_name, prefix_of, note=None):
    """(Step or None, output Value) of one node, through the op protocol."""
    if not (callable(getattr(layer, "infer", None)) and callable(getattr(layer, "emit_c", None))):
        raise ExportError("node %r: %s cannot be exported to C (not a fastq op)" % (node, op))
    _check_takes(node, op, layer, xs)
    specs = [x.spec for x in xs]
    try:
        spec = layer.infer(*specs)
        data = layer.prepare(*specs)
    except NotImplementedError as e:
        raise ExportError(str(e) if str(e).startswith("node") else "node %r (%s): %s" % (node, op, e)) from None
    except (TypeError, ValueError) as e:      # a shape or kind the C export's flat samples do not have
        raise ExportError("node %r (%s): %s (the C export sees each sample as one flat buffer: %s)"
                          % (node, op, e, ", ".join("%s %d values" % (x.kind, x.size) for x in xs))) from None
    if isinstance(spec, tuple):
        raise ExportError("node %r (%s): %d outputs; the C export handles one" % (node, op, len(spec)))
    y = Value.of(out_name, spec, size=xs[0].size if xs else None)
    ctx = EmitContext(node, op, lambda: prefix_of(node))
    ctx.note = note
    try:
        st = layer.emit_c(ctx, node, xs, y, data)
    except ExportError:
        raise
    except NotImplementedError as e:           # the op's own refusal (Layer.unsupported)
        raise ExportError(str(e)) from None
    layout.follow(y, xs)
    return st, y


def _input_value(name, nodes, input_size, input_shape):
    """The model input: flat (input_size floats) or, with input_shape (C, H, W) or (C, L), one
    sample in torch's order."""
    if input_shape is None:
        spatial = next((n for n, layer, _, _ in nodes if getattr(layer, "reads_layout", False)), None)
        if spatial is not None:
            raise ValueError("input_shape: required for a model with convolutions or pooling (node %r); pass "
                             "one sample's (C, H, W) or (C, L)" % (spatial,))
        return Value(name, "float", _input_size(nodes, input_size))
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 2, 3) or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in input_shape):
        raise ValueError("input_shape: expected (C, H, W), (C, L) or (K,) of positive ints, got %r" % (input_shape,))
    shape = tuple(int(d) for d in input_shape)
    size = int(np.prod(shape))
    if size > 2**31 - 1:
        raise ValueError("input_shape: %r holds %d values per sample; the C export indexes with int32" % (shape, size))
    if input_size is not None and int(input_size) != size:
        raise ValueError("input_size: %r, but input_shape %r holds %d values" % (input_size, shape, size))
    if len(shape) == 1:
        _input_size(nodes, size)
    return Value(name, "float", size, shape=(None,) + shape, layout="nchw" if len(shape) > 1 else None)


def generate(model, name="net", input_size=None, input_shape=None):
    """Generated(name, header, source, footprint) for a fastq model."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("name: expected a C identifier (letters, digits, _), got %r" % (name,))
    nodes, inputs, outputs = _graph(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError("model: %d inputs and %d outputs; the C export takes one of each"
                          % (len(inputs), len(outputs)))
    values = {inputs[0]: _input_value(inputs[0], nodes, input_size, input_shape)}
    # node names never taken as they are: they would read like the entry points and macros
    steps, used = [], {"run", "run_quantized", "arena", "input", "output", "ok", "err", "has", "weights", "qinput",
                       "qoutput", "integer", "portable"}
    prefix_of = lambda node: "%s_%s" % (name, c_ident(node, used))     # noqa: E731
    for node, layer, ins, outs in nodes:
        op = type(layer).__name__
        missing = [i for i in ins if i not in values]
        if missing:
            raise ExportError("node %r (%s) reads %r, which no earlier node writes" % (node, op, missing[0]))
        if len(outs) != 1:
            raise ExportError("node %r (%s): %d outputs; the C export handles one" % (node, op, len(outs)))
        xs = [values[i] for i in ins]
        if any(x.spatial > 1 for x in xs):
            try:
                shape = layer.infer(*[x.spec for x in xs]).shape
            except Exception:           # noqa: BLE001 - _node_step reports it, naming the node
                shape = None
            xs = layout.ready(node, layer, xs, shape, steps, prefix_of)
        st, y = _node_step(node, op, layer, xs, outs[0], prefix_of)
        if st is not None:
            steps.append(st)
        values[outs[0]] = y
    final = layout.output_ready(values[outputs[0]], steps, prefix_of)
    if final.kind == "int":
        raise ExportError("model: the output %r is an integer (size) value" % outputs[0])
    if final.kind == "quant":                       # fastq's Model dequantizes its output
        dq = LAYER_TYPES["Dequantize"]()
        st, final = _node_step("output", "Dequantize", dq, [final], "output",
                               lambda _: "%s_%s" % (name, c_ident("output_dequantize", used)),
                               note="the model's output is dequantized, as fastq's Model does")
        steps.append(st)
    return _assemble(name, model, steps, values[inputs[0]], final, nodes)


def _quantized_region(steps):
    """(first, last) step indices of the Quantize / Dequantize pair net_run_quantized spans, when
    every step between them is integer in, integer out; else None."""
    first = next((i for i, s in enumerate(steps) if s.output.kind == "quant" and s.inputs[0].kind == "float"), None)
    if first is None:
        return None
    last = max((i for i, s in enumerate(steps) if s.output.kind == "float" and s.inputs[0].kind == "quant"),
               default=-1)
    # every step between reads and writes integers only (a second Quantize of the float input,
    # say, would need the float input net_run_quantized does not take)
    if last < first or any(s.output.kind != "quant" or any(v.kind != "quant" for v in s.inputs)
                           for s in steps[first + 1:last]):
        return None
    return first, last


def _assemble(name, model, steps, x_in, final, nodes):
    up = name.upper()
    pinned = {id(x_in.root()), id(final.root())}
    offsets, arena = allocate(steps, pinned)

    def buf(v, run_in, run_out):
        r = v.root()
        if r is run_in.root():
            return "input"
        if r is run_out.root():
            return "output"
        return "%s_ARENA(%s, %d)" % (up, r.ctype, offsets[id(r)])

    def call(i, st, run_in, run_out):
        args = [buf(v, run_in, run_out) for v in st.inputs] + [buf(st.output, run_in, run_out)]
        if st.scratch:
            args.append("%s_ARENA(uint8_t, %d)" % (up, offsets[("scratch", i)]))
        text = "%s(%s)" % (st.func, ", ".join(args))
        if st.returns_status:
            return "    if (%s) return %s_ERR_NONFINITE;" % (text, up)
        return "    %s;" % text

    def body(idx, run_in, run_out):
        lines = [call(i, steps[i], run_in, run_out) for i in idx]
        if run_in.root() is run_out.root():          # nothing computes the output: copy it
            lines.append("    { int32_t i; for (i = 0; i < %d; i++) output[i] = input[i]; }" % run_out.size)
        return lines

    region = _quantized_region(steps)
    has_q = region is not None
    run_lines = body(range(len(steps)), x_in, final)
    q_lines, qin, qout = [], None, None
    if has_q:
        qin, qout = steps[region[0]].output, steps[region[1]].inputs[0]
        q_lines = body(range(region[0] + 1, region[1]), qin, qout)
    integer_only = has_q and all(s.quantized for s in steps[region[0] + 1:region[1]])
    fp = estimate(steps, arena, region, x_in.size, final.size)
    with open(os.path.join(_TEMPLATES, "runtime.c.in")) as f:
        runtime = f.read().replace("@NAME@", up)
    header = _header(name, up, model, nodes, x_in, final, qin, qout, arena, fp, integer_only)
    src = [
        "/* %s.c: generated by fastq from a model of %d nodes; see %s.h. */" % (name, len(nodes), name),
        '#include "%s.h"\n' % name,
        "#include <float.h>\n#include <stdint.h>\n#include <string.h>\n",
        runtime,
    ]
    if arena:
        src += ["/* ---- the arena: every intermediate value at a fixed offset (offsets planned by lifetime) ---- */",
                "static float %s_arena[(%s_ARENA_BYTES + 3) / 4];" % (name, up),
                "#define %s_ARENA(type, offset) ((type *)(void *)((unsigned char *)%s_arena + (offset)))\n" % (up, name)]
    for i, st in enumerate(steps):
        guard = integer_only and not (has_q and region[0] < i < region[1])
        src.append(("#ifndef %s_INTEGER_ONLY\n%s\n#endif\n" % (up, st.code)) if guard else st.code + "\n")
    run_fn = "int %s_run(const float *input, float *output)\n{\n    if (!input || !output) return %s_ERR_NULL;\n%s\n" \
             "    return %s_OK;\n}\n" % (name, up, "\n".join(run_lines), up)
    src.append(("#ifndef %s_INTEGER_ONLY\n%s#endif\n" % (up, run_fn)) if integer_only else run_fn)
    if has_q:
        src.append("int %s_run_quantized(const %s *input, %s *output)\n{\n    if (!input || !output) return %s_ERR_NULL;\n"
                   "%s\n    return %s_OK;\n}\n" % (name, qin.ctype, qout.ctype, up, "\n".join(q_lines), up))
    held = {id(st.output.root()): st.output.root().nbytes for st in steps if id(st.output.root()) not in pinned}
    return Generated(name, header, "\n".join(src), fp, has_q, x_in.size, final.size,
                     qin.dtype if has_q else None, qout.dtype if has_q else None, integer_only,
                     sum(held.values()) + sum(st.scratch for st in steps))


def _header(name, up, model, nodes, x_in, final, qin, qout, arena, fp, integer_only):
    summary = [" *   %-16s %s" % (n, _describe(layer)) for n, layer, _, _ in nodes]
    lines = [
        "/* %s.h: a fastq model as standalone C99 (generated by fastq.export; do not edit).\n *" % name,
        " * Footprint (bytes):",
        " *   flash: weights and constants %d (exact), code ~%d (estimate: Cortex-M4 -Os, measured per" % (fp.weights, fp.code),
        " *          step kind; arm-none-eabi-size gives the real figure)",
        " *   RAM:   arena %d (exact, %s_ARENA_BYTES), stack ~%d (estimate; -fstack-usage gives the real figure)"
        % (fp.arena, up, fp.stack),
        " *",
        " * Nodes:",
    ] + summary + [
        " *",
        " * Build: C99, no heap, libc only for memcpy (no libm). Compile without floating-point",
        " * contraction (-ffp-contract=off; GCC's default with -std=c99) and without -ffast-math:",
        " * the float32 steps must round exactly as torch's kernels do. %s.c checks what it can at" % name,
        " * compile time (FLT_EVAL_METHOD == 0, no __FAST_MATH__). Fast paths: ARM DSP (SMLAD, when",
        " * __ARM_FEATURE_DSP) and NEON dot product (SDOT, when __ARM_FEATURE_DOTPROD); -DFASTQ_PORTABLE",
        " * or -D%s_PORTABLE keeps the portable loops. Not reentrant: one static arena." % up,
        " */",
        "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n" % (up, up),
        "#define %s_INPUT_SIZE %d      /* floats per sample in%s */" % (up, x_in.size, _shape_words(x_in)),
        "#define %s_OUTPUT_SIZE %d     /* floats per sample out%s */" % (up, final.size, _shape_words(final)),
        "#define %s_ARENA_BYTES %d     /* the static scratch arena */" % (up, arena),
        "#define %s_WEIGHTS_BYTES %d   /* static const weights and constants (flash) */" % (up, fp.weights),
        "",
        "/* Return codes */",
    ]
    for ident, code, what in ERRORS:
        lines.append("#define %s_%-14s %d   /* %s */" % (up, ident, code, what))
    lines += ["", "/* One sample: %s_INPUT_SIZE floats in, %s_OUTPUT_SIZE floats out, the model's" % (up, up),
              " * Quantize and Dequantize included; equal bit for bit to fastq's model(x) on one row. */"]
    if integer_only:
        lines.append("#ifndef %s_INTEGER_ONLY" % up)
    lines.append("int %s_run(const float *input, float *output);" % name)
    if integer_only:
        lines += ["#endif", ""]
    if qin is not None:
        lines += [
            "",
            "/* The integers between the first Quantize and the last Dequantize: %s_QINPUT_SIZE values" % up,
            " * quantized with (%s_QINPUT_SCALE, %s_QINPUT_ZERO_POINT) in, %s_QOUTPUT_SIZE out.%s */" % (
                up, up, up, " Integer only: define %s_INTEGER_ONLY to compile\n * this path alone, without "
                                "any float operation (MCUs without an FPU)." % up if integer_only else ""),
            "#define %s_HAS_RUN_QUANTIZED 1" % up,
            "#define %s_QINPUT_SIZE %d" % (up, qin.size),
            "#define %s_QINPUT_SCALE %.9g   /* %s */" % (up, qin.scale, qin.dtype),
            "#define %s_QINPUT_ZERO_POINT %d" % (up, qin.zero_point),
            "#define %s_QOUTPUT_SIZE %d" % (up, qout.size),
            "#define %s_QOUTPUT_SCALE %.9g   /* %s */" % (up, qout.scale, qout.dtype),
            "#define %s_QOUTPUT_ZERO_POINT %d" % (up, qout.zero_point),
            "int %s_run_quantized(const %s *input, %s *output);" % (name, qin.ctype, qout.ctype),
        ]
    else:
        lines += ["", "#define %s_HAS_RUN_QUANTIZED 0   /* float values between the first Quantize and the "
                      "last Dequantize (or none) */" % up]
    lines += ["", "#ifdef __cplusplus\n}\n#endif", "#endif", ""]
    return "\n".join(lines)


def _shape_words(v):
    """', shape [3][96][96] (C, H, W: torch's order, flattened)' for a value with a known shape."""
    dims = tuple(v.shape or ())[1:]
    if not dims or any(d is None for d in dims):
        return ""
    names = {1: "", 2: " (C, L: torch's order, flattened)", 3: " (C, H, W: torch's order, flattened)"}
    return ", shape %s%s" % ("".join("[%d]" % d for d in dims), names.get(len(dims), " (torch's order, flattened)"))


def _describe(layer):
    r = repr(layer).replace("\n", " ")
    return r if len(r) < 90 else r[:87] + "..."
