"""Where spatial values meet ops that read samples as flat C-order buffers.

Convolutions and pools write channels-last (NHWC: the channels of one pixel side by side, the
order their inner products read) and read either order through strides (Layer.reads_layout).
Ops that keep the shape (quantize, relu, add, ...) work on any order, so their outputs keep their
inputs' order. Every other op (flatten, reshape, Linear, cat, the run's output) reads torch's
NCHW order: a channels-last input with more than one pixel is first copied into NCHW order by a
transpose step here. One pixel (after a global pool) is the same in both orders."""
from __future__ import annotations

from .plan import Step, Value, comment_text


def _is_nhwc(v):
    return v.layout == "nhwc" and v.spatial > 1


def transpose_step(prefix, x, name):
    """(Step, Value): x (NHWC, [N, C, ...]) copied into a new value in NCHW order, by the C
    function prefix + "__run" (prefix: a node prefix export/plan.c_ident made)."""
    c, p = int(x.shape[1]), x.spatial
    func = prefix + "__run"
    y = Value(name, x.kind, x.size, x.dtype, x.scale, x.zero_point, shape=x.shape, layout="nchw")
    code = ("/* %s: channels-last -> torch's C, H, W order (%d channels x %d pixels) */\n"
            "static void %s(const %s *x, %s *y)\n{\n    int32_t c, p;\n"
            "    for (c = 0; c < %d; c++)\n        for (p = 0; p < %d; p++) y[c * %d + p] = x[p * %d + c];\n}"
            % (comment_text(name, 60), c, p, func, x.ctype, x.ctype, c, p, p, c))
    return Step(name, func, (x,), y, code=code, quantized=True, cost="elementwise"), y


def ready(node, layer, xs, spec_shape, steps, prefix_of):
    """The inputs as `layer` may read them: transposes appended to `steps` where needed."""
    if getattr(layer, "reads_layout", False):
        return list(xs)
    keeps = spec_shape is not None and all(tuple(x.shape or ())[1:] == tuple(spec_shape)[1:] for x in xs)
    if keeps and len({x.layout or "nchw" for x in xs if x.spatial > 1}) <= 1:
        return list(xs)                 # elementwise in one order: any order will do
    out = []
    for i, x in enumerate(xs):
        if _is_nhwc(x):
            name = "%s_in%d_nchw" % (node, i)
            st, x = transpose_step(prefix_of(name), x, name)
            steps.append(st)
        out.append(x)
    return out


def follow(y, xs):
    """A shape-keeping op's output takes its inputs' order."""
    if y.layout is None and xs and y.shape is not None and xs[0].shape is not None \
            and tuple(y.shape[1:]) == tuple(xs[0].shape[1:]):
        y.layout = xs[0].layout


def output_ready(final, steps, prefix_of):
    if _is_nhwc(final):
        st, final = transpose_step(prefix_of("output_nchw"), final, "output_nchw")
        steps.append(st)
    return final
