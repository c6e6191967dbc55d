"""Ops joining values: quantized add / add_relu / mul (torch QFunctional after convert), the
scalar forms, cat; and their float counterparts (FloatFunctional before convert, `+`, torch.cat).
Each quantized op follows one torch kernel, bit for bit (reference.py, docs/ARITHMETIC.md)."""
from __future__ import annotations

import numpy as np

from typing import NamedTuple, Optional, Tuple

from .. import _kernels, reference
from ..qtensor import QTensor, dequantize, quantize
from . import arith_emit as _c
from ._base import (ANY, FLOAT, QUANT, Layer, Setting, check_bool, check_choice, check_int,  # noqa: F401
                    check_kind, check_scale_setting, check_zero_point_in, register)
from ._spec import Spec
from ._fast import MISS, fast_call, memory_order  # noqa: F401  (memory_order: arith's name too)

ARITHMETIC = ("fbgemm", "qnnpack")
# torch's vectorized elementwise loop (cpu_kernel_vec) runs blocks of 2 x Vectorized<quint8>
# and leaves the rest to its scalar tail; measured 64 elements on AVX2 / AVX-512 builds.
DEFAULT_VECTOR_BLOCK = 64
# TensorIterator runs a loop of at least GRAIN_SIZE elements on up to torch.get_num_threads()
# threads, each on its own contiguous chunk, and every chunk has its own vector body and tail.
GRAIN_SIZE = 32768


