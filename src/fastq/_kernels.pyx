# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Cython boundary: shape/dtype checks that keep C safe, GIL release, calls into csrc/.

No arithmetic lives here: formulas are in csrc/ (fast) and fastq/reference.py (readable).
Callers (linear.py, qtensor.py) validate user input and raise the user-facing errors; the
checks here only guarantee that C never reads or writes out of bounds.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int8_t, uint8_t, int32_t, int64_t, uint32_t
from libc.string cimport memset
from libc.stdlib cimport malloc, free

cnp.import_array()

cdef extern from "csrc/fastq.h" nogil:
    int FQ_NR
    ctypedef struct fq_packed_weights:
        int32_t n, k, k_groups, n_panels, last_nr, n_padded
        int8_t *data
        int32_t *col_sums
        int32_t *w_zero_point
        int32_t w_zero_point_all_zero
        int32_t max_abs_w_dev
    int fq_pack_weights(const int8_t *w, Py_ssize_t ldw, int32_t n, int32_t k,
                        const int32_t *w_zero_point, int per_column, fq_packed_weights *out)
    void fq_packed_free(fq_packed_weights *p)
    void fq_col_offsets(const fq_packed_weights *w, int32_t a_zero_point,
                        const int32_t *int_bias, int32_t *col_offset)
    ctypedef enum fq_epilogue_kind:
        FQ_EPI_INT32, FQ_EPI_FBGEMM, FQ_EPI_QNNPACK, FQ_EPI_TFLITE, FQ_EPI_FLOAT, FQ_EPI_ONEDNN
    ctypedef struct fq_epilogue:
        fq_epilogue_kind kind
        const int32_t *col_offset
        const int32_t *w_zero_point
        const float *bias
        float bias_mult
        const float *scale
        const int32_t *multiplier
        const int32_t *shift
        int32_t rounding
        int32_t out_zero_point, out_min, out_max, out_signed
        int32_t float_fma, float_relu
        float src_scale, out_scale_inv
        int32_t variant, scalar_only
    int fq_epilogue_prepare(fq_epilogue *ep, int32_t n_padded)
    const char *fq_backend_name(int backend)
    const char *fq_family_name(int family)
    int fq_backend_parent(int backend)
    uint32_t fq_backend_features(int backend)
    int fq_backend_compiled(int backend)
    int fq_backend_supported(int backend)
    int fq_get_backend()
    int fq_set_backend(int backend)
    int fq_family_owner(int backend, int family)
    int fq_family_supported(int backend, int family)
    long long fq_family_runs(int family, int backend)
    int fq_scalar_set_mr(int32_t mr)
    int fq_gemm_set_fused(int enabled)
    int FQ_BACKEND_COUNT, FQ_FAMILY_COUNT, FQ_MR_MAX
    int FQ_FAMILY_GEMM, FQ_FAMILY_EPILOGUE, FQ_FAMILY_PACK, FQ_FAMILY_CONVERT, FQ_FAMILY_ELEMENTWISE
    int FQ_FAMILY_FIXEDPOINT
    int fq_gemm(const fq_packed_weights *w, const uint8_t *a, Py_ssize_t lda, int32_t m, int a_signed,
                const fq_epilogue *ep, void *out, Py_ssize_t ldo, int num_threads)
    int fq_get_num_threads()
    void fq_set_num_threads(int n)
    void fq_multiply_by_quantized_multiplier_array(const int32_t *x, int64_t n,
                                                   const int32_t *multiplier, const int32_t *shift,
                                                   int64_t n_channels, int rounding,
                                                   int32_t *out)
    int fq_convert_supported(int isa)
    void fq_quantize_u8_isa(int isa, const float *x, int64_t n, float inv_scale, float zero_point,
                            int32_t qmin, int32_t qmax, uint8_t *q)
    void fq_dequantize_u8(int isa, const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x)
    void fq_dequantize_s8(int isa, const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x)
    int fq_minmax_f32(int isa, const float *x, int64_t n, float *min_out, float *max_out)
    void fq_fmaf_portable(const float *x, const float *y, const float *z, int64_t n, float *out)
    void fq_qadd_fbgemm(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                        float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                        float inv_scale, int32_t zero_point, int relu, int is_signed)
    void fq_qadd_qnnpack(int isa, const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                         int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                         uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max)
    void fq_qmul(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
                 int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed)
    void fq_qclamp(int isa, const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed)

cdef extern from "csrc/runtime/cpu.h" nogil:
    uint32_t fq_cpu_has(uint32_t mask)
    uint32_t fq_cpu_features()
    int fq_cpu_amx_permitted()
    const char *fq_cpu_feature_name(int bit_index)
    int FQ_FEAT_COUNT

EPI_INT32 = FQ_EPI_INT32
EPI_FBGEMM = FQ_EPI_FBGEMM
EPI_QNNPACK = FQ_EPI_QNNPACK
EPI_TFLITE = FQ_EPI_TFLITE
EPI_FLOAT = FQ_EPI_FLOAT
EPI_ONEDNN = FQ_EPI_ONEDNN
NR = FQ_NR


