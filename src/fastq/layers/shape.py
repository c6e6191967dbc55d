"""Ops that move values without computing on them: reshape / view, squeeze, unsqueeze,
transpose, permute, contiguous, size, getitem. They act on float arrays and on QTensors alike
(the integers move, scale and zero point stay), as torch's view ops do on quantized tensors."""
from __future__ import annotations

import numpy as np

from ..qtensor import QTensor
from ._base import ANY, Layer, Setting, check_int, check_kind, register
from ._spec import Spec


class _Move(Layer):
    """A shape op: infer moves the dimensions; in C the output is the input's buffer where the
    C-order bytes of a sample stay as they are (ctx.view refuses an op that moves the batch)."""
    takes = ANY

    def _value_spec(self, x):
        return check_kind(x, ("float", "quant"), type(self).__name__)

    def emit_c(self, ctx, node, inputs, output, op_data):
        return ctx.view(output, inputs[0])

    def summary_row(self, specs, op_data):
        return self.settings_row("exact (moves / clamps)")


class _Within(_Move):
    """Moves data inside a sample (transpose, permute): in C a copy in the new order, or the
    input's buffer where only dimensions of size 1 move (the C-order bytes are the same)."""

    def _perm(self, ndim):
        raise NotImplementedError

    def emit_c(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        shape = ctx.shape_of(x)
        perm = self._perm(len(shape) + 1)
        if perm[0] != 0:
            raise ctx.error("moves the batch dimension (dims %s); the C export runs one sample per call"
                            % (list(perm),))
        perm = [p - 1 for p in perm[1:]]
        out_shape = tuple(shape[p] for p in perm)
        moved = [p for p in perm if shape[p] != 1]
        if moved == sorted(moved):               # the same values in the same C order
            return ctx.view(output, x)
        strides = ctx.strides_of(shape)
        body = ctx.loop_nest(out_shape, [tuple(strides[p] for p in perm)], "y[{o}] = x[{0}];")
        code = "\n".join(["/* %s: %s: a sample of shape %s copied as %s (dims %s) */"
                          % (ctx.node, ctx.op, shape, out_shape, [0] + [p + 1 for p in perm]),
                          ctx.fn("const %s *x, %s *y" % (x.ctype, output.ctype), "\n".join(body))])
        return ctx.step((x,), output, code, quantized=x.kind == "quant")



def _values(x):
    if isinstance(x, QTensor):
        if x.axis is not None:
            raise TypeError("x: expected a per-tensor QTensor")
        return x.values
    if isinstance(x, np.ndarray):
        return x
    raise TypeError("x: expected a float array or a fastq.QTensor, got %s" % type(x).__name__)


def _like(x, v):
    return QTensor._checked(v, x.scale, x.zero_point) if isinstance(x, QTensor) else v


def _int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError("%s: expected an int, got %r" % (name, type(v).__name__))
    return int(v)


def _ints(vs, name):
    if not isinstance(vs, (list, tuple)):
        raise TypeError("%s: expected a list of ints, got %r" % (name, type(vs).__name__))
    return tuple(_int(v, name) for v in vs)


def _dim(d, ndim, name="dim"):
    if not -ndim <= d < ndim:
        raise ValueError("x: %s %d is out of range for %d dimensions" % (name, d, ndim))
    return d % ndim


def _check_shape(shape):
    if not isinstance(shape, (list, tuple)):
        raise TypeError("shape: expected a list of ints / None, got %r" % type(shape).__name__)
    shape = [None if s is None else _int(s, "shape") for s in shape]
    if sum(s == -1 for s in shape) > 1:
        raise ValueError("shape: -1 appears more than once in %r" % (shape,))
    if any(s is not None and s < -1 for s in shape):
        raise ValueError("shape: sizes must be >= 0 or -1, got %r" % (shape,))
    return shape


@register
class Reshape(_Move):
    """x.reshape(shape) / x.view(shape). shape: ints (-1 once at most) and None for each entry
    given at run time by an extra input (an int from a Size node: x.view(x.size(0), -1))."""
    takes = ANY

    settings = (Setting("shape", lambda v, prior: _check_shape(v)),)

    def __init__(self, shape):
        self._set_settings(shape=shape)
        self.n_dynamic = sum(s is None for s in self.shape)

    def __call__(self, x, *sizes):
        if len(sizes) != self.n_dynamic:
            raise ValueError("x: Reshape(%r) takes %d sizes, got %d" % (self.shape, self.n_dynamic, len(sizes)))
        it = iter(sizes)
        shape = tuple(_int(next(it), "size") if s is None else s for s in self.shape)
        v = _values(x)
        try:
            return _like(x, v.reshape(shape))
        except ValueError:
            raise ValueError("x: cannot reshape a value of shape %s to %s" % (v.shape, shape)) from None

    def emit_c(self, ctx, node, inputs, output, op_data):
        """A view of the same C-order bytes, once the shape is known: each size given at run time
        is the batch (at the front) or a number the exporter knows (a Size node of a known
        dimension); anything else, or a shape that fixes the batch, is refused."""
        x, sizes = inputs[0], list(inputs[1:])
        shape = []
        for i, d in enumerate(self.shape):
            if d is None:
                k = sizes.pop(0).known
                if k == "batch" and i == 0:
                    d = -1
                elif isinstance(k, int) and not isinstance(k, bool):
                    d = k
                else:
                    raise ctx.error("a size given at run time at position %d that is %s; the C export needs the "
                                    "batch first and every other size known" % (i, "the batch" if k == "batch" else
                                                                                "unknown here"))
            shape.append(d)
        if not shape or shape[0] != -1:
            raise ctx.error("shape %s does not keep the batch as its first dimension (-1 or x.size(0)); the C "
                            "export runs one sample per call" % (self.shape,))
        rest = shape[1:]
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1], dtype=object))
            if known == 0 or x.size % known:
                raise ctx.error("cannot reshape samples of %d values to %s" % (x.size, self.shape))
            rest[rest.index(-1)] = x.size // known
        if int(np.prod(rest, dtype=object)) != x.size:
            raise ctx.error("shape %s does not hold the %d values of a sample" % (self.shape, x.size))
        output.shape = (None,) + tuple(int(d) for d in rest)
        return ctx.view(output, x)

    def infer(self, x, *sizes):
        """The shape, where known: sizes given at run time (Size nodes) are unknown here; a
        leading unknown or -1 is the batch, and -1 elsewhere is solved from one sample's size."""
        self._value_spec(x)
        if len(sizes) != self.n_dynamic:
            raise ValueError("x: Reshape(%r) takes %d sizes, got %d" % (self.shape, self.n_dynamic, len(sizes)))
        shape = list(self.shape)
        n = x.per_sample
        if shape and shape[0] in (None, -1) and x.shape and x.shape[0] is None:
            rest = shape[1:]
            if rest.count(-1) == 1 and None not in rest and n is not None:
                known = int(np.prod([d for d in rest if d != -1]))
                if known == 0 or n % known:
                    raise ValueError("x: cannot reshape samples of %d values to %s" % (n, self.shape))
                rest[rest.index(-1)] = n // known
            shape = [None] + [None if d == -1 else d for d in rest]
        else:
            shape = [None if d == -1 else d for d in shape]
        return x.like(shape=tuple(shape))



