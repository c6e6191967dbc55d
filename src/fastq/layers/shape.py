"""Ops that move values without computing on them: reshape / view, squeeze, unsqueeze,
transpose, permute, contiguous, size, getitem. They act on float arrays and on QTensors alike
(the integers move, scale and zero point stay), as torch's view ops do on quantized tensors."""
from __future__ import annotations

import numpy as np

from ..qtensor import QTensor

ANY = "any"


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


class Reshape:
    """x.reshape(shape) / x.view(shape). shape: ints (-1 once at most) and None for each entry
    given at run time by an extra input (an int from a Size node: x.view(x.size(0), -1))."""
    takes = ANY

    def __init__(self, shape):
        if not isinstance(shape, (list, tuple)):
            raise TypeError("shape: expected a list of ints / None, got %r" % type(shape).__name__)
        self.shape = tuple(None if s is None else _int(s, "shape") for s in shape)
        if sum(s == -1 for s in self.shape) > 1:
            raise ValueError("shape: -1 appears more than once in %r" % (self.shape,))
        self.n_dynamic = sum(s is None for s in self.shape)

    def __call__(self, x, *sizes):
        if len(sizes) != self.n_dynamic:
            raise ValueError("x: Reshape%r takes %d sizes, got %d" % (self.shape, self.n_dynamic, len(sizes)))
        it = iter(sizes)
        shape = tuple(_int(next(it), "size") if s is None else s for s in self.shape)
        v = _values(x)
        try:
            return _like(x, v.reshape(shape))
        except ValueError:
            raise ValueError("x: cannot reshape a value of shape %s to %s" % (v.shape, shape)) from None

    def __repr__(self):
        return "Reshape(shape=%r)" % (list(self.shape),)


class Squeeze:
    """x.squeeze() / x.squeeze(dim): a dimension of size other than 1 stays, as in torch."""
    takes = ANY

    def __init__(self, dim=None):
        self.dim = None if dim is None else _int(dim, "dim")

    def __call__(self, x):
        v = _values(x)
        if self.dim is None:
            return _like(x, v.reshape(tuple(s for s in v.shape if s != 1)))
        if v.ndim == 0:
            return x
        d = _dim(self.dim, v.ndim)
        return _like(x, np.squeeze(v, d) if v.shape[d] == 1 else v)

    def __repr__(self):
        return "Squeeze(dim=%r)" % (self.dim,)


class Unsqueeze:
    """x.unsqueeze(dim)."""
    takes = ANY

    def __init__(self, dim):
        self.dim = _int(dim, "dim")

    def __call__(self, x):
        v = _values(x)
        return _like(x, np.expand_dims(v, _dim(self.dim, v.ndim + 1)))

    def __repr__(self):
        return "Unsqueeze(dim=%d)" % self.dim


class Transpose:
    """x.transpose(dim0, dim1) (a strided view, as in torch)."""
    takes = ANY

    def __init__(self, dim0, dim1):
        self.dim0, self.dim1 = _int(dim0, "dim0"), _int(dim1, "dim1")

    def __call__(self, x):
        v = _values(x)
        return _like(x, np.swapaxes(v, _dim(self.dim0, v.ndim, "dim0"), _dim(self.dim1, v.ndim, "dim1")))

    def __repr__(self):
        return "Transpose(dim0=%d, dim1=%d)" % (self.dim0, self.dim1)


class Permute:
    """x.permute(dims)."""
    takes = ANY

    def __init__(self, dims):
        self.dims = _ints(dims, "dims")

    def __call__(self, x):
        v = _values(x)
        if len(self.dims) != v.ndim:
            raise ValueError("x: permute%r of a value with %d dimensions" % (self.dims, v.ndim))
        return _like(x, np.transpose(v, [_dim(d, v.ndim, "dims") for d in self.dims]))

    def __repr__(self):
        return "Permute(dims=%r)" % (list(self.dims),)


class Contiguous:
    """x.contiguous(): the same values, laid out in C order."""
    takes = ANY

    def __call__(self, x):
        return _like(x, np.ascontiguousarray(_values(x)))

    def __repr__(self):
        return "Contiguous()"


class Size:
    """x.size() -> tuple of ints, x.size(dim) -> int (also x.shape, x.shape[d])."""
    takes = ANY

    def __init__(self, dim=None):
        self.dim = None if dim is None else _int(dim, "dim")

    def __call__(self, x):
        shape = _values(x).shape
        if self.dim is None:
            return tuple(int(s) for s in shape)
        return int(shape[_dim(self.dim, len(shape))])

    def __repr__(self):
        return "Size(dim=%r)" % (self.dim,)


class GetItem:
    """value[index] for a tuple value (a node with several results, x.size()[i])."""
    takes = ANY

    def __init__(self, index):
        self.index = _int(index, "index")

    def __call__(self, x):
        if not isinstance(x, tuple):
            raise TypeError("x: GetItem takes a tuple value, got %s" % type(x).__name__)
        if not -len(x) <= self.index < len(x):
            raise ValueError("x: index %d out of range for a tuple of %d" % (self.index, len(x)))
        return x[self.index]

    def __repr__(self):
        return "GetItem(index=%d)" % self.index