cdef class PackedWeights:
    """Weights [N, K] int8 packed once into 64-column panels (the last one 16, 32, 48 or 64
    wide), with column sums."""
    cdef fq_packed_weights p
    cdef bint packed

    def __cinit__(self, cnp.ndarray w not None, cnp.ndarray w_zero_point not None):
        self.packed = False
        if w.ndim != 2 or w.dtype != np.int8:
            raise TypeError("weight: expected a 2-D int8 array [N, K]")
        w = np.ascontiguousarray(w)
        zp = np.ascontiguousarray(w_zero_point, dtype=np.int32).reshape(-1)
        cdef int32_t n = <int32_t>w.shape[0]
        cdef int32_t k = <int32_t>w.shape[1]
        if w.shape[0] > 2**30 or w.shape[1] > 2**30:
            raise ValueError("weight: too large")
        if zp.shape[0] != 1 and zp.shape[0] != n:
            raise ValueError("w_zero_point: expected 1 or N = %d values, got %d" % (n, zp.shape[0]))
        cdef int per_column = zp.shape[0] == n and n != 1
        cdef const int8_t[:, ::1] wv = w
        cdef const int32_t[::1] zv = zp
        cdef const int8_t *wp = &wv[0, 0] if n > 0 and k > 0 else NULL
        cdef int8_t dummy = 0
        if wp == NULL:
            wp = &dummy
        cdef int rc
        with nogil:
            rc = fq_pack_weights(wp, k, n, k, &zv[0], per_column, &self.p)
        if rc != 0:
            raise MemoryError("could not allocate packed weights")
        self.packed = True

    def __dealloc__(self):
        if self.packed:
            fq_packed_free(&self.p)

    @property
    def n(self):
        return self.p.n

    @property
    def k(self):
        return self.p.k

    @property
    def n_padded(self):
        return self.p.n_padded

    @property
    def col_sums(self):
        return np.asarray(<int32_t[:self.p.n]>self.p.col_sums).copy() if self.p.n else np.zeros(0, np.int32)

    @property
    def w_zero_point(self):
        return np.asarray(<int32_t[:self.p.n]>self.p.w_zero_point).copy() if self.p.n else np.zeros(0, np.int32)

    @property
    def w_zero_point_all_zero(self):
        return bool(self.p.w_zero_point_all_zero)

    @property
    def max_abs_w_dev(self):
        return self.p.max_abs_w_dev

    def packed_bytes(self):
        """The packed panels as a uint8 copy (for tests and `fastq explain`)."""
        cdef Py_ssize_t size = <Py_ssize_t>self.p.n_padded * self.p.k_groups * 4
        if size == 0:
            return np.zeros(0, np.int8)
        return np.asarray(<int8_t[:size]>self.p.data).copy()

    def col_offsets(self, int32_t a_zero_point, int_bias=None):
        """K*za*zw[n] - za*colsum[n] (+ int_bias[n]) per padded column, wrapping int32."""
        cdef cnp.ndarray[int32_t, ndim=1] out = np.zeros(max(self.p.n_padded, 1), np.int32)
        cdef const int32_t[::1] bv
        cdef const int32_t *bp = NULL
        if int_bias is not None:
            b = np.ascontiguousarray(int_bias, dtype=np.int32)
            if b.ndim != 1 or b.shape[0] != self.p.n:
                raise ValueError("bias: expected %d int32 values" % self.p.n)
            bv = b
            if self.p.n:
                bp = &bv[0]
        fq_col_offsets(&self.p, a_zero_point, bp, &out[0])
        return out


cdef inline const void *_ptr_or_null(arr, dtype, Py_ssize_t need, str name) except? NULL:
    """Pointer to a C-contiguous array of dtype with at least `need` entries, or NULL for None."""
    if arr is None:
        return NULL
    cdef cnp.ndarray a = <cnp.ndarray?>arr
    if a.dtype != dtype or not a.flags.c_contiguous or a.size < need:
        raise ValueError("%s: expected a contiguous %s array of at least %d values" % (name, dtype, need))
    return cnp.PyArray_DATA(a)


cdef class Epilogue:
    """What happens to each tile of accumulators: the C fq_epilogue plus the arrays it points to.

    Arrays are per padded column (PackedWeights.n_padded entries); build once per layer and
    input quantization, reuse across calls."""
    cdef fq_epilogue ep
    cdef object keep      # the arrays the struct points into
    cdef readonly int kind
    cdef readonly Py_ssize_t n_padded

    def __cinit__(self, PackedWeights pw not None, int kind, col_offset, *, bias=None,
                  float bias_mult=1.0, scale=None, multiplier=None, shift=None, int rounding=0,
                  bint with_row_sums=True, int out_zero_point=0, int out_min=0,
                  int out_max=255, int out_xor=0, bint float_fma=False, bint float_relu=False,
                  float src_scale=0.0, float out_scale_inv=0.0):
        if kind not in (FQ_EPI_INT32, FQ_EPI_FBGEMM, FQ_EPI_QNNPACK, FQ_EPI_TFLITE, FQ_EPI_FLOAT,
                        FQ_EPI_ONEDNN):
            raise ValueError("requant: unknown epilogue kind %d" % kind)
        cdef Py_ssize_t npad = pw.p.n_padded
        self.n_padded = npad
        self.kind = kind
        memset(&self.ep, 0, sizeof(fq_epilogue))
        self.ep.kind = <fq_epilogue_kind>kind
        wzp = None
        if with_row_sums and not pw.p.w_zero_point_all_zero:
            wzp = np.zeros(max(npad, 1), np.int32)
            wzp[:pw.p.n] = pw.w_zero_point
        self.keep = (col_offset, bias, scale, multiplier, shift, wzp)
        self.ep.col_offset = <const int32_t *>_ptr_or_null(col_offset, np.int32, npad, "col_offset")
        if self.ep.col_offset == NULL:
            raise ValueError("col_offset: required")
        self.ep.w_zero_point = <const int32_t *>_ptr_or_null(wzp, np.int32, npad, "w_zero_point")
        self.ep.bias = <const float *>_ptr_or_null(bias, np.float32, npad, "bias")
        self.ep.bias_mult = bias_mult
        self.ep.scale = <const float *>_ptr_or_null(scale, np.float32, npad, "scale")
        self.ep.multiplier = <const int32_t *>_ptr_or_null(multiplier, np.int32, npad, "multiplier")
        self.ep.shift = <const int32_t *>_ptr_or_null(shift, np.int32, npad, "shift")
        if kind in (FQ_EPI_FBGEMM, FQ_EPI_QNNPACK, FQ_EPI_FLOAT, FQ_EPI_ONEDNN) and self.ep.scale == NULL:
            raise ValueError("scale: required for this requantization mode")
        if kind == FQ_EPI_TFLITE and (self.ep.multiplier == NULL or self.ep.shift == NULL):
            raise ValueError("multiplier, shift: required for requant='tflite'")
        if rounding not in (0, 1, 2):
            raise ValueError("rounding: unknown fixed-point rounding %d" % rounding)
        if out_xor not in (0, 0x80):
            raise ValueError("out_xor: expected 0 (uint8 output) or 0x80 (int8 output), got %d" % out_xor)
        if self.ep.bias == NULL and kind in (FQ_EPI_FBGEMM, FQ_EPI_FLOAT, FQ_EPI_ONEDNN):
            # no bias: a zero one (fmaf(0, r, f) = f; f32(f * s) + 0 = f32(f * s)), so the
            # kernels have one code path
            bias = np.zeros(max(npad, 1), np.float32)
            self.keep = self.keep + (bias,)
            self.ep.bias = <const float *>cnp.PyArray_DATA(bias)
        self.ep.rounding = rounding
        self.ep.out_zero_point = out_zero_point
        self.ep.out_min = out_min
        self.ep.out_max = out_max
        self.ep.out_signed = out_xor == 0x80
        self.ep.float_fma = float_fma
        self.ep.float_relu = float_relu
        self.ep.src_scale = src_scale            # oneDNN only (fq_epilogue)
        self.ep.out_scale_inv = out_scale_inv
        if fq_epilogue_prepare(&self.ep, <int32_t>npad) != 0:
            raise ValueError("out_zero_point, out_min, out_max: expected a zero point in 0..255 and "
                             "-2**31 + 255 <= out_min <= out_max, got %d, %d, %d"
                             % (out_zero_point, out_min, out_max))