@register
class Squeeze(_Move):
    """x.squeeze() / x.squeeze(dim): a dimension of size other than 1 stays, as in torch."""
    takes = ANY

    settings = (Setting("dim", check_int("dim", optional=True), None),)

    def __init__(self, dim=None):
        self._set_settings(dim=dim)

    def __call__(self, x):
        v = _values(x)
        if self.dim is None:
            return _like(x, v.reshape(tuple(s for s in v.shape if s != 1)))
        if v.ndim == 0:
            return x
        d = _dim(self.dim, v.ndim)
        return _like(x, np.squeeze(v, d) if v.shape[d] == 1 else v)

    def emit_c(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        if self.dim is not None and x.shape is not None and _dim(self.dim, len(x.shape)) == 0:
            raise ctx.error("squeezes the batch dimension (dim %d); the C export runs one sample per call" % self.dim)
        return ctx.view(output, x)

    def infer(self, x):
        shape = self._value_spec(x).shape
        if self.dim is None:
            return x.like(shape=tuple(d for i, d in enumerate(shape) if d != 1))
        if not shape:
            return x
        d = _dim(self.dim, len(shape))
        return x.like(shape=shape[:d] + shape[d + 1:]) if shape[d] == 1 else x



@register
class Unsqueeze(_Move):
    """x.unsqueeze(dim)."""
    takes = ANY

    settings = (Setting("dim", check_int("dim")),)

    def __init__(self, dim):
        self._set_settings(dim=dim)

    def __call__(self, x):
        v = _values(x)
        return _like(x, np.expand_dims(v, _dim(self.dim, v.ndim + 1)))

    def infer(self, x):
        shape = self._value_spec(x).shape
        d = _dim(self.dim, len(shape) + 1)
        return x.like(shape=shape[:d] + (1,) + shape[d:])



@register
class Transpose(_Within):
    """x.transpose(dim0, dim1) (a strided view, as in torch)."""
    takes = ANY

    settings = (Setting("dim0", check_int("dim0")), Setting("dim1", check_int("dim1")))

    def __init__(self, dim0, dim1):
        self._set_settings(dim0=dim0, dim1=dim1)

    def __call__(self, x):
        v = _values(x)
        return _like(x, np.swapaxes(v, _dim(self.dim0, v.ndim, "dim0"), _dim(self.dim1, v.ndim, "dim1")))

    def _perm(self, ndim):
        perm = list(range(ndim))
        a, b = _dim(self.dim0, ndim, "dim0"), _dim(self.dim1, ndim, "dim1")
        perm[a], perm[b] = perm[b], perm[a]
        return perm

    def infer(self, x):
        shape = list(self._value_spec(x).shape)
        a, b = _dim(self.dim0, len(shape), "dim0"), _dim(self.dim1, len(shape), "dim1")
        shape[a], shape[b] = shape[b], shape[a]
        return x.like(shape=tuple(shape))



@register
class Permute(_Within):
    """x.permute(dims)."""
    takes = ANY

    settings = (Setting("dims", lambda v, prior: list(_ints(v, "dims"))),)

    def __init__(self, dims):
        self._set_settings(dims=dims)

    def __call__(self, x):
        v = _values(x)
        if len(self.dims) != v.ndim:
            raise ValueError("x: permute(%r) of a value with %d dimensions" % (self.dims, v.ndim))
        return _like(x, np.transpose(v, [_dim(d, v.ndim, "dims") for d in self.dims]))

    def _perm(self, ndim):
        if len(self.dims) != ndim:
            raise ValueError("x: permute(%r) of a value with %d dimensions" % (self.dims, ndim))
        return [_dim(d, ndim, "dims") for d in self.dims]

    def infer(self, x):
        shape = self._value_spec(x).shape
        if len(self.dims) != len(shape):
            raise ValueError("x: permute(%r) of a value with %d dimensions" % (self.dims, len(shape)))
        return x.like(shape=tuple(shape[_dim(d, len(shape), "dims")] for d in self.dims))



@register
class Contiguous(_Move):
    """x.contiguous(): the same values, laid out in C order."""
    takes = ANY

    def __call__(self, x):
        return _like(x, np.ascontiguousarray(_values(x)))

    def infer(self, x):
        return self._value_spec(x)



@register
class Size(_Move):
    """x.size() -> tuple of ints, x.size(dim) -> int (also x.shape, x.shape[d])."""
    takes = ANY

    settings = (Setting("dim", check_int("dim", optional=True), None),)

    def __init__(self, dim=None):
        self._set_settings(dim=dim)

    def __call__(self, x):
        shape = _values(x).shape
        if self.dim is None:
            return tuple(int(s) for s in shape)
        return int(shape[_dim(self.dim, len(shape))])

    def infer(self, x):
        shape = self._value_spec(x).shape
        if self.dim is None:
            return Spec("int", (len(shape),))
        _dim(self.dim, len(shape))
        return Spec("int", ())

    def emit_c(self, ctx, node, inputs, output, op_data):
        """No C (a size is known when the C is written); the exporter notes what it is: the
        batch (dimension 0, given at run time) or a number, for a Reshape that reads it."""
        x = inputs[0]
        shape = tuple(x.shape) if x.shape is not None else (None, x.size)
        known = tuple("batch" if i == 0 else d for i, d in enumerate(shape))
        output.known = known if self.dim is None else known[_dim(self.dim, len(shape))]
        return None



@register
class GetItem(_Move):
    """value[index] for a tuple value (a node with several results, x.size()[i])."""
    takes = ANY

    settings = (Setting("index", check_int("index")),)

    def __init__(self, index):
        self._set_settings(index=index)

    def __call__(self, x):
        if not isinstance(x, tuple):
            raise TypeError("x: GetItem takes a tuple value, got %s" % type(x).__name__)
        if not -len(x) <= self.index < len(x):
            raise ValueError("x: index %d out of range for a tuple of %d" % (self.index, len(x)))
        return x[self.index]

    def infer(self, x):
        check_kind(x, ("int",), "GetItem")
        return Spec("int", ())

    def emit_c(self, ctx, node, inputs, output, op_data):
        k = inputs[0].known
        if isinstance(k, tuple) and -len(k) <= self.index < len(k):
            output.known = k[self.index]
        return None



@register
class FloorDiv(Layer):
    """size // divisor on an int (shufflenet's channel shuffle: num_channels // groups), Python's
    floor division as torch.fx traces it; divisor is a constant int."""
    takes = ANY

    settings = (Setting("divisor", check_int("divisor")),)

    def __init__(self, divisor):
        self._set_settings(divisor=divisor)
        if self.divisor == 0:
            raise ValueError("divisor: expected a nonzero int, got 0")

    def __call__(self, x):
        return _int(x, "x") // self.divisor

    def infer(self, x):
        check_kind(x, ("int",), "FloorDiv")
        return Spec("int", ())

    def emit_c(self, ctx, node, inputs, output, op_data):
        """No C: the exporter knows the result where it knows the size (not the batch)."""
        k = getattr(inputs[0], "known", None)
        output.known = k // self.divisor if isinstance(k, int) and not isinstance(k, bool) else None
        return None

    def summary_row(self, specs, op_data):
        return {"qparams": "-", "constants": "// %d" % self.divisor, "arithmetic": "int floor division"}


@register
class Chunk(_Move):
    """x.chunk(chunks, dim)[index] / torch.chunk: piece `index` of torch's split of dim into
    pieces of ceil(size / chunks) (the last one shorter; torch makes fewer pieces when they run out)."""
    takes = ANY

    settings = (Setting("chunks", check_int("chunks")), Setting("dim", check_int("dim")),
                Setting("index", check_int("index")))

    def __init__(self, chunks, dim, index):
        self._set_settings(chunks=chunks, dim=dim, index=index)
        if self.chunks < 1:
            raise ValueError("chunks: expected >= 1, got %d" % self.chunks)
        if not 0 <= self.index < self.chunks:
            raise ValueError("index: expected 0 <= index < chunks = %d, got %d" % (self.chunks, self.index))

    def _bounds(self, size):
        step = -(-size // self.chunks) if size else 0
        lo, hi = self.index * step, min((self.index + 1) * step, size)
        if step == 0 or lo >= size:
            raise ValueError("x: chunk(%d) of a dimension of size %d has %d pieces; no piece %d"
                             % (self.chunks, size, -(-size // step) if step else 0, self.index))
        return lo, hi

    def __call__(self, x):
        v = _values(x)
        d = _dim(self.dim, v.ndim)
        lo, hi = self._bounds(v.shape[d])
        idx = [slice(None)] * v.ndim
        idx[d] = slice(lo, hi)
        return _like(x, np.ascontiguousarray(v[tuple(idx)]))

    def infer(self, x):
        spec = self._value_spec(x)
        d = _dim(self.dim, len(spec.shape))
        if d == 0:
            raise ValueError("x: chunk along dim 0 splits the batch, which fastq keeps whole")
        shape = list(spec.shape)
        if shape[d] is not None:
            lo, hi = self._bounds(shape[d])
            shape[d] = hi - lo
        return spec.like(shape=tuple(shape))

    def emit_c(self, ctx, node, inputs, output, op_data):
        """A copy of the piece: for each index of the dimensions before dim, its block of
        (hi - lo) * inner consecutive values (C order; a channels-last value arrives transposed)."""
        x = inputs[0]
        if x.kind not in ("float", "quant"):
            raise ctx.error("of a %s value" % x.kind)
        shape = ctx.shape_of(x)
        d = _dim(self.dim, len(shape) + 1)
        if d == 0:
            raise ctx.error("chunk along the batch dimension; the C export runs one sample per call")
        lo, hi = self._bounds(shape[d - 1])
        outer = int(np.prod(shape[:d - 1], dtype=np.int64))
        inner = int(np.prod(shape[d:], dtype=np.int64))
        n, step = (hi - lo) * inner, shape[d - 1] * inner
        body = ("    int32_t o, i;\n    for (o = 0; o < %d; o++)\n        for (i = 0; i < %d; i++)\n"
                "            y[o * %d + i] = x[o * %d + %d + i];" % (outer, n, n, step, lo * inner))
        code = "\n".join(["/* %s: chunk(%d, dim %d)[%d] of samples of shape %s: indices %d..%d of dim %d */"
                          % (ctx.node, self.chunks, self.dim, self.index, shape, lo, hi - 1, self.dim),
                          ctx.fn("const %s *x, %s *y" % (x.ctype, x.ctype), body)])
        return ctx.step((x,), output, code, quantized=x.kind == "quant")
