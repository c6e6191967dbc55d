"""fastq.Model -> net.h / net.c: walk the nodes, build one Step per node, place the values in
one static arena, and write the run functions around the steps."""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np

from ..layers import LAYER_TYPES
from ..layers._base import ANY, FLOAT, QUANT
from .emit import EmitContext, ExportError
from .footprint import Footprint, estimate
from . import layout
from .plan import INT32_MAX, Value, allocate, c_ident, comment_text

_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
NAME_MAX = 32
# C99 / C11 / C23 keywords and the names <stdbool.h> / C23 make keywords
KEYWORDS = frozenset("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local
alignas alignof bool constexpr false nullptr static_assert thread_local true typeof typeof_unqual""".split())
# what the generated file scope declares besides the nodes' names (<name>_... and <NAME>_...)
GLOBAL_SUFFIXES = ("run", "run_quantized", "arena", "H", "INPUT_SIZE", "OUTPUT_SIZE", "ARENA_BYTES",
                   "WEIGHTS_BYTES", "OK", "ERR_NULL", "ERR_NONFINITE", "HAS_RUN_QUANTIZED", "QINPUT_SIZE",
                   "QINPUT_SCALE", "QINPUT_ZERO_POINT", "QOUTPUT_SIZE", "QOUTPUT_SCALE", "QOUTPUT_ZERO_POINT",
                   "INTEGER_ONLY", "PORTABLE", "ARENA")
# names the included headers (<stdint.h>, <string.h>, <float.h>) reserve, and the runtime's own
_RESERVED = (re.compile(r"(str|mem|wcs)[a-z].*"),             # <string.h>'s future functions
             re.compile(r"u?int[A-Za-z0-9_]*_t"),              # <stdint.h> types
             re.compile(r"U?INT[A-Z0-9_]*_(MAX|MIN|C)"),       # <stdint.h> limits and constant macros
             re.compile(r"(fq|fastq)(_.*)?", re.I))            # the runtime's fq_ / FQ_ / FASTQ_ names


def check_name(name):
    """name: the C prefix of everything the export declares (files <name>.h / <name>.c, <name>_run,
    <NAME>_INPUT_SIZE, the include guard <NAME>_H ...). Refused: anything but ASCII letters,
    digits and single underscores, starting with a letter (C reserves _X and __ at file scope:
    `_STDINT` would name the include guard _STDINT_H that hides <stdint.h>), a trailing
    underscore (<name>_ + "_" would make the "__" that keeps node names apart), more than
    NAME_MAX characters, a C keyword, and a name whose declarations fall in a namespace the
    included headers or the runtime (fq_, FQ_, FASTQ_) reserve."""
    if not isinstance(name, str):
        raise TypeError("name: expected a str (a C identifier), got %s" % type(name).__name__)
    if not _NAME.fullmatch(name):
        raise ValueError("name: expected a C identifier of ASCII letters, digits and _ starting with a letter, "
                         "got %r" % (name,))
    if "__" in name or name.endswith("_"):
        raise ValueError("name: %r holds '__' or ends with '_' (the export joins names with '_' and keeps '__' "
                         "for its own separator)" % (name,))
    if len(name) > NAME_MAX:
        raise ValueError("name: %r has %d characters; at most %d" % (name, len(name), NAME_MAX))
    if name in KEYWORDS or name.lower() in KEYWORDS:
        raise ValueError("name: %r is a C keyword" % (name,))
    for ident in [name] + ["%s_%s" % (name if s.islower() else name.upper(), s) for s in GLOBAL_SUFFIXES]:
        if any(r.fullmatch(ident) for r in _RESERVED):
            raise ValueError("name: %r would declare %s, a name C's headers or fastq's runtime reserve" % (name, ident))
    return name


def check_text(text, what):
    """The last guard on the generated C: printable ASCII lines only, no trigraph ("??"), no
    line splice (a backslash at a line end). Names enter C only through c_ident and
    comment_text, which keep all this; this holds them to it."""
    for i, line in enumerate(text.split("\n")):
        bad = re.search(r"[^ -~]", line)
        if bad or "??" in line or line.endswith("\\"):
            raise AssertionError("fastq bug: the generated %s has an unsafe line %d: %r" % (what, i + 1, line[:80]))

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

    def write(self, directory, overwrite=True):
        """Writes <name>.h and <name>.c into directory (made if missing): each into a temporary
        file in that folder, flushed and fsynced, then renamed over the target (os.replace, atomic
        on POSIX and Windows), the folder fsynced after. A failure before the renames (an encoding,
        a full disk, a permission) removes the temporaries and leaves any earlier pair as it was.
        overwrite=False refuses (FileExistsError) when either file exists."""
        h = os.path.join(directory, self.name + ".h")
        c = os.path.join(directory, self.name + ".c")
        data = [(h, self.header.encode("ascii")), (c, self.source.encode("ascii"))]
        os.makedirs(directory, exist_ok=True)
        if not overwrite:
            for path, _ in data:
                if os.path.lexists(path):
                    raise FileExistsError("directory: %s exists (export_c(..., overwrite=True) replaces it)" % path)
        temps = []
        try:
            for path, blob in data:
                fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
                temps.append(tmp)
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            for (path, _), tmp in zip(data, temps):
                os.replace(tmp, path)
        finally:
            for tmp in temps:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        _fsync_dir(directory)
        return h, c


def _fsync_dir(directory):
    """The renames themselves durable (POSIX); a folder cannot be opened for that on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    if input_size is not None:
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
            raise ValueError("input_size: expected a positive int, got %r" % (input_size,))
        if input_size > INT32_MAX // 4:
            raise ValueError("input_size: %d floats per sample; the C export's sizes and byte offsets are int32 "
                             "(at most %d floats)" % (input_size, INT32_MAX // 4))
    for name, layer, _, _ in nodes:
        k = getattr(layer, "in_features", None)
        if isinstance(k, int) and not isinstance(k, bool):
            if input_size is not None and int(input_size) != k:
                raise ValueError("input_size: %d, but node %r takes %d inputs" % (input_size, name, k))
            return k
    if input_size is None:
        raise ValueError("input_size: required for a model without Linear layers (its sample size "
                         "cannot be inferred)")
    return int(input_size)


def _check_takes(node, op, layer, xs):
    """The one refusal of a value of the wrong kind, from the op's declared `takes`."""
    takes = getattr(layer, "takes", ANY)
    if takes == QUANT and any(x.kind == "float" for x in xs):
        raise ExportError("node %r (%s) receives floats; the model needs a Quantize before it" % (node, op))
    if takes == FLOAT and any(x.kind == "quant" for x in xs):
        raise ExportError("node %r (%s) receives quantized values; the model needs a Dequantize before it"
                          % (node, op))


def _node_step(node, op, layer, xs, out_name, prefix_of, note=None, mixed_layouts=False):
    """(Step or None, output Value) of one node, through the op protocol (mixed_layouts: the
    node's inputs came in two layouts, before any transpose made them one; ctx.mixed_layouts)."""
    if not (callable(getattr(layer, "infer", None)) and callable(getattr(layer, "emit_c", None))):
        raise ExportError("node %r: %s cannot be exported to C (not a fastq op)" % (node, op))
    _check_takes(node, op, layer, xs)
    specs = [x.spec for x in xs]
    try:
        spec = layer.infer(*specs)
        data = layer.prepare(*specs)
    except NotImplementedError as e:
        raise ExportError(str(e) if str(e).startswith("node") else "node %r (%s): %s" % (node, op, e)) from None
    except (TypeError, ValueError) as e:      # a shape or kind the op refuses
        raise ExportError("node %r (%s): %s (inputs: %s)"
                          % (node, op, e, ", ".join("%s of shape %s" % (x.kind, x.shape) for x in xs))) from None
    if isinstance(spec, tuple):
        raise ExportError("node %r (%s): %d outputs; the C export handles one" % (node, op, len(spec)))
    try:
        y = Value.of(out_name, spec, size=xs[0].size if xs else None)
    except ValueError as e:
        raise ExportError("node %r (%s): %s" % (node, op, e)) from None
    ctx = EmitContext(node, op, lambda: prefix_of(node))
    ctx.note = note
    ctx.mixed_layouts = mixed_layouts
    try:
        st = layer.emit_c(ctx, node, xs, y, data)
    except ExportError:
        raise
    except NotImplementedError as e:           # the op's own refusal (Layer.unsupported)
        raise ExportError(str(e)) from None
    layout.follow(y, xs)
    return st, y


def _input_value(name, nodes, input_size, input_shape):
    """The model input Value. Without input_shape: [batch, size], size from input_size or the
    first Linear layer's in_features (a model with convolutions or pooling needs input_shape).
    With it: one sample of that shape (C, H, W), (C, L) or any other, flattened in torch's C
    order; input_size, when given too, must hold as many values."""
    if input_shape is None:
        spatial = next((n for n, layer, _, _ in nodes if getattr(layer, "reads_layout", False)), None)
        if spatial is not None:
            raise ValueError("input_shape: required for a model with convolutions or pooling (node %r); pass "
                             "one sample's (C, H, W) or (C, L)" % (spatial,))
        size = _input_size(nodes, input_size)
        return Value(name, "float", size, shape=(None, size))
    if not isinstance(input_shape, (tuple, list)) or not input_shape or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in input_shape):
        raise ValueError("input_shape: expected a tuple of positive ints (one sample's shape, no batch: (C, H, W), "
                         "(C, L) or (K,)), got %r" % (input_shape,))
    shape = tuple(int(d) for d in input_shape)
    size = int(np.prod(shape, dtype=object))
    if size > INT32_MAX // 4:
        raise ValueError("input_shape: %r holds %d floats per sample; the C export's sizes and byte offsets are "
                         "int32 (at most %d floats)" % (shape, size, INT32_MAX // 4))
    if input_size is not None:
        _input_size([], input_size)                 # its own checks (a positive int in range)
        if int(input_size) != size:
            raise ValueError("input_shape: %r holds %d values, but input_size is %d" % (shape, size, input_size))
    if len(shape) == 1:                             # a flat sample: the first Linear's width must agree
        _input_size(nodes, size)
    return Value(name, "float", size, shape=(None,) + shape, layout="nchw" if len(shape) > 1 else None)


def generate(model, name="net", input_size=None, input_shape=None):
    """Generated(name, header, source, footprint) for a fastq model. input_shape: one sample's
    shape (no batch): (C, H, W) or (C, L) for a model with convolutions or pooling (required
    there), or any shape whose ops read it (a cat on the last axis, a transpose); net_run then
    takes the sample flattened in torch's order. Default: [batch, input_size]."""
    check_name(name)
    nodes, inputs, outputs = _graph(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError("model: %d inputs and %d outputs; the C export takes one of each"
                          % (len(inputs), len(outputs)))
    values = {inputs[0]: _input_value(inputs[0], nodes, input_size, input_shape)}
    # node names enter C only as c_ident makes them, each once, after <name>_ and before "__"
    steps, used = [], set()
    prefix_of = lambda node: "%s_%s" % (name, c_ident(node, used))     # noqa: E731
    for node, layer, ins, outs in nodes:
        op = type(layer).__name__
        missing = [i for i in ins if i not in values]
        if missing:
            raise ExportError("node %r (%s) reads %r, which no earlier node writes" % (node, op, missing[0]))
        if len(outs) != 1:
            raise ExportError("node %r (%s): %d outputs; the C export handles one" % (node, op, len(outs)))
        xs = [values[i] for i in ins]
        # torch computes an elementwise op on inputs of two layouts by another loop than on inputs
        # of one (the quantized add: its scalar formula throughout); the op learns it from ctx
        mixed = len({x.layout or "nchw" for x in xs if x.spatial > 1}) > 1
        if any(x.spatial > 1 for x in xs):
            try:
                shape = layer.infer(*[x.spec for x in xs]).shape
            except Exception:           # noqa: BLE001 - _node_step reports it, naming the node
                shape = None
            xs = layout.ready(node, layer, xs, shape, steps, prefix_of)
        st, y = _node_step(node, op, layer, xs, outs[0], prefix_of, mixed_layouts=mixed)
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
    if arena > INT32_MAX:
        raise ValueError("model: an arena of %d bytes; the C export's byte offsets are int32" % arena)

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
    check_text(header, "header")
    check_text("\n".join(part for part in src if part is not runtime), "source")    # the runtime: fixed text
    held = {id(st.output.root()): st.output.root().nbytes for st in steps if id(st.output.root()) not in pinned}
    return Generated(name, header, "\n".join(src), fp, has_q, x_in.size, final.size,
                     qin.dtype if has_q else None, qout.dtype if has_q else None, integer_only,
                     sum(held.values()) + sum(st.scratch for st in steps))


def _header(name, up, model, nodes, x_in, final, qin, qout, arena, fp, integer_only):
    summary = [" *   %-16s %s" % (comment_text(n, 40), _describe(layer)) for n, layer, _, _ in nodes]
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
    return comment_text(repr(layer), 90)