def gemm(PackedWeights pw not None, Epilogue ep not None, cnp.ndarray a not None,
         int num_threads=0, cnp.ndarray out=None):
    """out[m, n] = epilogue(sum_k a[m,k] * w[n,k] + corrections); a: uint8 or int8 [M, K],
    C-contiguous (int8 a is read as uint8 a ^ 0x80: build ep for the zero point + 128)."""
    if a.ndim != 2 or a.dtype not in (np.uint8, np.int8) or not a.flags.c_contiguous:
        raise TypeError("a: expected a C-contiguous 2-D uint8 or int8 array")
    cdef int a_signed = a.dtype == np.int8
    if a.shape[1] != pw.p.k:
        raise ValueError("a: expected K = %d columns, got %d" % (pw.p.k, a.shape[1]))
    if ep.n_padded != pw.p.n_padded:
        raise ValueError("ep: built for another weight matrix")
    cdef Py_ssize_t m = a.shape[0]
    if m > 2**31 - 1:
        raise ValueError("a: too many rows")
    if ep.kind == FQ_EPI_INT32:
        dtype = np.int32
    elif ep.kind == FQ_EPI_FLOAT:
        dtype = np.float32
    else:
        dtype = np.uint8
    if out is None:
        out = np.empty((m, pw.p.n), dtype)
    elif (out.ndim != 2 or out.dtype != dtype or not out.flags.c_contiguous or not out.flags.writeable
          or out.shape[0] != m or out.shape[1] != pw.p.n):
        raise ValueError("out: expected a writeable C-contiguous %s array of shape (%d, %d)" % (np.dtype(dtype), m, pw.p.n))
    if m == 0 or pw.p.n == 0:
        return out
    cdef const uint8_t *ap = <const uint8_t *>cnp.PyArray_DATA(a)
    cdef void *op = cnp.PyArray_DATA(out)
    cdef Py_ssize_t lda = a.shape[1]
    cdef Py_ssize_t ldo = pw.p.n
    cdef int32_t mm = <int32_t>m
    cdef int rc
    with nogil:
        rc = fq_gemm(&pw.p, ap, lda, mm, a_signed, &ep.ep, op, ldo, num_threads)
    if rc != 0:
        raise MemoryError("gemm: could not allocate the row sums of %d rows" % m)
    return out


# Below this many elements the GIL stays held: releasing it costs more than the work.
cdef enum:
    NOGIL_MIN = 32768


def quantize(cnp.ndarray x not None, float inv_scale, float zero_point, int qmin, int qmax,
             bint is_signed, int isa=-1):
    """q = clamp(rne(min(fmaf(x, inv_scale, zero_point), 2147483520)), qmin, qmax).

    isa: -1 for the current backend, or a backend id to force that ISA (tests)."""
    if cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32:
        raise TypeError("x: expected float32")
    if is_signed and not (-128 <= qmin <= qmax <= 127) or not is_signed and not (0 <= qmin <= qmax <= 255):
        raise ValueError("qmin, qmax: outside the output type's range")
    if not cnp.PyArray_IS_C_CONTIGUOUS(x):
        x = np.ascontiguousarray(x)
    cdef cnp.ndarray q = cnp.PyArray_EMPTY(x.ndim, x.shape, cnp.NPY_INT8 if is_signed else cnp.NPY_UINT8, 0)
    cdef int64_t n = x.size
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef uint8_t *qp = <uint8_t *>cnp.PyArray_DATA(q)
    if n >= NOGIL_MIN:
        with nogil:
            fq_quantize_u8_isa(isa, xp, n, inv_scale, zero_point, qmin, qmax, qp)
    else:
        fq_quantize_u8_isa(isa, xp, n, inv_scale, zero_point, qmin, qmax, qp)
    return q