def torch_chunks(n, torch_threads):
    """[(begin, end)] as at::parallel_for(0, n, GRAIN_SIZE) splits a loop over torch_threads threads."""
    if n < GRAIN_SIZE or torch_threads <= 1:
        return [(0, n)]
    nt = min(torch_threads, -(-n // GRAIN_SIZE))
    chunk = -(-n // nt)
    return [(b, min(n, b + chunk)) for b in range(0, n, chunk)]


def segments(n, torch_threads, vector_block):
    """[(begin, body end, end)] of torch's chunks of a loop over n elements: each chunk's vector
    body (whole blocks of vector_block) and its scalar tail."""
    out = []
    for lo, hi in torch_chunks(n, torch_threads):
        n_vec = ((hi - lo) // vector_block) * vector_block if vector_block else 0
        out.append((lo, lo + n_vec, hi))
    return tuple(out)


def check_float(name):
    def check(value, prior):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise TypeError("%s: expected a finite float, got %r" % (name, value))
        return float(value)
    return check


def check_torch_threads(value, prior):
    v = check_int("torch_threads")(value, prior)
    if v < 1:
        raise ValueError("torch_threads: expected >= 1, got %d" % v)
    return v


def check_vector_block(value, prior):
    v = check_int("vector_block")(value, prior)
    if v < 0:
        raise ValueError("vector_block: expected >= 0, got %d" % v)
    return v


_OUT_QPARAMS = (Setting("scale", check_scale_setting("scale")),
                Setting("zero_point", check_zero_point_in("zero_point", lo=-128, hi=255)))


def _fast_pair(a, b):
    """True when a and b are per-tensor QTensors of one dtype and shape (the common case, checked
    without building messages); otherwise _check_qpair says what is wrong."""
    return (type(a) is QTensor and type(b) is QTensor and a.axis is None and b.axis is None
            and a.values.dtype == b.values.dtype and a.values.shape == b.values.shape)


def _check_qpair(a, b, name):
    for n, v in (("a", a), ("b", b)):
        if not isinstance(v, QTensor) or v.axis is not None:
            raise TypeError("%s: input %s: expected a per-tensor fastq.QTensor, got %s" % (name, n, type(v).__name__))
    if a.values.dtype != b.values.dtype:
        raise TypeError("%s: inputs of dtypes %s and %s (torch requires one dtype)" % (name, a.values.dtype, b.values.dtype))
    if a.values.shape != b.values.shape:
        raise ValueError("%s: inputs of shapes %s and %s; broadcasting is not reproduced"
                         % (name, a.values.shape, b.values.shape))


class _QBinary(Layer):
    settings = _OUT_QPARAMS + (Setting("relu", check_bool("relu"), False),)
    takes = QUANT

    def __init__(self, scale, zero_point, relu=False):
        self._set_settings(scale=scale, zero_point=zero_point, relu=relu)
        self._init_cache()

    def _init_cache(self):
        # plain attributes for the call path (the settings are read-only properties)
        self._s, self._z, self._relu = self.scale, self.zero_point, self.relu
        self._z_fits = {np.dtype(np.uint8): 0 <= self._z <= 255, np.dtype(np.int8): -128 <= self._z <= 127}
        self._constants = {}

    def _check_call(self, a, b):
        if not _fast_pair(a, b):
            _check_qpair(a, b, "x")
        if not self._z_fits.get(a.values.dtype, False):
            raise ValueError("x: zero_point %d is outside the %s range" % (self._z, a.values.dtype))

    def _cached(self, key, build):
        c = self._constants.get(key)
        if c is None:
            c = build()
            if len(self._constants) >= 16:
                self._constants.clear()
            self._constants[key] = c
        return c

    def _out(self, values):
        return QTensor._checked(values, self._s, self._z)

    def infer(self, a, b):
        for v in (a, b):
            check_kind(v, ("quant",), type(self).__name__)
        if a.dtype != b.dtype:
            raise TypeError("x: inputs of dtypes %s and %s (torch requires one dtype)" % (a.dtype, b.dtype))
        if a.shape != b.shape:
            raise ValueError("x: inputs of shapes %s and %s; broadcasting is not reproduced" % (a.shape, b.shape))
        return Spec("quant", a.shape, a.dtype, float(self.scale), int(self.zero_point))

    def _row(self, const, arithmetic):
        return dict(qparams="%.6g/%d" % (self.scale, self.zero_point),
                    constants=const + (", relu" if self.relu else ""), arithmetic=arithmetic)


class AddData(NamedTuple):
    """QuantizedAdd's constants for one pair of input quantizations."""
    kernel: str                          # "qnnpack" | "fbgemm"
    qnnpack: Optional[tuple] = None      # (zero point term, a multiplier, b multiplier, shift)
    a_scale: Optional[np.float32] = None
    b_scale: Optional[np.float32] = None
    a_offset: Optional[np.float32] = None    # f32(s_a * -zp_a), the vector body's fma addend
    b_offset: Optional[np.float32] = None
    inv_scale: Optional[np.float32] = None
    segments: Tuple = ()                 # per size: [(begin, body end, end)] of torch's chunks


def _broadcast_spec_shape(sa, sb):
    """numpy's broadcast of two shapes whose dimensions may be None (unknown)."""
    if len(sa) < len(sb):
        sa = (1,) * (len(sb) - len(sa)) + tuple(sa)
    sb = (1,) * (len(sa) - len(sb)) + tuple(sb)
    out = []
    for da, db in zip(sa, sb):
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        elif da is None or db is None:
            out.append(db if da is None else da)
        else:
            raise ValueError("x: inputs of shapes %s and %s do not broadcast" % (tuple(sa), tuple(sb)))
    return tuple(out)


@register
class QuantizedAdd(_QBinary):
    """y = a + b requantized to (scale, zero_point) [relu], as torch.ops.quantized.add / add_relu.
    arithmetic: "fbgemm" (x86 / fbgemm engines: float dequantize-add-quantize, body and tail of
    torch's vector loop, vector_block) or "qnnpack" (QNNPACK's fixed-point q8 add; int8 values
    fall back to the fbgemm kernel as torch does). torch_threads: the torch thread count to
    reproduce for inputs of GRAIN_SIZE elements or more (torch splits those into one chunk per
    thread, each with its own body and tail; from_torch records torch.get_num_threads())."""

    settings = _QBinary.settings + (Setting("arithmetic", check_choice("arithmetic", ARITHMETIC), "fbgemm"),
                                    Setting("vector_block", check_vector_block, DEFAULT_VECTOR_BLOCK),
                                    Setting("torch_threads", check_torch_threads, 1))

    def __init__(self, scale, zero_point, relu=False, arithmetic="fbgemm", vector_block=DEFAULT_VECTOR_BLOCK,
                 torch_threads=1):
        self._set_settings(scale=scale, zero_point=zero_point, relu=relu, arithmetic=arithmetic,
                           vector_block=vector_block, torch_threads=torch_threads)
        self._init_cache()
        self._inv_scale = float(np.float32(1.0) / np.float32(self.scale))
        self._qnnpack_kernel = self.arithmetic == "qnnpack"
        self._block, self._threads = self.vector_block, self.torch_threads

    def __call__(self, a, b):
        return fast_call(self, self._call, a, b)

    def _call(self, a, b):
        self._check_call(a, b)
        return self._bound(a, b)(a, b)

    def _bind(self, a, b):
        """The call for inputs of a's and b's signature (layers/_fast.py)."""
        if not _fast_pair(a, b) or not self._z_fits.get(a.values.dtype, False) or a.values.size == 0:
            return None
        return self._bound(a, b)

    def _bound(self, a, b):
        """The add for inputs of a's and b's signature (both checked), laid out as torch's: its
        output takes a's memory order, and torch's loop walks the elements in that order.
        fbgemm (x86): when b shares a's order, the loop is one run of contiguous memory, split
        into torch's vector body and scalar tail (per GRAIN_SIZE chunk) in that order; when it
        does not (one input channels-last, the other not), b's inner stride is not 1 and torch's
        cpu_kernel_vec takes its scalar loop for every element: the tail formula throughout.
        qnnpack: b is copied to a's layout and the tiles run in memory order."""
        va, vb = a.values, b.values
        perm = memory_order(va)
        if perm is None:                                   # a with gaps: worked on in C order
            perm = tuple(range(va.ndim))
        back = tuple(int(i) for i in np.argsort(perm))
        xa0 = va.transpose(perm)
        same = xa0.flags.c_contiguous and vb.transpose(perm).flags.c_contiguous
        shape, dtype, sta, stb = va.shape, va.dtype, va.strides, vb.strides
        sa_, za, sb_, zb = a.scale, a.zero_point, b.scale, b.zero_point
        z, relu, inv, checked, ys = self._z, self._relu, self._inv_scale, QTensor._checked, self._s
        n = va.size
        asc = np.ascontiguousarray
        direct = same and xa0.flags.c_contiguous       # dense: the *_mem kernels read it in place
        if self._qnnpack_kernel and dtype == np.uint8:
            zpp, am, bm, shift = self._cached((sa_, za, sb_, zb), lambda: self._qnnpack_params(a, b))
            lo = z if relu else 0
            qk = _kernels.qadd_qnnpack_mem if direct else _kernels.qadd_qnnpack

            def kernel(xa, xb):
                return qk(xa, xb, zpp, am, bm, shift, z, lo, 255)
        else:
            sa, sb = self._cached((sa_, sb_), lambda: (float(np.float32(sa_)), float(np.float32(sb_))))
            block, fb = self._block, _kernels.qadd_fbgemm
            chunks = torch_chunks(n, self._threads) if same else ((0, n),)
            if len(chunks) == 1:
                n_vec = (n // block) * block if block and same else 0
                fk = _kernels.qadd_fbgemm_mem if direct else fb

                def kernel(xa, xb):
                    return fk(xa, xb, n_vec, sa, za, sb, zb, inv, z, relu)
            else:
                direct = False

                def kernel(xa, xb):
                    fa, fb_ = xa.reshape(-1), xb.reshape(-1)
                    return np.concatenate([fb(fa[lo:hi], fb_[lo:hi], ((hi - lo) // block) * block if block else 0,
                                              sa, za, sb, zb, inv, z, relu) for lo, hi in chunks]).reshape(xa.shape)

        def run(a, b):
            if type(a) is not QTensor or type(b) is not QTensor or a._axis is not None or b._axis is not None \
                    or a._scale != sa_ or a._zero_point != za or b._scale != sb_ or b._zero_point != zb:
                return MISS
            va, vb = a._values, b._values
            if va.shape != shape or vb.shape != shape or va.dtype is not dtype or vb.dtype is not dtype \
                    or va.strides != sta or vb.strides != stb:
                return MISS
            if direct:                                  # one layout, no gaps: in place, in memory order
                return checked(kernel(va, vb), ys, z)
            xa, xb = va.transpose(perm), vb.transpose(perm)
            if not same:
                xa, xb = asc(xa), asc(xb)
            return checked(kernel(xa, xb).transpose(back), ys, z)
        return run

    def _qnnpack_params(self, a, b):
        if self._relu and self._z == 255:
            raise ValueError("x: QNNPACK add_relu with output zero point 255 has an empty range "
                             "(torch refuses it too)")
        return reference.qnnpack_add_params(a.scale, a.zero_point, b.scale, b.zero_point, self._s)

    def prepare(self, a, b):
        """AddData for inputs quantized as a and b (Specs), from the same builders the call caches."""
        if self._qnnpack_kernel and a.dtype == "uint8":
            return AddData("qnnpack", qnnpack=self._cached((a.scale, a.zero_point, b.scale, b.zero_point),
                                                           lambda: self._qnnpack_params(a, b)))
        sa, sb = np.float32(a.scale), np.float32(b.scale)
        n = a.per_sample
        segs = () if n is None else segments(n, self._threads, self._block)
        return AddData("fbgemm", a_scale=sa, b_scale=sb, a_offset=np.float32(sa * -np.float32(a.zero_point)),
                       b_offset=np.float32(sb * -np.float32(b.zero_point)), inv_scale=np.float32(self._inv_scale),
                       segments=segs)

    def emit_c(self, ctx, node, inputs, output, op_data):
        ctx.same(inputs, "quant")
        a, b = inputs
        if op_data.kernel == "qnnpack":
            return _c.qadd_qnnpack(ctx, self.relu, self.zero_point, a, b, output, op_data.qnnpack)
        if ctx.mixed_layouts:
            # inputs of two layouts: torch's scalar loop for every element (as the runtime's _bound)
            op_data = op_data._replace(segments=tuple((lo, lo, hi) for lo, _, hi in op_data.segments))
        return _c.qadd_fbgemm(ctx, self.relu, self.zero_point, a, b, output, op_data)

    def summary_row(self, specs, op_data):
        arith = ("qnnpack q8 add (fixed point)" if self.arithmetic == "qnnpack" else
                 "fbgemm qadd (float, vector block %d, %d torch threads)" % (self.vector_block, self.torch_threads))
        const = "M_a = s_a/s_y, M_b = s_b/s_y (per input scales)"
        if len(specs) == 2 and all(v is not None and v.scale is not None for v in specs):
            if self.arithmetic == "qnnpack":
                try:
                    zpp, am, bm, shift = reference.qnnpack_add_params(specs[0].scale, specs[0].zero_point,
                                                                      specs[1].scale, specs[1].zero_point, self.scale)
                    const = "mult %d, %d shift %d" % (am, bm, shift)
                except ValueError as e:
                    const = str(e)
            else:
                const = "M_a %.6g, M_b %.6g" % (specs[0].scale / self.scale, specs[1].scale / self.scale)
        return self._row(const, arith)


@register
class QuantizedMul(_QBinary):
    """y = a * b requantized to (scale, zero_point) [relu], as torch.ops.quantized.mul (all engines).
    vector_block, torch_threads: as QuantizedAdd's; torch's vector body and scalar tail agree
    until the product exceeds 2^31 output steps (an output scale far below a_scale * b_scale),
    where they convert to integers differently (reference.qmul)."""

    settings = _QBinary.settings + (Setting("vector_block", check_vector_block, DEFAULT_VECTOR_BLOCK),
                                    Setting("torch_threads", check_torch_threads, 1))

    def __init__(self, scale, zero_point, relu=False, vector_block=DEFAULT_VECTOR_BLOCK, torch_threads=1):
        self._set_settings(scale=scale, zero_point=zero_point, relu=relu, vector_block=vector_block,
                           torch_threads=torch_threads)
        self._init_cache()
        self._block, self._threads = self.vector_block, self.torch_threads

    def __call__(self, a, b):
        a, b = self._broadcast(a, b)
        self._check_call(a, b)
        m = self._cached((a.scale, b.scale), lambda: float(reference.qmul_multiplier(a.scale, b.scale, self._s)))
        va, vb, za, zb = a.values, b.values, a.zero_point, b.zero_point
        n = va.size
        if n < GRAIN_SIZE or self._threads <= 1:
            y = self._mul(va, vb, za, zb, m)
        else:
            fa, fb = va.reshape(-1), vb.reshape(-1)
            y = np.concatenate([self._mul(fa[lo:hi], fb[lo:hi], za, zb, m)
                                for lo, hi in torch_chunks(n, self._threads)]).reshape(va.shape)
        return self._out(y)

    def _broadcast(self, a, b):
        """Inputs of different shapes broadcast as torch's TensorIterator does (squeeze-excitation
        multiplies [N, C, 1, 1] by [N, C, H, W]). Which elements torch leaves to its scalar tail then
        depends on its iteration order, not on the flat output order; both roundings agree while
        |t| < 2^31 output steps, which holds for every product of the two dtypes when
        65025 * M < 2^31. A multiplier past that bound with broadcasting is refused."""
        if not _fast_pair(a, b) and type(a) is QTensor and type(b) is QTensor and a.axis is None \
                and b.axis is None and a.values.shape != b.values.shape:
            try:
                shape = np.broadcast_shapes(a.values.shape, b.values.shape)
            except ValueError:
                raise ValueError("x: inputs of shapes %s and %s do not broadcast"
                                 % (a.values.shape, b.values.shape)) from None
            m = float(reference.qmul_multiplier(a.scale, b.scale, self._s))
            if 65025.0 * m >= 2.0 ** 31:
                raise ValueError("x: broadcasting inputs of shapes %s and %s with multiplier %r (s_a * s_b / s_y): "
                                 "products may pass 2^31 output steps, where torch's rounding depends on its "
                                 "iteration order; fastq reproduces broadcasting only below %g"
                                 % (a.values.shape, b.values.shape, m, 2.0 ** 31 / 65025))
            a = QTensor._checked(np.ascontiguousarray(np.broadcast_to(a.values, shape)), a.scale, a.zero_point)
            b = QTensor._checked(np.ascontiguousarray(np.broadcast_to(b.values, shape)), b.scale, b.zero_point)
        return a, b

    def infer(self, a, b):
        if a.kind == "quant" and b.kind == "quant" and a.shape != b.shape and a.dtype == b.dtype:
            return Spec("quant", _broadcast_spec_shape(a.shape, b.shape), a.dtype, float(self.scale),
                        int(self.zero_point))
        return super().infer(a, b)

    def prepare(self, a, b):
        """The float32 multiplier f32(f32(s_a * s_b) * f32(1 / s_y)) (the call's cached one)."""
        return np.float32(self._cached((a.scale, b.scale),
                                       lambda: float(reference.qmul_multiplier(a.scale, b.scale, self._s))))

    def emit_c(self, ctx, node, inputs, output, op_data):
        a, b = inputs
        if a.kind == b.kind == "quant" and a.dtype == b.dtype and ctx.shape_of(a) != ctx.shape_of(b):
            if 65025.0 * float(op_data) >= 2.0 ** 31:      # as _broadcast refuses it
                raise ctx.error("broadcasting with multiplier %r (s_a * s_b / s_y) past %g"
                                % (float(op_data), 2.0 ** 31 / 65025))
            return _c.qmul_broadcast(ctx, self.relu, self.zero_point, a, b, output, op_data,
                                     segments(output.size, self._threads, self._block))
        ctx.same(inputs, "quant")
        return _c.qmul(ctx, self.relu, self.zero_point, inputs[0], inputs[1], output, op_data,
                       segments(inputs[0].size, self._threads, self._block))

    def summary_row(self, specs, op_data):
        return self._row("M = s_a*s_b/s_y (float32)", "qmul (all engines)")

    def _mul(self, va, vb, za, zb, m):
        n_vec = (va.size // self._block) * self._block if self._block else 0
        return _kernels.qmul(va, vb, n_vec, za, zb, m, self._z, self._relu)


@register
class QuantizedAddScalar(Layer):
    """y = x + value, as torch.ops.quantized.add_scalar: the output's qparams follow from the
    input's (reference.add_scalar_qparams), not from an observer."""
    takes = QUANT

    settings = (Setting("value", check_float("value")),)

    def __init__(self, value):
        self._set_settings(value=value)

    def __call__(self, x):
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: expected a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        v, s, z = reference.add_scalar(x.values, x.scale, x.zero_point, self.value, x.values.dtype)
        return QTensor(v, s, z)

    def prepare(self, x):
        """(c_q, output scale, output zero point, requantize): reference.add_scalar_qparams."""
        return self._op_data(x.qparams, lambda: reference.add_scalar_qparams(x.scale, x.zero_point, self.value, x.dtype))

    def infer(self, x):
        check_kind(x, ("quant",), "QuantizedAddScalar")
        _, s, z, _ = self.prepare(x)
        return Spec("quant", x.shape, x.dtype, float(s), int(z))

    def emit_c(self, ctx, node, inputs, output, op_data):
        ctx.same(inputs, "quant")
        if not op_data[3]:                  # the same integers, the zero point moved by c_q
            return ctx.alias(output, inputs[0])
        return _c.qadd_scalar(ctx, self.value, inputs[0], output, op_data)

    def summary_row(self, specs, op_data):
        return dict(qparams="from input", constants="value %r" % self.value, arithmetic="torch add_scalar qparams")



@register
class QuantizedMulScalar(Layer):
    """y = x * value, as torch.ops.quantized.mul_scalar (reference.mul_scalar_qparams)."""
    takes = QUANT

    settings = (Setting("value", check_float("value")),)

    def __init__(self, value):
        self._set_settings(value=value)

    def __call__(self, x):
        if not isinstance(x, QTensor) or x.axis is not None:
            raise TypeError("x: expected a per-tensor fastq.QTensor, got %s" % type(x).__name__)
        v, s, z = reference.mul_scalar(x.values, x.scale, x.zero_point, self.value, x.values.dtype)
        return QTensor(v, s, z)

    def prepare(self, x):
        """(output scale, output zero point, mode "keep" | "zero" | "reflect"): reference.mul_scalar_qparams."""
        return self._op_data(x.qparams, lambda: reference.mul_scalar_qparams(x.scale, x.zero_point, self.value, x.dtype))

    def infer(self, x):
        check_kind(x, ("quant",), "QuantizedMulScalar")
        s, z, _ = self.prepare(x)
        return Spec("quant", x.shape, x.dtype, float(s), int(z))

    def emit_c(self, ctx, node, inputs, output, op_data):
        ctx.same(inputs, "quant")
        if op_data[2] == "keep":
            return ctx.alias(output, inputs[0])
        return _c.qmul_scalar(ctx, self.value, inputs[0], output, op_data[2])

    def summary_row(self, specs, op_data):
        return dict(qparams="from input", constants="value %r" % self.value, arithmetic="torch mul_scalar qparams")



def _check_dim(dim, ndim, name="dim"):
    if not -ndim <= dim < ndim:
        raise ValueError("x: %s %d is out of range for %d dimensions" % (name, dim, ndim))
    return dim % ndim


@register
class QuantizedCat(Layer):
    """Concatenation along dim, as torch.ops.quantized.cat: every input dequantized, the float
    concatenation quantized once with (scale, zero_point)."""
    takes = QUANT

    settings = _OUT_QPARAMS + (Setting("dim", check_int("dim"), 0),)

    def __init__(self, scale, zero_point, dim=0):
        self._set_settings(scale=scale, zero_point=zero_point, dim=dim)

    def __call__(self, *xs):
        if not xs:
            raise ValueError("x: cat of no inputs")
        for x in xs:
            if not isinstance(x, QTensor) or x.axis is not None:
                raise TypeError("x: expected per-tensor fastq.QTensors, got %s" % type(x).__name__)
            if x.values.dtype != xs[0].values.dtype:
                raise TypeError("x: cat of dtypes %s and %s" % (xs[0].values.dtype, x.values.dtype))
        dim = _check_dim(self.dim, xs[0].values.ndim)
        f = np.concatenate([dequantize(x) for x in xs], axis=dim)
        return quantize(f, self.scale, self.zero_point, xs[0].values.dtype.name)

    def infer(self, *xs):
        for x in xs:
            check_kind(x, ("quant",), "QuantizedCat")
        return Spec("quant", _cat_shape(xs, self.dim), xs[0].dtype, float(self.scale), int(self.zero_point))

    def prepare(self, *xs):
        """(scale, zero point, f32(1 / scale)) of the output."""
        return float(self.scale), int(self.zero_point), np.float32(np.float32(1.0) / np.float32(self.scale))

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _c.cat(ctx, self.dim, inputs, output, op_data)

    def summary_row(self, specs, op_data):
        return dict(qparams="%.6g/%d" % (self.scale, self.zero_point), constants="dim %d" % self.dim,
                    arithmetic="dequantize, cat, quantize")


def _cat_shape(xs, dim):
    if not xs:
        raise ValueError("x: cat of no inputs")
    nd = len(xs[0].shape)
    d = _check_dim(dim, nd)
    if any(len(x.shape) != nd for x in xs):
        raise ValueError("x: cat of values of %s dimensions" % "/".join(str(len(x.shape)) for x in xs))
    sizes = [x.shape[d] for x in xs]
    return tuple(xs[0].shape[:d]) + (None if None in sizes else sum(sizes),) + tuple(xs[0].shape[d + 1:])


def _float_row(layer):
    return layer.settings_row("float32 IEEE")


def _broadcast(a, b):
    """numpy's broadcast of two shapes with unknown (None) entries."""
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x == 1:
            out.append(y)
        elif y == 1 or x == y or y is None:
            out.append(x)
        elif x is None:
            out.append(y)
        else:
            raise ValueError("x: shapes %s and %s do not broadcast" % (a, b))
    return tuple(reversed(out))



def _float(x, name="x"):
    if isinstance(x, QTensor):
        raise TypeError("%s: expected floats, got a quantized value (torch has no float op on quantized "
                        "tensors here either)" % name)
    return np.asarray(x, dtype=np.float32)


@register
class Add(Layer):
    """Float a + b (torch.add / `+` / FloatFunctional.add before convert), one float32 rounding;
    relu: max(., 0) after (FloatFunctional.add_relu). numpy broadcasting = torch broadcasting."""
    takes = FLOAT

    settings = (Setting("relu", check_bool("relu"), False),)

    def __init__(self, relu=False):
        self._set_settings(relu=relu)

    def __call__(self, a, b):
        y = np.add(_float(a, "a"), _float(b, "b"), dtype=np.float32)
        return np.maximum(y, np.float32(0)) if self.relu else y

    def infer(self, a, b):
        for v in (a, b):
            check_kind(v, ("float",), "Add")
        return Spec("float", _broadcast(a.shape, b.shape))

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _c.float_binary(ctx, "+", self.relu, inputs[0], inputs[1], output)

    def summary_row(self, specs, op_data):
        return _float_row(self)



@register
class Mul(Layer):
    """Float a * b (torch.mul / `*` / FloatFunctional.mul before convert)."""
    takes = FLOAT

    def __call__(self, a, b):
        return np.multiply(_float(a, "a"), _float(b, "b"), dtype=np.float32)

    def infer(self, a, b):
        for v in (a, b):
            check_kind(v, ("float",), "Mul")
        return Spec("float", _broadcast(a.shape, b.shape))

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _c.float_binary(ctx, "*", False, inputs[0], inputs[1], output)

    def summary_row(self, specs, op_data):
        return _float_row(self)



class _FloatScalarOp(Layer):
    """Float x (op) value, value rounded to float32 as torch's CPU op with a Python scalar does."""
    takes = FLOAT
    settings = (Setting("value", check_float("value")),)
    _ufunc = None

    def __init__(self, value):
        self._set_settings(value=value)

    _c_op = None

    def __call__(self, x):
        return type(self)._ufunc(_float(x), np.float32(self.value), dtype=np.float32)

    def infer(self, x):
        return Spec("float", check_kind(x, ("float",), type(self).__name__).shape)

    def prepare(self, x):
        return np.float32(self.value)

    def emit_c(self, ctx, node, inputs, output, op_data):
        ctx.same(inputs, "float")
        return _c.float_scalar(ctx, self._c_op, self.value, inputs[0], output)

    def summary_row(self, specs, op_data):
        return _float_row(self)


@register
class AddScalar(_FloatScalarOp):
    """Float x + value."""
    _ufunc, _c_op = np.add, "+"


@register
class MulScalar(_FloatScalarOp):
    """Float x * value."""
    _ufunc, _c_op = np.multiply, "*"



@register
class Cat(Layer):
    """Concatenation along dim (torch.cat / FloatFunctional.cat before convert). Floats: as they
    are. QTensors (torch.cat of quantized tensors): torch's quantized cat with the first input's
    scale and zero point (every input dequantized, the float concatenation quantized once)."""
    settings = (Setting("dim", check_int("dim"), 0),)
    takes = ANY

    def __init__(self, dim=0):
        self._set_settings(dim=dim)

    def __call__(self, *xs):
        if not xs:
            raise ValueError("x: cat of no inputs")
        if isinstance(xs[0], QTensor):
            x0 = xs[0]
            if x0.axis is not None:
                raise TypeError("x: expected per-tensor QTensors")
            return QuantizedCat(x0.scale, x0.zero_point, self.dim)(*xs)
        xs = [_float(x) for x in xs]
        return np.concatenate(xs, axis=_check_dim(self.dim, xs[0].ndim))

    def infer(self, *xs):
        if not xs:
            raise ValueError("x: cat of no inputs")
        x0 = xs[0]
        for x in xs:
            check_kind(x, (x0.kind,), "Cat")
        if x0.kind == "quant":               # torch's quantized cat with the first input's qparams
            return Spec("quant", _cat_shape(xs, self.dim), x0.dtype, x0.scale, x0.zero_point)
        check_kind(x0, ("float",), "Cat")
        return Spec("float", _cat_shape(xs, self.dim))

    def prepare(self, *xs):
        if xs and xs[0].kind == "quant":
            return float(xs[0].scale), int(xs[0].zero_point), np.float32(np.float32(1.0) / np.float32(xs[0].scale))
        return None

    def emit_c(self, ctx, node, inputs, output, op_data):
        return _c.cat(ctx, self.dim, inputs, output, op_data)

    def summary_row(self, specs, op_data):
        return _float_row(self)