def multiply_by_quantized_multiplier(cnp.ndarray x not None, cnp.ndarray multiplier not None,
                                     cnp.ndarray shift not None, int rounding):
    """out = MultiplyByQuantizedMultiplier(x, multiplier[c], shift[c]) with c the index along
    the last axis of x (multiplier, shift: 1 or x.shape[-1] int32 values, shifts in [-31, 30]);
    rounding: 0 double, 1 single, 2 double_up (fq_rounding)."""
    if rounding not in (0, 1, 2):
        raise ValueError("rounding: unknown fixed-point rounding %d" % rounding)
    if x.dtype != np.int32 or multiplier.dtype != np.int32 or shift.dtype != np.int32:
        raise TypeError("x, multiplier, shift: expected int32 arrays")
    if multiplier.ndim != 1 or shift.ndim != 1 or multiplier.shape[0] != shift.shape[0]:
        raise ValueError("multiplier, shift: expected two 1-D arrays of the same length")
    if multiplier.shape[0] == 0 and (x.ndim == 0 or x.shape[x.ndim - 1] != 0):
        raise ValueError("multiplier, shift: empty, but x has a last axis of length %s"
                         % (x.shape[x.ndim - 1] if x.ndim else "none (0-d x)"))
    x = np.ascontiguousarray(x)
    multiplier = np.ascontiguousarray(multiplier)
    shift = np.ascontiguousarray(shift)
    cdef int64_t nch = multiplier.shape[0]
    if nch != 1 and (x.ndim == 0 or x.shape[x.ndim - 1] != nch):
        raise ValueError("multiplier: %d values do not match the last axis of x" % nch)
    if shift.shape[0] and (shift.min() < -31 or shift.max() > 30):
        raise ValueError("shift: values must lie in [-31, 30]")
    cdef cnp.ndarray out = np.empty_like(x)
    cdef int64_t n = x.size
    if n == 0:
        return out
    cdef const int32_t *xp = <const int32_t *>cnp.PyArray_DATA(x)
    cdef const int32_t *mp = <const int32_t *>cnp.PyArray_DATA(multiplier)
    cdef const int32_t *sp = <const int32_t *>cnp.PyArray_DATA(shift)
    cdef int32_t *op = <int32_t *>cnp.PyArray_DATA(out)
    with nogil:
        fq_multiply_by_quantized_multiplier_array(xp, n, mp, sp, nch, rounding, op)
    return out


def dequantize(cnp.ndarray q not None, int zero_point, float scale, int isa=-1):
    """x = f32((float)(q - zero_point) * scale), q uint8 or int8 (torch per-tensor dequantize)."""
    cdef bint is_signed
    cdef int typenum = cnp.PyArray_TYPE(q)
    if typenum == cnp.NPY_UINT8:
        is_signed = False
    elif typenum == cnp.NPY_INT8:
        is_signed = True
    else:
        raise TypeError("q: expected uint8 or int8")
    if not cnp.PyArray_IS_C_CONTIGUOUS(q):
        q = np.ascontiguousarray(q)
    cdef cnp.ndarray x = cnp.PyArray_EMPTY(q.ndim, q.shape, cnp.NPY_FLOAT32, 0)
    cdef int64_t n = q.size
    cdef const void *qp = cnp.PyArray_DATA(q)
    cdef float *xp = <float *>cnp.PyArray_DATA(x)
    if n >= NOGIL_MIN:
        with nogil:
            if is_signed:
                fq_dequantize_s8(isa, <const int8_t *>qp, n, zero_point, scale, xp)
            else:
                fq_dequantize_u8(isa, <const uint8_t *>qp, n, zero_point, scale, xp)
    elif is_signed:
        fq_dequantize_s8(isa, <const int8_t *>qp, n, zero_point, scale, xp)
    else:
        fq_dequantize_u8(isa, <const uint8_t *>qp, n, zero_point, scale, xp)
    return x


def minmax(cnp.ndarray x not None, int isa=-1):
    """(min, max, all_finite) of a float32 array in one pass; min, max are meaningful only when
    all_finite is True. An empty x gives (0.0, 0.0, True)."""
    if cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32:
        raise TypeError("x: expected float32")
    if not cnp.PyArray_IS_C_CONTIGUOUS(x):
        x = np.ascontiguousarray(x)
    cdef int64_t n = x.size
    cdef const float *xp = <const float *>cnp.PyArray_DATA(x)
    cdef float mn = 0, mx = 0
    cdef int finite
    if n >= NOGIL_MIN:
        with nogil:
            finite = fq_minmax_f32(isa, xp, n, &mn, &mx)
    else:
        finite = fq_minmax_f32(isa, xp, n, &mn, &mx)
    return np.float32(mn), np.float32(mx), bool(finite)


def fmaf_portable(x, y, z):
    """fmaf(x, y, z) elementwise as the scalar quantize kernel computes it (float32 arrays)."""
    cdef cnp.ndarray xa = np.ascontiguousarray(x, dtype=np.float32)
    cdef cnp.ndarray ya = np.ascontiguousarray(y, dtype=np.float32)
    cdef cnp.ndarray za = np.ascontiguousarray(z, dtype=np.float32)
    if xa.shape[0] != ya.shape[0] or xa.shape[0] != za.shape[0] or xa.ndim != 1 or ya.ndim != 1 or za.ndim != 1:
        raise ValueError("x, y, z: expected 1-D arrays of one length")
    cdef cnp.ndarray out = np.empty(xa.shape[0], np.float32)
    fq_fmaf_portable(<const float *>cnp.PyArray_DATA(xa), <const float *>cnp.PyArray_DATA(ya),
                     <const float *>cnp.PyArray_DATA(za), xa.shape[0], <float *>cnp.PyArray_DATA(out))
    return out


# ---- the backend table (csrc/runtime/backends.c) -------------------------------------------
FAMILIES = tuple(fq_family_name(f).decode() for f in range(FQ_FAMILY_COUNT))
MR_MAX = FQ_MR_MAX


def _feature_names(uint32_t mask):
    return [fq_cpu_feature_name(i).decode() for i in range(FQ_FEAT_COUNT) if mask >> i & 1]


def backend_table():
    """Every backend of the table, in its order (each preferred over those before it): name,
    parent (None for the root), the CPU features it needs (its own; the parent's apply too),
    compiled (this build has its kernels), available (compiled and this CPU / OS runs it), and
    per family the backend whose kernels it uses (itself or an ancestor; None when not compiled)."""
    rows = []
    for b in range(FQ_BACKEND_COUNT):
        p = fq_backend_parent(b)
        rows.append({
            "name": fq_backend_name(b).decode(),
            "parent": fq_backend_name(p).decode() if p >= 0 else None,
            "features": _feature_names(fq_backend_features(b)),
            "compiled": bool(fq_backend_compiled(b)),
            "available": bool(fq_backend_supported(b)),
            "kernels": {fq_family_name(f).decode(): (fq_backend_name(fq_family_owner(b, f)).decode()
                                                     if fq_family_owner(b, f) >= 0 else None)
                        for f in range(FQ_FAMILY_COUNT)},
        })
    return rows


def family_backends(str family):
    """Backend ids whose own kernels of `family` run on this CPU (they may need less than the
    whole backend: the AVX-512 conversions need no VNNI); for forcing an ISA in tests."""
    if family not in FAMILIES:
        raise ValueError("family: unknown kernel family %r; known: %s" % (family, ", ".join(FAMILIES)))
    cdef int f = FAMILIES.index(family)
    return [b for b in range(FQ_BACKEND_COUNT) if fq_family_supported(b, f)]


def conversion_isas():
    """Backend ids whose conversion kernels (quantize, dequantize, minmax) run on this CPU."""
    return family_backends("convert")


def cpu_features():
    """{feature: present} for every feature bit of the CPU detector (CPUID and the OS state in
    XCR0; amx_permitted asks Linux for the tile permission, once per process)."""
    cdef uint32_t have = fq_cpu_features()
    out = {fq_cpu_feature_name(i).decode(): bool(have >> i & 1) for i in range(FQ_FEAT_COUNT)}
    out["amx_permitted"] = bool(fq_cpu_amx_permitted())
    return out


def backend_names():
    return [fq_backend_name(b).decode() for b in range(FQ_BACKEND_COUNT)]

def backend_supported(int b):
    return bool(fq_backend_supported(b))

def get_backend():
    return fq_get_backend()

def set_backend(int b):
    return fq_set_backend(b) == 0

def kernel_runs():
    """{family: {backend name: calls that ran that backend's own kernels of the family}} since
    the library loaded (a call on a backend that inherits a family counts under the ancestor)."""
    return {fq_family_name(f).decode(): {fq_backend_name(b).decode(): fq_family_runs(f, b)
                                         for b in range(FQ_BACKEND_COUNT)}
            for f in range(FQ_FAMILY_COUNT)}


def scalar_set_mr(int mr):
    """Tests only: rows per tile of the scalar backend (its kernels take any count), so that the
    GEMM driver runs tiles of up to MR_MAX rows. Returns the previous value."""
    if not 1 <= mr <= FQ_MR_MAX:
        raise ValueError("mr: expected 1..%d rows per tile, got %d" % (FQ_MR_MAX, mr))
    return fq_scalar_set_mr(mr)

def gemm_set_fused(bint enabled):
    """Tests and benchmarks only: False makes every GEMM run the microkernel then the epilogue
    (no fused kernel), to compare both paths in one process. Returns the previous setting."""
    return bool(fq_gemm_set_fused(enabled))

def get_num_threads():
    return fq_get_num_threads()

def set_num_threads(int n):
    fq_set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# The hot path of QuantizedLinear.__call__: validate x, reuse the cached epilogue, call C.
# Everything a call needs is kept in typed fields so a small layer costs about a microsecond.
from cpython.object cimport PyObject_SetAttr

cdef extern from "numpy/arrayobject.h":
    cnp.ndarray PyArray_EMPTY(int nd, cnp.npy_intp *dims, int typenum, int fortran)

cdef class LinearCore:
    """Per-layer state of the call path; built by fastq.layers.linear.QuantizedLinear.

    Every mode takes this path: uint8 or int8 activations (int8 x with zero point z is read by
    the kernels as uint8 x ^ 0x80 with zero point z + 128), uint8 or int8 outputs (the epilogue
    stores q ^ 0x80), a pinned input quantization (input_scale / input_zero_point) checked here.
    Per-call state (the epilogue, whether the zero-point bound rules out int32 overflow) lives
    in the call: the GIL is released while another thread's call runs."""
    cdef PackedWeights pw
    cdef object qtensor_type, qtensor_new
    cdef object out_scale, out_zero_point
    cdef object epilogue_for      # (x_scale, x_zero_point in uint8 terms) -> Epilogue (the layer's cache)
    cdef object check_overflow    # (uint8 a_2d, x_zero_point in uint8 terms, name) -> raises ValueError
    cdef bint out_signed
    cdef object input_scale, input_zero_point   # pinned input quantization, or None
    cdef bint have_last
    cdef double last_scale
    cdef long last_zp
    cdef Epilogue last_ep

    def __cinit__(self, PackedWeights pw not None, qtensor_type, out_scale, out_zero_point,
                  epilogue_for, check_overflow, *, bint out_signed=False, input_scale=None,
                  input_zero_point=None):
        self.pw = pw
        self.qtensor_type = qtensor_type
        self.qtensor_new = object.__new__      # QTensor.__new__ would mark the fields unset: we set all four
        self.out_scale = out_scale
        self.out_zero_point = out_zero_point
        self.epilogue_for = epilogue_for
        self.check_overflow = check_overflow
        self.out_signed = out_signed
        self.input_scale = input_scale
        self.input_zero_point = input_zero_point
        self.have_last = False

    def forget_epilogue(self):
        self.have_last = False
        self.last_ep = None

    cdef Epilogue _epilogue(self, object x_scale, long zp_u8):
        # The four fields are set together with the GIL held (no Python code runs between
        # them), so another thread sees either the old or the new entry.
        cdef double s = x_scale
        if self.have_last and s == self.last_scale and zp_u8 == self.last_zp:
            return self.last_ep
        ep = self.epilogue_for(x_scale, zp_u8)
        if not isinstance(ep, Epilogue) or (<Epilogue>ep).n_padded != self.pw.p.n_padded:
            raise ValueError("ep: built for another weight matrix")
        if (<Epilogue>ep).kind not in (FQ_EPI_FBGEMM, FQ_EPI_QNNPACK, FQ_EPI_TFLITE):
            raise ValueError("ep: expected an epilogue with byte output")
        if (<Epilogue>ep).ep.out_signed != self.out_signed:
            raise ValueError("ep: built for another output dtype")
        self.last_scale = s
        self.last_zp = zp_u8
        self.last_ep = <Epilogue>ep
        self.have_last = True
        return <Epilogue>ep

    def __call__(self, x):
        return self.call(x)

    cdef object call(self, x):
        if type(x) is not self.qtensor_type and not isinstance(x, self.qtensor_type):
            raise TypeError("x: expected a fastq.QTensor, got %s" % type(x).__name__)
        if x.axis is not None:
            raise ValueError("x: expected per-tensor quantized activations")
        v = x.values
        cdef cnp.ndarray a = <cnp.ndarray?>v
        cdef int typenum = cnp.PyArray_TYPE(a)
        cdef int a_signed
        if typenum == cnp.NPY_UINT8:
            a_signed = 0
        elif typenum == cnp.NPY_INT8:
            a_signed = 1
        else:
            raise TypeError("x: expected uint8 or int8 values, got %s" % (<object>a).dtype)
        cdef int nd = cnp.PyArray_NDIM(a)
        cdef int32_t k = self.pw.p.k
        cdef int32_t n = self.pw.p.n
        if nd < 1 or nd > 32 or cnp.PyArray_DIMS(a)[nd - 1] != k:
            raise ValueError("x: expected shape [..., %d], got %s" % (k, (<object>a).shape))
        cdef cnp.npy_intp dims[32]
        cdef Py_ssize_t m = 1
        cdef int i
        for i in range(nd - 1):
            dims[i] = cnp.PyArray_DIMS(a)[i]
            m *= dims[i]
        dims[nd - 1] = n
        if m > 2147483647:
            raise ValueError("x: too many rows")
        x_scale = x.scale
        x_zero_point = x.zero_point
        if self.input_scale is not None and (
                x_scale != self.input_scale
                or (self.input_zero_point is not None and x_zero_point != self.input_zero_point)):
            raise ValueError("x: quantized with scale %r, zero point %d; this layer was built for "
                             "input_scale=%r, input_zero_point=%r"
                             % (x_scale, x_zero_point, self.input_scale, self.input_zero_point))
        cdef long zp_u8 = <long>x_zero_point + (128 if a_signed else 0)
        cdef Epilogue ep = self._epilogue(x_scale, zp_u8)
        # the zero-point bound of this call: |x - zx| <= max(zx, 255 - zx) in uint8 terms
        cdef long dev_a = zp_u8 if zp_u8 > 255 - zp_u8 else 255 - zp_u8
        cdef bint bound_ok = <double>k * dev_a * self.pw.p.max_abs_w_dev <= 2147483647.0
        if not cnp.PyArray_IS_C_CONTIGUOUS(a):
            a = np.ascontiguousarray(a)
        if not bound_ok:
            a2 = a.reshape(m, k)
            self.check_overflow(a2.view(np.uint8) ^ np.uint8(0x80) if a_signed else a2, zp_u8, "x")
        cdef cnp.ndarray out = PyArray_EMPTY(nd, dims, cnp.NPY_INT8 if self.out_signed else cnp.NPY_UINT8, 0)
        cdef const uint8_t *ap = <const uint8_t *>cnp.PyArray_DATA(a)
        cdef void *op = cnp.PyArray_DATA(out)
        cdef int32_t mm = <int32_t>m
        cdef int rc = 0
        if m > 0 and n > 0:
            if <double>m * n * k < 65536.0:
                rc = fq_gemm(&self.pw.p, ap, k, mm, a_signed, &ep.ep, op, n, 0)
            else:
                with nogil:
                    rc = fq_gemm(&self.pw.p, ap, k, mm, a_signed, &ep.ep, op, n, 0)
        if rc != 0:
            raise MemoryError("x: could not allocate the row sums of %d rows" % m)
        q = self.qtensor_new(self.qtensor_type)
        # the slots behind QTensor's set-once properties (no Python code on this path)
        PyObject_SetAttr(q, "_values", out)
        PyObject_SetAttr(q, "_scale", self.out_scale)
        PyObject_SetAttr(q, "_zero_point", self.out_zero_point)
        PyObject_SetAttr(q, "_axis", None)
        return q


def linear_call(self, x):
    """QuantizedLinear.__call__ (bound as a method): y = layer(x) through its LinearCore.
    A layer built without QuantizedLinear.__init__ (a subclass, a copy) takes the Python path."""
    core = getattr(self, "_core", None)
    if core is None:
        return self._call_python(x)
    return (<LinearCore?>core).call(x)


def qgemm_int32(cnp.ndarray a not None, int a_zero_point, cnp.ndarray w not None,
                cnp.ndarray w_zero_point not None):
    """int32 [M, N] = sum_k (a - za)(w - zw[n]) in one C pass: pack, column offsets, kernel.

    a: C-contiguous uint8 [M, K]; w: C-contiguous int8 [N, K]; w_zero_point: contiguous int32,
    1 or N values (callers validate the values). Returns None, computing nothing, when the
    zero-point bound cannot rule out int32 overflow: the caller then checks the data."""
    if (a.ndim != 2 or cnp.PyArray_TYPE(a) != cnp.NPY_UINT8 or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or w.ndim != 2 or cnp.PyArray_TYPE(w) != cnp.NPY_INT8 or not cnp.PyArray_IS_C_CONTIGUOUS(w)):
        raise TypeError("a, w: expected C-contiguous uint8 / int8 2-D arrays")
    if (cnp.PyArray_TYPE(w_zero_point) != cnp.NPY_INT32 or w_zero_point.ndim != 1
            or not cnp.PyArray_IS_C_CONTIGUOUS(w_zero_point)):
        raise TypeError("w_zero_point: expected a contiguous 1-D int32 array")
    cdef Py_ssize_t m = a.shape[0], k = a.shape[1], n = w.shape[0]
    if w.shape[1] != k:
        raise ValueError("w: K mismatch")
    if m > 2**31 - 1 or n > 2**30 or k > 2**30:
        raise ValueError("a, w: too large")
    cdef Py_ssize_t nzp = w_zero_point.shape[0]
    if nzp != 1 and nzp != n:
        raise ValueError("w_zero_point: expected 1 or N = %d values, got %d" % (n, nzp))
    cdef int per_column = nzp == n and n != 1
    cdef const int32_t *zp = <const int32_t *>cnp.PyArray_DATA(w_zero_point)
    cdef int8_t dummy = 0
    cdef const int8_t *wp = <const int8_t *>cnp.PyArray_DATA(w) if n > 0 and k > 0 else &dummy
    cdef fq_packed_weights p
    cdef int rc
    cdef int32_t nn = <int32_t>n, kk = <int32_t>k, mm = <int32_t>m
    with nogil:
        rc = fq_pack_weights(wp, kk, nn, kk, zp, per_column, &p)
    if rc != 0:
        raise MemoryError("could not allocate packed weights")
    cdef long dev_a = a_zero_point if a_zero_point > 255 - a_zero_point else 255 - a_zero_point
    if <double>k * dev_a * p.max_abs_w_dev > 2147483647.0:
        fq_packed_free(&p)
        return None
    cdef cnp.npy_intp dims[2]
    dims[0] = m
    dims[1] = n
    cdef cnp.ndarray out = PyArray_EMPTY(2, dims, cnp.NPY_INT32, 0)
    cdef int32_t *col = <int32_t *>malloc(<size_t>max(p.n_padded, 1) * sizeof(int32_t))
    if col == NULL:
        fq_packed_free(&p)
        raise MemoryError("could not allocate column offsets")
    cdef fq_epilogue ep
    memset(&ep, 0, sizeof(fq_epilogue))
    ep.kind = FQ_EPI_INT32
    ep.col_offset = col
    ep.w_zero_point = NULL if p.w_zero_point_all_zero else p.w_zero_point
    if fq_epilogue_prepare(&ep, p.n_padded) != 0:  # pragma: no cover - int32 needs nothing more
        free(col)
        fq_packed_free(&p)
        raise ValueError("ep: invalid int32 epilogue")
    cdef const uint8_t *ap = <const uint8_t *>cnp.PyArray_DATA(a)
    cdef void *op = cnp.PyArray_DATA(out)
    rc = 0
    with nogil:
        fq_col_offsets(&p, a_zero_point, NULL, col)
        if m > 0 and n > 0:
            rc = fq_gemm(&p, ap, kk, mm, 0, &ep, op, nn, 0)
    free(col)
    fq_packed_free(&p)
    if rc != 0:
        raise MemoryError("a: could not allocate the row sums of %d rows" % m)
    return out


# ---- elementwise add / mul (csrc/elementwise/) ----------------------------------------------
# Contiguous uint8 / int8 arrays of equal size in, a new array of their shape out; the layers
# (layers/arith.py) check shapes and qparams first. isa: -1 the current backend, or a backend
# id to force its kernels (tests; scalar when they cannot run here).

cdef int _signed_pair(cnp.ndarray a, cnp.ndarray b) except -1:
    cdef int ta = cnp.PyArray_TYPE(a)
    if ta != cnp.PyArray_TYPE(b) or ta not in (cnp.NPY_UINT8, cnp.NPY_INT8):
        raise TypeError("a, b: expected two uint8 or two int8 arrays, got %s and %s" % (a.dtype, b.dtype))
    if a.size != b.size:
        raise ValueError("a, b: sizes differ (%d, %d)" % (a.size, b.size))
    return 1 if ta == cnp.NPY_INT8 else 0


cdef inline cnp.ndarray _contiguous(cnp.ndarray x):
    return x if cnp.PyArray_IS_C_CONTIGUOUS(x) else np.ascontiguousarray(x)


def qadd_fbgemm(cnp.ndarray a not None, cnp.ndarray b not None, int64_t n_vec, float a_scale,
                int a_zero_point, float b_scale, int b_zero_point, float inv_scale, int zero_point,
                bint relu, int isa=-1):
    cdef int is_signed = _signed_pair(a, b)
    a = _contiguous(a); b = _contiguous(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.PyArray_TYPE(a), 0)
    with nogil:
        fq_qadd_fbgemm(isa, cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(y),
                       cnp.PyArray_SIZE(a), n_vec, a_scale, a_zero_point, b_scale, b_zero_point,
                       inv_scale, zero_point, relu, is_signed)
    return y


def qadd_qnnpack(cnp.ndarray a not None, cnp.ndarray b not None, int32_t zero_point_product,
                 uint32_t a_multiplier, uint32_t b_multiplier, uint32_t shift, int zero_point,
                 int y_min, int y_max, int isa=-1):
    if _signed_pair(a, b):
        raise TypeError("a, b: QNNPACK add takes uint8 values, got %s" % a.dtype)
    if not (0 < shift < 36):
        raise ValueError("shift: QNNPACK add shifts by 1..35 (scale ratios in [2**-14, 2**8)), got %d" % shift)
    a = _contiguous(a); b = _contiguous(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.NPY_UINT8, 0)
    with nogil:
        fq_qadd_qnnpack(isa, <const uint8_t *>cnp.PyArray_DATA(a), <const uint8_t *>cnp.PyArray_DATA(b),
                        <uint8_t *>cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a), zero_point_product,
                        a_multiplier, b_multiplier, shift, zero_point, y_min, y_max)
    return y


cdef extern from "numpy/arrayobject.h":
    object PyArray_NewLikeArray(cnp.ndarray prototype, cnp.NPY_ORDER order, void *descr, int subok)


cdef bint _dense(cnp.ndarray a):
    """True when a's elements fill exactly size * itemsize bytes from its data pointer, in some
    order of its dimensions (C order, channels last, ...): no gaps, overlaps or negative strides."""
    cdef int nd = cnp.PyArray_NDIM(a), k, j, m = 0
    cdef cnp.npy_intp st[32]
    cdef cnp.npy_intp dm[32]
    cdef cnp.npy_intp ts, td, expect = cnp.PyArray_ITEMSIZE(a)
    if nd > 32:
        return False
    for k in range(nd):
        if cnp.PyArray_DIMS(a)[k] == 0:
            return True
        if cnp.PyArray_DIMS(a)[k] > 1:                # a dimension of size 1 may have any stride
            st[m] = cnp.PyArray_STRIDES(a)[k]
            dm[m] = cnp.PyArray_DIMS(a)[k]
            m += 1
    for k in range(1, m):                             # ascending strides (insertion sort)
        ts, td = st[k], dm[k]
        j = k - 1
        while j >= 0 and st[j] > ts:
            st[j + 1], dm[j + 1] = st[j], dm[j]
            j -= 1
        st[j + 1], dm[j + 1] = ts, td
    for k in range(m):
        if st[k] != expect:
            return False
        expect *= dm[k]
    return True


cdef int _mem_pair(cnp.ndarray a, cnp.ndarray b) except -1:
    """Checks a and b for the *_mem kernels: one dtype (uint8 / int8), one shape, one set of
    strides, dense; returns 1 for int8."""
    cdef int is_signed = _signed_pair(a, b)
    cdef int nd = cnp.PyArray_NDIM(a), k
    if cnp.PyArray_NDIM(b) != nd:
        raise ValueError("a, b: shapes differ (%s, %s)" % ((<object>a).shape, (<object>b).shape))
    for k in range(nd):
        if cnp.PyArray_DIMS(a)[k] != cnp.PyArray_DIMS(b)[k] or cnp.PyArray_STRIDES(a)[k] != cnp.PyArray_STRIDES(b)[k]:
            raise ValueError("a, b: expected one shape and one set of strides, got %s %s and %s %s"
                             % ((<object>a).shape, (<object>a).strides, (<object>b).shape, (<object>b).strides))
    if not _dense(a):
        raise ValueError("a, b: expected arrays without gaps (C order, channels last, ...), got strides %s"
                         % ((<object>a).strides,))
    return is_signed


def qadd_fbgemm_mem(cnp.ndarray a not None, cnp.ndarray b not None, int64_t n_vec, float a_scale,
                    int a_zero_point, float b_scale, int b_zero_point, float inv_scale, int zero_point,
                    bint relu, int isa=-1):
    """qadd_fbgemm in the inputs' memory order: a and b dense with one shape and one set of
    strides (two channels-last values, say), read in place; y in their layout; the first n_vec
    elements of memory take the vector body."""
    cdef int is_signed = _mem_pair(a, b)
    cdef cnp.ndarray y = PyArray_NewLikeArray(a, cnp.NPY_KEEPORDER, NULL, 0)
    with nogil:
        fq_qadd_fbgemm(isa, cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(y),
                       cnp.PyArray_SIZE(a), n_vec, a_scale, a_zero_point, b_scale, b_zero_point,
                       inv_scale, zero_point, relu, is_signed)
    return y


def qadd_qnnpack_mem(cnp.ndarray a not None, cnp.ndarray b not None, int32_t zero_point_product,
                     uint32_t a_multiplier, uint32_t b_multiplier, uint32_t shift, int zero_point,
                     int y_min, int y_max, int isa=-1):
    """qadd_qnnpack in the inputs' memory order (as qadd_fbgemm_mem; the tiles run through memory)."""
    if _mem_pair(a, b):
        raise TypeError("a, b: QNNPACK add takes uint8 values, got %s" % a.dtype)
    if not (0 < shift < 36):
        raise ValueError("shift: QNNPACK add shifts by 1..35 (scale ratios in [2**-14, 2**8)), got %d" % shift)
    cdef cnp.ndarray y = PyArray_NewLikeArray(a, cnp.NPY_KEEPORDER, NULL, 0)
    with nogil:
        fq_qadd_qnnpack(isa, <const uint8_t *>cnp.PyArray_DATA(a), <const uint8_t *>cnp.PyArray_DATA(b),
                        <uint8_t *>cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a), zero_point_product,
                        a_multiplier, b_multiplier, shift, zero_point, y_min, y_max)
    return y


def qclamp(cnp.ndarray x not None, int lo, int hi, int isa=-1):
    """y = min(max(x, lo), hi) on uint8 / int8 values, a new array of x's shape: in x's layout
    where x has no gaps (C order, channels last: read and written as one run of memory), else
    in C order."""
    cdef int t = cnp.PyArray_TYPE(x)
    if t != cnp.NPY_UINT8 and t != cnp.NPY_INT8:
        raise TypeError("x: expected uint8 or int8 values, got %s" % x.dtype)
    cdef int is_signed = t == cnp.NPY_INT8
    cdef int qmin = -128 if is_signed else 0
    cdef int qmax = 127 if is_signed else 255
    if not (qmin <= lo <= hi <= qmax):
        raise ValueError("lo, hi: expected %d <= lo <= hi <= %d, got %d, %d" % (qmin, qmax, lo, hi))
    cdef cnp.ndarray y
    if cnp.PyArray_IS_C_CONTIGUOUS(x) or not _dense(x):
        x = _contiguous(x)
        y = cnp.PyArray_EMPTY(x.ndim, x.shape, t, 0)
    else:
        y = PyArray_NewLikeArray(x, cnp.NPY_KEEPORDER, NULL, 0)
    cdef int64_t n = cnp.PyArray_SIZE(x)
    if n < 65536:
        fq_qclamp(isa, cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), n, lo, hi, is_signed)
    else:
        with nogil:
            fq_qclamp(isa, cnp.PyArray_DATA(x), cnp.PyArray_DATA(y), n, lo, hi, is_signed)
    return y


def qmul(cnp.ndarray a not None, cnp.ndarray b not None, int64_t n_vec, int a_zero_point, int b_zero_point,
         float multiplier, int zero_point, bint relu, int isa=-1):
    """n_vec: how many leading elements follow torch's vectorized body (the rest its scalar tail)."""
    cdef int is_signed = _signed_pair(a, b)
    a = _contiguous(a); b = _contiguous(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.PyArray_TYPE(a), 0)
    with nogil:
        fq_qmul(isa, cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a),
                n_vec, a_zero_point, b_zero_point, multiplier, zero_point, relu, is_signed)
    return y


# ---------------------------------------------------------------------------------------------
# Convolution and pooling kernels (csrc/conv, csrc/pool): their own file, one include.
include "_conv_kernels.pxi"
# A convolution bound to one input signature (the compiled model run): its own file.
include "_conv_bound.pxi"

# Per-channel table kernels (csrc/norm): their own file, one include.
include "_norm_kernels.pxi"
