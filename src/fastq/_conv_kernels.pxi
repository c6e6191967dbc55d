# Convolution and pooling kernels (csrc/conv/, csrc/pool/): included at the end of _kernels.pyx.
# The contract the conv ops call is written in /work/wt/CONV_KERNELS_API.md (docs/notes at merge).

cdef extern from "csrc/conv/conv.h" nogil:
    ctypedef struct fq_conv_geometry:
        int32_t batch, in_c, in_h, in_w, out_c, groups
        int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w
        int32_t out_h, out_w
    int fq_conv_geometry_check(fq_conv_geometry *g)
    ctypedef struct fq_dw_weights:
        int32_t taps, channels, pairs, c_pad
    size_t fq_conv_padded_bytes(const fq_conv_geometry *g, int32_t replicate)
    void fq_conv_pad_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                          int32_t replicate, uint8_t *xp)
    void fq_conv_pad_from_nhwc(const fq_conv_geometry *g, const uint8_t *x, uint8_t x_xor, uint8_t pad_value,
                               int32_t replicate, uint8_t *xp)
    void fq_nhwc_to_nchw(const void *inp, int32_t batch, int64_t hw, int32_t channels, size_t elem, void *out)
    enum:
        FQ_CONV_PATH_GEMM
        FQ_CONV_PATH_DW
        FQ_CONV_PATH_DW_SATURATE
    ctypedef struct fq_conv_call:
        const fq_conv_geometry *g
        const uint8_t *x
        int x_nhwc
        uint8_t x_xor
        uint8_t pad_value
        int path
        const fq_packed_weights *pw
        const fq_epilogue *eps
        const int32_t *const *tap_sums
        const fq_dw_weights *dw
        const fq_dw_weights *dw32
        const fq_epilogue *ep32
        void *y
        int y_nhwc
        int num_threads
    int fq_conv2d_run(const fq_conv_call *c)
    int fq_conv_set_clip(int mode)
    long long fq_conv_clip_runs()
    int fq_dw_pack(const int8_t *w, int32_t channels, int32_t k_h, int32_t k_w, const int32_t *zw, int zw_per_channel,
                   fq_dw_weights *out)
    void fq_dw_free(fq_dw_weights *w)
    void fq_dw_col_offsets(const fq_dw_weights *w, int32_t x_zero_point, const int32_t *int_bias,
                           int saturate, int32_t *col_offset)
    int fq_depthwise(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w, int saturate,
                     const fq_epilogue *ep, void *out, int isa, int num_threads)
    int fq_depthwise_flat(const fq_conv_geometry *g, const uint8_t *xp, const fq_dw_weights *w32, int saturate,
                          const fq_epilogue *ep, void *out, int isa, int num_threads)


CONV_PATHS = ("auto", "gemm", "depthwise", "depthwise_saturate")
EPILOGUE_KINDS = {"int32": FQ_EPI_INT32, "fbgemm": FQ_EPI_FBGEMM, "qnnpack": FQ_EPI_QNNPACK,
                  "tflite": FQ_EPI_TFLITE, "onednn": FQ_EPI_ONEDNN}


cdef int _epilogue_kind(kind) except -1:
    if isinstance(kind, str):
        if kind not in EPILOGUE_KINDS:
            raise ValueError("kind: expected one of %s, got %r" % (sorted(EPILOGUE_KINDS), kind))
        return EPILOGUE_KINDS[kind]
    if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool) and int(kind) in EPILOGUE_KINDS.values():
        return int(kind)
    raise ValueError("kind: expected EPI_INT32, EPI_FBGEMM, EPI_QNNPACK, EPI_TFLITE, EPI_ONEDNN or "
                     "one of %s, got %r" % (sorted(EPILOGUE_KINDS), kind))


cdef int _positive_scale(v, str name) except -1:
    """Checks a tensor scale: a finite positive number (torch keeps it as a double)."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError("%s: expected a positive float for kind 'onednn', got %r" % (name, v))
    d = float(v)
    if not (d > 0.0 and d < float("inf")):
        raise ValueError("%s: expected a finite positive scale, got %r" % (name, v))
    return 0


cdef tuple _pair(v, int spatial, str name, int lo):
    """(h, w) from an int or a tuple of `spatial` ints (1-D: h = the neutral value)."""
    if isinstance(v, (int, np.integer)):
        t = (int(v),) * spatial
    else:
        t = tuple(int(e) for e in v)
    if len(t) != spatial or any(e < lo for e in t):
        raise ValueError("%s: expected an int or %d ints >= %d, got %r" % (name, spatial, lo, v))
    return ((1 if lo > 0 else 0,) + t) if spatial == 1 else t


cdef cnp.ndarray _per_channel(arr, dtype, Py_ssize_t n, Py_ssize_t npad, Py_ssize_t start, str name):
    """arr[start:start+n] (or one value broadcast) as a zero-padded contiguous array of npad."""
    a = np.asarray(arr)
    if a.ndim == 0 or a.size == 1:
        a = np.full(n, a.reshape(-1)[0])
    elif a.ndim != 1:
        raise ValueError("%s: expected 1 or out_channels values, got shape %s" % (name, a.shape))
    else:
        a = a[start:start + n]
        if a.shape[0] != n:
            raise ValueError("%s: expected 1 or out_channels values" % name)
    if dtype is np.float32 and a.dtype.kind not in "fiu" or dtype is np.int32 and a.dtype.kind not in "iu":
        raise TypeError("%s: expected %s values, got %s" % (name, np.dtype(dtype), a.dtype))
    out = np.zeros(max(npad, 1), dtype)
    out[:n] = a
    return out


cdef class ConvWeights:
    """A quantized convolution's weights, packed once: per group for the GEMM (k ordered
    (kh, kw, c)) and, for a depthwise layer (in_channels == groups), for the direct kernels.

    w: int8 [out_c, in_c / groups, k_h, k_w] (2-D) or [out_c, in_c / groups, k_w] (1-D), torch's
    layout; w_zero_point: one int or out_c ints (per output channel)."""
    cdef readonly int spatial, out_c, in_c, groups, k_h, k_w
    cdef readonly bint depthwise
    cdef readonly object packed            # tuple of PackedWeights, one per group
    cdef readonly object w_zero_point      # int32 [out_c]
    cdef fq_packed_weights *pw_array       # struct copies of packed[g].p (they own the data)
    cdef readonly object tap_sums          # per group int32 [taps, n_padded]: sum over c of w[n, (t, c)];
                                           # None when the group's channels are not whole k-groups
    cdef const int32_t **tap_sums_array    # their data, as fq_conv_call takes them
    cdef fq_dw_weights dw
    cdef bint have_dw
    cdef fq_dw_weights dw32                # out_c in {1, 2, 4, 8, 16}: 32 virtual channels w[l % out_c]
    cdef bint have_dw32
    cdef int32_t max_dev                   # max |w - zw| over every group (the overflow bound)

    def __cinit__(self, w, w_zero_point, int groups=1):
        self.pw_array = NULL
        self.tap_sums_array = NULL
        self.have_dw = False
        self.have_dw32 = False
        if not isinstance(w, np.ndarray) or w.dtype != np.int8 or w.ndim not in (3, 4):
            raise TypeError("w: expected an int8 array [out_c, in_c/groups, k_h, k_w] or "
                            "[out_c, in_c/groups, k_w], got %r" % (getattr(w, "dtype", type(w)),))
        if w.ndim == 3:
            w = w[:, :, None, :]
        self.spatial = 2 if w.ndim == 4 and w.shape[2] != 1 or False else 0
        if groups < 1:
            raise ValueError("groups: expected a positive int, got %d" % groups)
        oc, cg, kh, kw = w.shape
        if oc == 0 or cg == 0 or kh == 0 or kw == 0:
            raise ValueError("w: expected no empty dimension, got shape %s" % (w.shape,))
        if oc % groups:
            raise ValueError("groups: %d does not divide out_channels %d" % (groups, oc))
        if oc > 2**30 or cg * kh * kw > 2**30:
            raise ValueError("w: too large")
        zp = np.asarray(w_zero_point)
        if zp.dtype.kind not in "iu":
            raise TypeError("w_zero_point: expected integers, got %s" % zp.dtype)
        zp = zp.reshape(-1).astype(np.int64)
        if zp.shape[0] not in (1, oc):
            raise ValueError("w_zero_point: expected 1 or out_channels = %d values, got %d" % (oc, zp.shape[0]))
        if zp.min() < -128 or zp.max() > 127:
            raise ValueError("w_zero_point: expected values in -128..127")
        zp = np.broadcast_to(zp, (oc,)).astype(np.int32)
        self.w_zero_point = zp
        self.out_c, self.groups, self.k_h, self.k_w = oc, groups, kh, kw
        self.in_c = cg * groups
        og = oc // groups
        packs = []
        for g in range(groups):
            wg = np.ascontiguousarray(w[g * og:(g + 1) * og].transpose(0, 2, 3, 1)).reshape(og, kh * kw * cg)
            packs.append(PackedWeights(wg, np.ascontiguousarray(zp[g * og:(g + 1) * og])))
        self.packed = tuple(packs)
        # what a window that leaves taps in the padding out corrects col_offset by (conv.h); only
        # channels in whole k-groups take that path
        sums = []
        for g in range(groups if cg % 4 == 0 else 0):
            npad = (<PackedWeights>packs[g]).n_padded
            ts = np.zeros((kh * kw, npad), np.int32)
            ts[:, :og] = w[g * og:(g + 1) * og].reshape(og, cg, kh * kw).sum(axis=1, dtype=np.int64).T
            sums.append(ts)
        self.tap_sums = tuple(sums) if sums else None
        if sums:
            self.tap_sums_array = <const int32_t **>malloc(groups * sizeof(int32_t *))
            if self.tap_sums_array == NULL:
                raise MemoryError("could not allocate the packed weights")
            for g in range(groups):
                self.tap_sums_array[g] = <const int32_t *>cnp.PyArray_DATA(<cnp.ndarray>sums[g])
        self.pw_array = <fq_packed_weights *>malloc(groups * sizeof(fq_packed_weights))
        if self.pw_array == NULL:
            raise MemoryError("could not allocate the packed weights")
        self.max_dev = 0
        for g in range(groups):
            self.pw_array[g] = (<PackedWeights>packs[g]).p
            self.max_dev = max(self.max_dev, self.pw_array[g].max_abs_w_dev)
        self.depthwise = cg == 1 and groups == self.in_c
        cdef cnp.ndarray wflat
        cdef int rc
        if self.depthwise:
            wflat = np.ascontiguousarray(w.reshape(oc, kh * kw))
            rc = fq_dw_pack(<const int8_t *>cnp.PyArray_DATA(wflat), oc, kh, kw,
                            <const int32_t *>cnp.PyArray_DATA(zp), 1, &self.dw)
            if rc != 0:
                raise MemoryError("could not allocate the depthwise weights")
            self.have_dw = True
            if oc <= 16 and 32 % oc == 0:
                wflat = np.ascontiguousarray(np.tile(w.reshape(oc, kh * kw), (32 // oc, 1)))
                zp32 = np.ascontiguousarray(np.tile(zp, 32 // oc))
                rc = fq_dw_pack(<const int8_t *>cnp.PyArray_DATA(wflat), 32, kh, kw,
                                <const int32_t *>cnp.PyArray_DATA(zp32), 1, &self.dw32)
                if rc != 0:
                    raise MemoryError("could not allocate the depthwise weights")
                self.have_dw32 = True

    def __dealloc__(self):
        free(self.pw_array)
        free(self.tap_sums_array)
        if self.have_dw:
            fq_dw_free(&self.dw)
        if self.have_dw32:
            fq_dw_free(&self.dw32)

    @property
    def max_abs_w_dev(self):
        return self.max_dev

    def epilogue(self, int x_zero_point, x_dtype=np.uint8, *, kind=FQ_EPI_INT32, int_bias=None,
                 bias=None, float bias_mult=1.0, scale=None, multiplier=None, shift=None,
                 int rounding=0, int out_zero_point=0, out_min=None, out_max=None,
                 out_dtype=np.uint8, str path="auto", x_scale=None, out_scale=None):
        """The requantization of this layer for one input quantization -> ConvEpilogue.
        kind: an EPI_* value or its name ("int32", "fbgemm", "qnnpack", "tflite", "onednn").
        "onednn" (torch x86 convolutions packed for oneDNN) takes x_scale and out_scale (the
        tensors' double scales), scale = the weight scale(s) and bias = the float bias (or None)."""
        return ConvEpilogue(self, x_zero_point, x_dtype, _epilogue_kind(kind), int_bias, bias, bias_mult,
                            scale, multiplier, shift, rounding, out_zero_point, out_min, out_max,
                            out_dtype, path, x_scale, out_scale)


cdef class ConvEpilogue:
    """What conv2d does with the accumulators of one layer and input quantization: the
    fq_epilogue of each group (GEMM) or of the depthwise kernel. Build once, reuse."""
    cdef readonly ConvWeights cw
    cdef readonly int kind
    cdef readonly str path                  # "gemm", "depthwise" or "depthwise_saturate"
    cdef readonly object x_dtype, out_dtype
    cdef readonly int x_zero_point          # in x's own terms
    cdef int zp_u8
    cdef fq_epilogue *eps
    cdef int n_eps
    cdef object keep
    cdef fq_epilogue ep32                   # the flat few-channel depthwise path (virtual channels)
    cdef bint have_ep32
    # what every call needs, computed once: numpy type numbers, the xor of int8 input, the
    # path as FQ_CONV_PATH_*, and whether an input could overflow int32 at all (only then
    # does a call look at its values)
    cdef int x_typenum, out_typenum, path_id
    cdef uint8_t x_xor
    cdef bint may_overflow

    def __cinit__(self, ConvWeights cw not None, int x_zero_point, x_dtype, int kind, int_bias, bias,
                  float bias_mult, scale, multiplier, shift, int rounding, int out_zero_point,
                  out_min, out_max, out_dtype, str path, x_scale=None, out_scale=None):
        self.eps = NULL
        self.have_ep32 = False
        self.cw = cw
        x_dtype = np.dtype(x_dtype)
        out_dtype = np.dtype(out_dtype)
        if x_dtype not in (np.uint8, np.int8):
            raise TypeError("x_dtype: expected uint8 or int8, got %s" % x_dtype)
        lo = -128 if x_dtype == np.int8 else 0
        if not lo <= x_zero_point <= lo + 255:
            raise ValueError("x_zero_point: expected %d..%d for %s input, got %d" % (lo, lo + 255, x_dtype, x_zero_point))
        kind = _epilogue_kind(kind)
        cdef float src_scale = 0.0, out_scale_inv = 0.0
        if kind == FQ_EPI_ONEDNN:
            _positive_scale(x_scale, "x_scale")
            _positive_scale(out_scale, "out_scale")
            # CONV F2 (+ F2b): torch hands oneDNN reciprocals (double -> float) and oneDNN
            # inverts them in float: the source scale is f32(1 / f32(1 / sx)); the output scale
            # d = f32(1 / f32(1 / sy)) is applied as a multiplication by f32(1 / d)
            src_scale = np.float32(1.0) / np.float32(1.0 / float(x_scale))
            out_scale_inv = np.float32(1.0) / (np.float32(1.0) / np.float32(1.0 / float(out_scale)))
            if bias is None:
                bias = np.float32(0.0)     # y + 0 = y: no bias is the zero bias
        elif x_scale is not None or out_scale is not None:
            raise ValueError("x_scale, out_scale: only for kind 'onednn'")
        if path not in CONV_PATHS:
            raise ValueError("path: expected one of %s, got %r" % (CONV_PATHS, path))
        if path == "auto":
            path = "depthwise" if cw.depthwise else "gemm"
        if path.startswith("depthwise") and not cw.depthwise:
            raise ValueError("path: %r needs a depthwise layer (in_channels == groups), got in_c %d, groups %d"
                             % (path, cw.in_c, cw.groups))
        if kind != FQ_EPI_INT32 and out_dtype not in (np.uint8, np.int8):
            raise TypeError("out_dtype: expected uint8 or int8, got %s" % out_dtype)
        self.path = path
        self.kind = kind
        self.x_dtype = x_dtype
        self.out_dtype = np.dtype(np.int32) if kind == FQ_EPI_INT32 else out_dtype
        self.x_zero_point = x_zero_point
        self.zp_u8 = x_zero_point - lo
        self.x_typenum = x_dtype.num
        self.out_typenum = self.out_dtype.num
        self.x_xor = 0x80 if lo else 0
        self.path_id = (FQ_CONV_PATH_GEMM if path == "gemm" else
                        FQ_CONV_PATH_DW_SATURATE if path == "depthwise_saturate" else FQ_CONV_PATH_DW)
        # |acc| <= taps * cg * max|x - zx| * max|w - zw| (the padding adds 0)
        self.may_overflow = (<double>cw.k_h * cw.k_w * (cw.in_c // cw.groups) * max(self.zp_u8, 255 - self.zp_u8)
                             * cw.max_dev > 2147483647.0)
        olo = -128 if self.out_dtype == np.int8 else 0
        if kind != FQ_EPI_INT32:
            if not olo <= out_zero_point <= olo + 255:
                raise ValueError("out_zero_point: expected %d..%d, got %d" % (olo, olo + 255, out_zero_point))
            out_min = olo if out_min is None else int(out_min)
            out_max = olo + 255 if out_max is None else int(out_max)
            if not olo <= out_min <= out_max <= olo + 255:
                raise ValueError("out_min, out_max: expected %d <= out_min <= out_max <= %d, got %r, %r"
                                 % (olo, olo + 255, out_min, out_max))
        else:
            out_min, out_max = 0, 255
        if kind in (FQ_EPI_FBGEMM, FQ_EPI_QNNPACK, FQ_EPI_ONEDNN) and scale is None:
            raise ValueError("scale: required for this requantization kind")
        if kind == FQ_EPI_TFLITE and (multiplier is None or shift is None):
            raise ValueError("multiplier, shift: required for kind EPI_TFLITE")
        if rounding not in (0, 1, 2):
            raise ValueError("rounding: expected 0 (double), 1 (single) or 2 (double_up), got %d" % rounding)
        if int_bias is not None:
            ib = np.asarray(int_bias)
            if ib.dtype.kind not in "iu" or ib.shape != (cw.out_c,):
                raise ValueError("int_bias: expected %d integers, got %s %s" % (cw.out_c, ib.dtype, ib.shape))
            if ib.min() < -2**31 or ib.max() > 2**31 - 1:
                raise ValueError("int_bias: values outside int32")
            int_bias = ib.astype(np.int32)
        if shift is not None:
            sh = np.asarray(shift)
            if sh.size and (sh.min() < -31 or sh.max() > 30):
                raise ValueError("shift: values must lie in [-31, 30]")
        cdef int n_eps = cw.groups if path == "gemm" else 1
        self.eps = <fq_epilogue *>malloc(n_eps * sizeof(fq_epilogue))
        if self.eps == NULL:
            raise MemoryError("could not allocate the epilogues")
        self.n_eps = n_eps
        keep = []
        cdef int og = cw.out_c // cw.groups
        cdef int n, npad, g
        cdef cnp.ndarray col
        cdef cnp.ndarray ibg
        for g in range(n_eps):
            if path == "gemm":
                n = og
                npad = (<PackedWeights>cw.packed[g]).n_padded
                col = (<PackedWeights>cw.packed[g]).col_offsets(
                    self.zp_u8, None if int_bias is None else int_bias[g * og:(g + 1) * og])
                wzp = None
                if not (<PackedWeights>cw.packed[g]).w_zero_point_all_zero:
                    wzp = _per_channel(cw.w_zero_point, np.int32, n, npad, g * og, "w_zero_point")
            else:
                n = cw.out_c
                npad = cw.dw.c_pad
                col = np.zeros(npad, np.int32)
                ibg = None if int_bias is None else np.ascontiguousarray(int_bias)
                fq_dw_col_offsets(&cw.dw, self.zp_u8,
                                  NULL if ibg is None else <const int32_t *>cnp.PyArray_DATA(ibg),
                                  path == "depthwise_saturate", <int32_t *>cnp.PyArray_DATA(col))
                wzp = None   # the depthwise kernels apply the weight zero points themselves
            arrs = [col, wzp]
            for arr, dt, name in ((bias, np.float32, "bias"), (scale, np.float32, "scale"),
                                  (multiplier, np.int32, "multiplier"), (shift, np.int32, "shift")):
                arrs.append(None if arr is None else _per_channel(arr, dt, n, npad, g * og if path == "gemm" else 0, name))
            if kind == FQ_EPI_FBGEMM and arrs[2] is None:
                arrs[2] = np.zeros(npad, np.float32)   # fmaf(0, r, f) = f: one code path
            keep.append(arrs)
            memset(&self.eps[g], 0, sizeof(fq_epilogue))
            self.eps[g].kind = <fq_epilogue_kind>kind
            self.eps[g].col_offset = <const int32_t *>cnp.PyArray_DATA(col)
            self.eps[g].w_zero_point = <const int32_t *>_ptr_or_null(arrs[1], np.int32, npad, "w_zero_point")
            self.eps[g].bias = <const float *>_ptr_or_null(arrs[2], np.float32, npad, "bias")
            self.eps[g].bias_mult = bias_mult
            self.eps[g].scale = <const float *>_ptr_or_null(arrs[3], np.float32, npad, "scale")
            self.eps[g].multiplier = <const int32_t *>_ptr_or_null(arrs[4], np.int32, npad, "multiplier")
            self.eps[g].shift = <const int32_t *>_ptr_or_null(arrs[5], np.int32, npad, "shift")
            self.eps[g].rounding = rounding
            self.eps[g].src_scale = src_scale
            self.eps[g].out_scale_inv = out_scale_inv
            self.eps[g].out_zero_point = out_zero_point - olo
            self.eps[g].out_min = out_min - olo
            self.eps[g].out_max = out_max - olo
            self.eps[g].out_signed = self.out_dtype == np.int8
            if fq_epilogue_prepare(&self.eps[g], npad) != 0:
                raise ValueError("epilogue: rejected by fq_epilogue_prepare (kind %d)" % kind)
        if path != "gemm" and cw.have_dw32:
            # the same epilogue over 32 virtual channels l -> channel l % out_c (64 padded entries)
            reps = 32 // cw.out_c
            self.ep32 = self.eps[0]
            col = np.zeros(64, np.int32)
            ibg = None if int_bias is None else np.ascontiguousarray(np.tile(int_bias, reps))
            fq_dw_col_offsets(&cw.dw32, self.zp_u8,
                              NULL if ibg is None else <const int32_t *>cnp.PyArray_DATA(ibg),
                              path == "depthwise_saturate", <int32_t *>cnp.PyArray_DATA(col))
            arrs32 = [col]
            for arr in keep[0][2:]:
                if arr is None:
                    arrs32.append(None)
                    continue
                a32 = np.zeros(64, arr.dtype)
                a32[:32] = np.tile(arr[:cw.out_c], reps)
                arrs32.append(a32)
            keep.append(arrs32)
            self.ep32.col_offset = <const int32_t *>cnp.PyArray_DATA(col)
            self.ep32.w_zero_point = NULL
            self.ep32.bias = <const float *>_ptr_or_null(arrs32[1], np.float32, 64, "bias")
            self.ep32.scale = <const float *>_ptr_or_null(arrs32[2], np.float32, 64, "scale")
            self.ep32.multiplier = <const int32_t *>_ptr_or_null(arrs32[3], np.int32, 64, "multiplier")
            self.ep32.shift = <const int32_t *>_ptr_or_null(arrs32[4], np.int32, 64, "shift")
            if fq_epilogue_prepare(&self.ep32, 64) != 0:
                raise ValueError("epilogue: rejected by fq_epilogue_prepare (kind %d)" % kind)
            self.have_ep32 = True
        self.keep = keep

    def __dealloc__(self):
        free(self.eps)


cdef inline bint _small_int(v, int lo):
    """v is a plain int in [lo, 2**30] (the fast path of the per-call geometry arguments)."""
    return type(v) is int and lo <= v <= 1073741824


cdef int _pair_into(v, int spatial, str name, int lo, int32_t *h, int32_t *w) except -1:
    """_pair without building tuples for the common forms: an int, or a tuple of spatial ints."""
    if _small_int(v, lo):
        h[0] = (1 if lo > 0 else 0) if spatial == 1 else <int32_t>v
        w[0] = <int32_t>v
        return 0
    if type(v) is tuple and spatial == 2 and len(<tuple>v) == 2 and _small_int((<tuple>v)[0], lo) \
            and _small_int((<tuple>v)[1], lo):
        h[0] = <int32_t>(<tuple>v)[0]
        w[0] = <int32_t>(<tuple>v)[1]
        return 0
    t = _pair(v, spatial, name, lo)
    if any(e > 2**30 for e in t):
        raise ValueError("%s: expected values up to 2**30, got %r" % (name, v))
    h[0] = t[0]
    w[0] = t[1]
    return 0


def conv2d(x, ConvEpilogue ep not None, stride=1, padding=0, dilation=1, int num_threads=0,
           str layout_in="nchw", str layout_out="nchw"):
    """y = ep(conv(x)): x uint8 / int8 of ep.x_dtype quantized with ep.x_zero_point, y of
    ep.out_dtype (int32 acc for EPI_INT32). Padding reads the input zero point.
    layout_in "nchw": x [N, C, H, W] (or [N, C, L] for 1-D weights); "nhwc": x [N, H, W, C]
    (or [N, L, C]), channels last, read without a layout copy.
    layout_out "nchw": y [N, out_c, OH, OW] (or [N, out_c, OL]); "nhwc": y [N, OH, OW, out_c]
    (or [N, OL, out_c]), the kernels' own layout, returned without a copy: a network that keeps
    its activations channels last between convolutions pays no transposes."""
    cdef bint in_nhwc, out_nhwc
    if layout_in == "nhwc":
        in_nhwc = True
    elif layout_in == "nchw":
        in_nhwc = False
    else:
        raise ValueError("layout_in: expected 'nchw' or 'nhwc', got %r" % (layout_in,))
    if layout_out == "nhwc":
        out_nhwc = True
    elif layout_out == "nchw":
        out_nhwc = False
    else:
        raise ValueError("layout_out: expected 'nchw' or 'nhwc', got %r" % (layout_out,))
    if not isinstance(x, np.ndarray) or cnp.PyArray_TYPE(<cnp.ndarray>x) != ep.x_typenum \
            or cnp.PyArray_NDIM(<cnp.ndarray>x) not in (3, 4):
        raise TypeError("x: expected a 3-D or 4-D %s array, got %s" % (ep.x_dtype, getattr(x, "dtype", type(x))))
    cdef cnp.ndarray xc = <cnp.ndarray>x
    if not cnp.PyArray_IS_C_CONTIGUOUS(xc):
        xc = np.ascontiguousarray(xc)
    cdef int nd = cnp.PyArray_NDIM(xc)
    cdef cnp.npy_intp *d = cnp.PyArray_DIMS(xc)
    cdef ConvWeights cw = ep.cw
    cdef bint one_d = nd == 3
    cdef int sp = 1 if one_d else 2
    if cw.k_h != 1 and one_d:
        raise ValueError("x: a 3-D input [N, C, L] needs 1-D weights, these have k_h = %d" % cw.k_h)
    cdef fq_conv_geometry g
    memset(&g, 0, sizeof(g))
    _pair_into(stride, sp, "stride", 1, &g.stride_h, &g.stride_w)
    _pair_into(padding, sp, "padding", 0, &g.pad_h, &g.pad_w)
    _pair_into(dilation, sp, "dilation", 1, &g.dil_h, &g.dil_w)
    # [N, C, H, W] whichever the layout (1-D: H = 1)
    cdef cnp.npy_intp n_ = d[0], c_ = d[nd - 1] if in_nhwc else d[1]
    cdef cnp.npy_intp h_ = 1 if one_d else (d[1] if in_nhwc else d[2])
    cdef cnp.npy_intp w_ = d[nd - 2] if in_nhwc else d[nd - 1]
    if c_ != cw.in_c:
        raise ValueError("x: expected %d channels, got %d" % (cw.in_c, c_))
    if n_ > 2**30 or h_ > 2**30 or w_ > 2**30:
        raise ValueError("x: too large, shape %s" % (x.shape,))
    g.batch, g.in_c, g.in_h, g.in_w = n_, c_, h_, w_
    g.out_c, g.groups, g.k_h, g.k_w = cw.out_c, cw.groups, cw.k_h, cw.k_w
    if fq_conv_geometry_check(&g) != 0:
        raise ValueError("x, stride, padding, dilation: no output pixel (or a buffer over 2**31) for input "
                         "%s (%s), kernel %dx%d, stride %r, padding %r, dilation %r"
                         % (x.shape, layout_in, cw.k_h, cw.k_w, stride, padding, dilation))
    cdef int zp = ep.zp_u8
    cdef double k
    if ep.may_overflow and cnp.PyArray_SIZE(xc):
        # only inputs with values far from the zero point can overflow: look at them
        k = <double>cw.k_h * cw.k_w * (cw.in_c // cw.groups)
        xu = xc.view(np.uint8) ^ np.uint8(0x80) if ep.x_xor else xc
        dev = max(abs(int(xu.max()) - zp), abs(int(xu.min()) - zp))
        if k * dev * cw.max_dev > 2147483647.0:
            raise ValueError("x: the accumulator could overflow int32 (%d products of |x - zx| <= %d and "
                             "|w - zw| <= %d)" % (k, dev, cw.max_dev))
    cdef cnp.npy_intp od[4]
    cdef int i = 0
    od[0] = g.batch
    if not out_nhwc:
        od[1] = cw.out_c
        i = 1
    if not one_d:
        od[i + 1] = g.out_h
        i += 1
    od[i + 1] = g.out_w
    if out_nhwc:
        od[i + 2] = cw.out_c
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(nd, od, ep.out_typenum, 0)
    cdef fq_conv_call c
    c.g = &g
    c.x = <const uint8_t *>cnp.PyArray_DATA(xc)
    c.x_nhwc = in_nhwc
    c.x_xor = ep.x_xor
    c.pad_value = <uint8_t>zp
    c.path = ep.path_id
    c.pw = cw.pw_array
    c.eps = ep.eps
    c.tap_sums = cw.tap_sums_array
    c.dw = &cw.dw if cw.have_dw else NULL
    c.dw32 = &cw.dw32 if cw.have_dw32 else NULL
    c.ep32 = &ep.ep32 if ep.have_ep32 else NULL
    c.y = cnp.PyArray_DATA(y)
    c.y_nhwc = out_nhwc
    c.num_threads = num_threads
    cdef int rc
    with nogil:
        rc = fq_conv2d_run(&c)
    if rc != 0:
        raise MemoryError("conv2d: could not allocate its scratch buffers")
    return y


CLIP_MODES = ("auto", "always", "never")


def conv_set_clip(str mode):
    """Tests and benchmarks: when a padded convolution runs its GEMM over the taps inside the
    input only (csrc/conv/clip.c): "auto" (the cost model), "always" (every layer that
    qualifies), "never". Returns the previous mode."""
    if mode not in CLIP_MODES:
        raise ValueError("mode: expected one of %s, got %r" % (CLIP_MODES, mode))
    return CLIP_MODES[fq_conv_set_clip(CLIP_MODES.index(mode))]


def conv_clip_runs():
    """Tests: how many convolutions have run over the taps inside the input (conv.h)."""
    return fq_conv_clip_runs()


def conv2d_acc(x, int x_zero_point, ConvWeights cw not None, stride=1, padding=0, dilation=1,
               int_bias=None, str path="auto", int num_threads=0):
    """int32 acc[n, o, oh, ow] = sum (x - zx)(w - zw[o]) (+ int_bias[o]) over the receptive
    field (padding = zx), NCHW; path "depthwise_saturate": FBGEMM's saturating tap pairs."""
    x_dtype = getattr(x, "dtype", None)
    if x_dtype not in (np.uint8, np.int8):
        raise TypeError("x: expected a uint8 or int8 array, got %s" % (x_dtype,))
    ep = cw.epilogue(x_zero_point, x_dtype, kind=FQ_EPI_INT32, int_bias=int_bias, path=path)
    return conv2d(x, ep, stride, padding, dilation, num_threads)


# ---------------------------------------------------------------------------------------------
# Pooling (csrc/pool/)
cdef extern from "csrc/pool/pool.h" nogil:
    ctypedef struct fq_pool_geometry:
        int32_t batch, channels, in_h, in_w, out_h, out_w
        int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w
    void fq_max_pool_nhwc(int isa, const fq_pool_geometry *g, const uint8_t *x, uint8_t *y)
    void fq_plane_sums(int isa, const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums)
    void fq_avg_pool_nchw(const uint8_t *x, int64_t planes, int32_t in_h, int32_t in_w,
                          const int32_t *h0, const int32_t *h1, int32_t out_h,
                          const int32_t *w0, const int32_t *w1, int32_t out_w,
                          int32_t x_zero_point, const float *mult, int32_t y_zero_point, uint8_t y_xor,
                          void *out)
    void fq_nchw_to_nhwc_u8(const uint8_t *inp, int32_t batch, int64_t hw, int32_t channels, uint8_t x_xor,
                            uint8_t *out)


def pool_output_size(int size, int kernel, int stride, int padding, int dilation, bint ceil_mode):
    """torch's pooling_output_shape: floor or ceil of the window count; with ceil_mode the
    last window must start inside the input or its left padding."""
    cdef int64_t num = <int64_t>size + 2 * padding - <int64_t>dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    if num < 0:
        return 0
    cdef int64_t out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


cdef tuple _pool_args(x, kernel, stride, padding, dilation, bint ceil_mode, bint check_half=True):
    if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.int8) or x.ndim not in (3, 4):
        raise TypeError("x: expected a uint8 or int8 array [N, C, H, W] or [N, C, L], got %s"
                        % (getattr(x, "dtype", type(x)),))
    sp = 1 if x.ndim == 3 else 2
    kh, kw = _pair(kernel, sp, "kernel_size", 1)
    sh, sw = _pair(kernel if stride is None or stride == () else stride, sp, "stride", 1)
    ph, pw = _pair(padding, sp, "padding", 0)
    dh, dw = _pair(dilation, sp, "dilation", 1)
    if check_half and (2 * ph > (kh - 1) * dh + 1 or 2 * pw > (kw - 1) * dw + 1):
        raise ValueError("padding: expected at most half the (dilated) kernel, got %r for kernel_size %r"
                         % (padding, kernel))
    h = 1 if x.ndim == 3 else x.shape[2]
    w = x.shape[x.ndim - 1]
    oh = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    if oh <= 0 or ow <= 0:
        raise ValueError("x: input %s too small for kernel_size %r (output %dx%d)" % (x.shape, kernel, oh, ow))
    return (h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)



def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, bint ceil_mode=False):
    """torch's max_pool2d / max_pool1d on quantized values: the max over each window's
    in-bounds taps (padding never wins), same dtype and quantization. NCHW (or [N, C, L]); a
    channels-last view [N, C, H, W] is read in place and gives a channels-last view."""
    h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode)
    cdef fq_pool_geometry g
    g.batch, g.channels, g.in_h, g.in_w, g.out_h, g.out_w = x.shape[0], x.shape[1], h, w, oh, ow
    g.k_h, g.k_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w, g.dil_h, g.dil_w = kh, kw, sh, sw, ph, pw, dh, dw
    oshape = (g.batch, g.channels, ow) if x.ndim == 3 else (g.batch, g.channels, oh, ow)
    cdef cnp.ndarray y
    cdef cnp.ndarray xl
    cdef uint8_t *ylp
    if x.ndim == 4 and x.size and not x.flags.c_contiguous:
        xl = x.transpose(0, 2, 3, 1)
        if xl.flags.c_contiguous:
            # a channels-last view (a convolution's output): pooled in place, the output
            # channels last too; int8 through its order-keeping uint8 image (x ^ 0x80)
            if x.dtype == np.int8:
                xl = xl.view(np.uint8) ^ np.uint8(0x80)
            y = np.empty((g.batch, oh, ow, g.channels), np.uint8)
            ylp = <uint8_t *>cnp.PyArray_DATA(y)
            with nogil:
                fq_max_pool_nhwc(-1, &g, <const uint8_t *>cnp.PyArray_DATA(xl), ylp)
            if x.dtype == np.int8:
                y ^= np.uint8(0x80)
                y = y.view(np.int8)
            return y.transpose(0, 3, 1, 2)
    y = np.empty(oshape, x.dtype)
    if y.size == 0:
        return y
    cdef cnp.ndarray xc = np.ascontiguousarray(x)
    cdef cnp.ndarray xn = np.empty(x.size + 64, np.uint8)
    cdef cnp.ndarray yn = np.empty(y.size, np.uint8)
    cdef uint8_t xx = 0x80 if x.dtype == np.int8 else 0
    cdef const uint8_t *xp = <const uint8_t *>cnp.PyArray_DATA(xc)
    cdef uint8_t *xnp = <uint8_t *>cnp.PyArray_DATA(xn)
    cdef uint8_t *ynp = <uint8_t *>cnp.PyArray_DATA(yn)
    cdef void *yp = cnp.PyArray_DATA(y)
    with nogil:
        fq_nchw_to_nhwc_u8(xp, g.batch, <int64_t>g.in_h * g.in_w, g.channels, xx, xnp)
        fq_max_pool_nhwc(-1, &g, xnp, ynp)
        fq_nhwc_to_nchw(ynp, g.batch, <int64_t>g.out_h * g.out_w, g.channels, 1, yp)
    if xx:
        y.view(np.uint8)[...] ^= np.uint8(0x80)
    return y


cdef class MaxPoolPlan:
    """max_pool2d for one input signature (shape, dtype, strides), its geometry checked once:
    y = plan(x). A channels-last uint8 input (a convolution's output) is pooled in place with
    nothing else on the call (its output channels last too); any other signature goes through
    max_pool2d (int8's order-keeping uint8 image, C-order copies)."""
    cdef fq_pool_geometry g
    cdef readonly object x_shape, x_strides, dtype, args
    cdef bint direct
    cdef cnp.npy_intp ydims[4]

    def __init__(self, x, kernel_size, stride=None, padding=0, dilation=1, bint ceil_mode=False):
        h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode)
        self.x_shape, self.x_strides, self.dtype = x.shape, x.strides, x.dtype
        self.args = (kernel_size, stride, padding, dilation, ceil_mode)
        self.g.batch, self.g.channels, self.g.in_h, self.g.in_w, self.g.out_h, self.g.out_w = \
            x.shape[0], x.shape[1], h, w, oh, ow
        self.g.k_h, self.g.k_w, self.g.stride_h, self.g.stride_w = kh, kw, sh, sw
        self.g.pad_h, self.g.pad_w, self.g.dil_h, self.g.dil_w = ph, pw, dh, dw
        self.direct = (x.ndim == 4 and x.size > 0 and x.dtype == np.uint8 and not x.flags.c_contiguous
                       and x.transpose(0, 2, 3, 1).flags.c_contiguous)
        self.ydims[0], self.ydims[1], self.ydims[2], self.ydims[3] = self.g.batch, oh, ow, self.g.channels

    def __call__(self, x):
        """The pooled values of x, which must have the plan's shape, dtype and strides."""
        if type(x) is not np.ndarray or x.dtype is not self.dtype or x.shape != self.x_shape \
                or x.strides != self.x_strides:
            raise ValueError("x: this plan takes %s arrays of shape %s and strides %s, got %s"
                             % (self.dtype, self.x_shape, self.x_strides,
                                (getattr(x, "dtype", type(x)), getattr(x, "shape", None), getattr(x, "strides", None))))
        if not self.direct:
            return max_pool2d(x, *self.args)
        cdef cnp.ndarray xa = x
        cdef cnp.ndarray y = cnp.PyArray_EMPTY(4, self.ydims, cnp.NPY_UINT8, 0)
        with nogil:
            fq_max_pool_nhwc(-1, &self.g, <const uint8_t *>cnp.PyArray_DATA(xa), <uint8_t *>cnp.PyArray_DATA(y))
        return y.transpose(0, 3, 1, 2)


cdef tuple _avg_windows(int size, int k, int s, int p, int out, bint count_include_pad):
    """torch's quantized avg_pool window per output index: the clipped range [lo, hi) and the
    extent counted for count_include_pad (clipped to the padded input only)."""
    lo = np.empty(out, np.int32)
    hi = np.empty(out, np.int32)
    ext = np.empty(out, np.int64)
    for o in range(out):
        start = o * s - p
        end = min(start + k, size + p)
        ext[o] = end - start
        lo[o] = max(start, 0)
        hi[o] = min(end, size)
    return lo, hi, ext


def _avg_pool_core(x, int x_zero_point, lo_h, hi_h, lo_w, hi_w, divisor, multiplier, y_zero_point,
                   float scale_ratio):
    cdef int olo = -128 if x.dtype == np.int8 else 0
    if not olo <= x_zero_point <= olo + 255:
        raise ValueError("x_zero_point: expected %d..%d, got %d" % (olo, olo + 255, x_zero_point))
    oh, ow = lo_h.shape[0], lo_w.shape[0]
    cdef cnp.ndarray xc = np.ascontiguousarray(x)
    h = 1 if x.ndim == 3 else x.shape[2]
    w = x.shape[x.ndim - 1]
    if xc.dtype == np.int8:
        xc = xc.view(np.uint8) ^ np.uint8(0x80)
    oshape = (x.shape[0], x.shape[1], ow) if x.ndim == 3 else (x.shape[0], x.shape[1], oh, ow)
    cdef cnp.ndarray mult = None
    cdef cnp.ndarray out
    if y_zero_point is None:
        out = np.empty(oshape, np.int32)
    else:
        if not olo <= y_zero_point <= olo + 255:
            raise ValueError("y_zero_point: expected %d..%d, got %d" % (olo, olo + 255, y_zero_point))
        if multiplier is None:
            # torch: float multiplier = input_scale / output_scale / divide_factor (double, then float)
            mult = (np.float64(scale_ratio) / divisor.astype(np.float64)).astype(np.float32).reshape(-1)
        else:
            mult = np.ascontiguousarray(np.broadcast_to(np.asarray(multiplier, np.float32), (oh, ow))).reshape(-1)
        out = np.empty(oshape, x.dtype)
    cdef cnp.ndarray a = np.ascontiguousarray(lo_h, np.int32), b = np.ascontiguousarray(hi_h, np.int32)
    cdef cnp.ndarray c = np.ascontiguousarray(lo_w, np.int32), d = np.ascontiguousarray(hi_w, np.int32)
    cdef int64_t planes = <int64_t>x.shape[0] * x.shape[1]
    if out.size == 0:
        return out, divisor
    cdef int zx = x_zero_point - olo
    cdef int zy = 0 if y_zero_point is None else y_zero_point - olo
    cdef uint8_t yx = 0x80 if x.dtype == np.int8 else 0
    cdef const float *mp = NULL if mult is None else <const float *>cnp.PyArray_DATA(mult)
    cdef int32_t ih = h, iw = w, ooh = oh, oow = ow
    with nogil:
        fq_avg_pool_nchw(<const uint8_t *>cnp.PyArray_DATA(xc), planes, ih, iw,
                         <const int32_t *>cnp.PyArray_DATA(a), <const int32_t *>cnp.PyArray_DATA(b), ooh,
                         <const int32_t *>cnp.PyArray_DATA(c), <const int32_t *>cnp.PyArray_DATA(d), oow,
                         zx, mp, zy, yx, cnp.PyArray_DATA(out))
    return out, divisor


def avg_pool2d(x, int x_zero_point, kernel_size, stride=None, padding=0, bint ceil_mode=False,
               bint count_include_pad=True, divisor_override=None, y_zero_point=None,
               multiplier=None, float scale_ratio=1.0):
    """Quantized average pooling (NCHW or [N, C, L]) -> (out, divisor[OH, OW]).
    d = sum of the window's in-bounds (x - zx); divisor as torch: divisor_override, else the
    window clipped to the padded input (count_include_pad) or to the input.
    y_zero_point None: out = int32 d. Else out = clamp(rne(f32(f32(d) * m) + y_zero_point), dtype range)
    (zero point added in float before rounding: torch's exact .5 means round to even in zy + mean)
    with m = multiplier[oh, ow] (float32), default f32(scale_ratio / divisor) computed in double."""
    h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode)
    lo_h, hi_h, ext_h = _avg_windows(h, kh, sh, ph, oh, count_include_pad)
    lo_w, hi_w, ext_w = _avg_windows(w, kw, sw, pw, ow, count_include_pad)
    if divisor_override is not None:
        if int(divisor_override) == 0:
            raise ValueError("divisor_override: expected a nonzero int, got %r" % (divisor_override,))
        divisor = np.full((oh, ow), int(divisor_override), np.int64)
    elif count_include_pad:
        divisor = ext_h[:, None] * ext_w[None, :]
    else:
        divisor = (hi_h - lo_h).astype(np.int64)[:, None] * (hi_w - lo_w).astype(np.int64)[None, :]
    return _avg_pool_core(x, x_zero_point, lo_h, hi_h, lo_w, hi_w, divisor, multiplier, y_zero_point, scale_ratio)


def adaptive_avg_pool2d(x, int x_zero_point, output_size, y_zero_point=None, multiplier=None,
                        float scale_ratio=1.0):
    """Adaptive average pooling: window o covers [floor(o*in/out), ceil((o+1)*in/out)); divisor its
    size; the rest as avg_pool2d."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.int8) or x.ndim not in (3, 4):
        raise TypeError("x: expected a uint8 or int8 array [N, C, H, W] or [N, C, L]")
    sp = 1 if x.ndim == 3 else 2
    oh, ow = _pair(output_size, sp, "output_size", 1)
    h = 1 if x.ndim == 3 else x.shape[2]
    w = x.shape[x.ndim - 1]
    lo_h = np.array([o * h // oh for o in range(oh)], np.int32)
    hi_h = np.array([-((-(o + 1) * h) // oh) for o in range(oh)], np.int32)
    lo_w = np.array([o * w // ow for o in range(ow)], np.int32)
    hi_w = np.array([-((-(o + 1) * w) // ow) for o in range(ow)], np.int32)
    divisor = (hi_h - lo_h).astype(np.int64)[:, None] * (hi_w - lo_w).astype(np.int64)[None, :]
    return _avg_pool_core(x, x_zero_point, lo_h, hi_h, lo_w, hi_w, divisor, multiplier, y_zero_point, scale_ratio)


def plane_sums(x, int x_zero_point):
    """int32 [N, C]: sum over H, W (or L) of (x - zx) (global average pooling / mean's integer
    part), exact for planes of up to 2**23 values."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.int8) or x.ndim < 3:
        raise TypeError("x: expected a uint8 or int8 array [N, C, ...]")
    cdef int olo = -128 if x.dtype == np.int8 else 0
    if not olo <= x_zero_point <= olo + 255:
        raise ValueError("x_zero_point: expected %d..%d, got %d" % (olo, olo + 255, x_zero_point))
    cdef int64_t hw = int(np.prod(x.shape[2:]))
    if hw >= 2**23:
        raise ValueError("x: planes of %d values; at most 2**23 - 1 sum exactly in int32" % hw)
    cdef cnp.ndarray xc = np.ascontiguousarray(x)
    if xc.dtype == np.int8:
        xc = xc.view(np.uint8) ^ np.uint8(0x80)
    cdef cnp.ndarray sums = np.empty(x.shape[:2], np.int32)
    cdef int64_t planes = <int64_t>x.shape[0] * x.shape[1]
    if planes:
        with nogil:
            fq_plane_sums(-1, <const uint8_t *>cnp.PyArray_DATA(xc), planes, hw, <int32_t *>cnp.PyArray_DATA(sums))
    return sums - np.int32(hw * (x_zero_point - olo))


# ---------------------------------------------------------------------------------------------
# Average pooling with the rounding of each torch path (csrc/pool/avg_round.h)
cdef extern from "csrc/pool/avg_round.h" nogil:
    ctypedef struct fq_avg_rule:
        int32_t op
        const float *m
        float zp_before
        int32_t zp_after
    ctypedef struct fq_avg_pool_plan:
        int32_t batch, channels, in_h, in_w, out_h, out_w
        int64_t x_stride_n, x_stride_c, x_stride_h, x_stride_w
        const int32_t *h0
        const int32_t *h1
        const int32_t *w0
        const int32_t *w1
        int32_t x_signed, x_zero_point, qmin, qmax, split
        fq_avg_rule rule[2]
        int32_t y_channels_last
    void fq_avg_pool_rounded(const fq_avg_pool_plan *p, const void *x, void *y)

AVG_ROUND_OPS = {"mul": 0, "fma": 1, "div": 2}
_PERM_3, _PERM_4 = (0, 2, 1), (0, 3, 1, 2)


cdef class AvgPoolPlan:
    """Average pooling of one input signature (shape, dtype, strides) with a path's rounding,
    built once and called per input: y = plan(x) (avg_round.h gives the arithmetic).

    x_shape: (N, C, H, W) or (N, C, L); x_strides: numpy's byte strides of that input (a
    channels-last view is read in place and its output is channels last too); windows: int32
    arrays h0, h1 [OH] and w0, w1 [OW] (for [N, C, L]: h0 = [0], h1 = [1]); rules: two
    (op "mul" | "fma" | "div", m float32 [OH * OW], zp_before, zp_after), rule 0 for the
    channels below split; x_zero_point: subtracted once per tap."""
    cdef fq_avg_pool_plan p
    cdef object keep
    cdef readonly tuple x_shape, x_strides
    cdef object dtype
    cdef tuple y_alloc, y_perm

    def __cinit__(self, x_shape, x_strides, dtype, h0, h1, w0, w1, int x_zero_point, rules, int split):
        dtype = np.dtype(dtype)
        if dtype not in (np.uint8, np.int8):
            raise TypeError("dtype: expected uint8 or int8, got %s" % dtype)
        x_shape, x_strides = tuple(int(s) for s in x_shape), tuple(int(s) for s in x_strides)
        if len(x_shape) not in (3, 4) or len(x_strides) != len(x_shape) or min(x_shape) < 1:
            raise ValueError("x_shape: expected [N, C, H, W] or [N, C, L] of sizes >= 1, got %s" % (x_shape,))
        one_d = len(x_shape) == 3
        hw = (1, x_shape[2]) if one_d else x_shape[2:]
        st = (0, x_strides[2]) if one_d else x_strides[2:]
        arrs = [np.ascontiguousarray(a, np.int32) for a in (h0, h1, w0, w1)]
        oh, ow = arrs[0].shape[0], arrs[2].shape[0]
        if arrs[1].shape[0] != oh or arrs[3].shape[0] != ow or oh < 1 or ow < 1:
            raise ValueError("windows: h0 / h1 and w0 / w1 must pair up, got %d / %d and %d / %d"
                             % (arrs[0].shape[0], arrs[1].shape[0], arrs[2].shape[0], arrs[3].shape[0]))
        for lo, hi, size, what in ((arrs[0], arrs[1], hw[0], "rows"), (arrs[2], arrs[3], hw[1], "columns")):
            if lo.min() < 0 or hi.max() > size or np.any(hi < lo):
                raise ValueError("windows: %s outside [0, %d)" % (what, size))
        if (arrs[1] - arrs[0]).max() * (arrs[3] - arrs[2]).max() >= 2 ** 23:
            raise ValueError("windows: at most 2**23 - 1 taps sum exactly in int32")
        self.p.batch, self.p.channels = x_shape[0], x_shape[1]
        self.p.in_h, self.p.in_w, self.p.out_h, self.p.out_w = hw[0], hw[1], oh, ow
        self.p.x_stride_n, self.p.x_stride_c = x_strides[0], x_strides[1]
        self.p.x_stride_h, self.p.x_stride_w = st[0], st[1]
        self.p.h0 = <const int32_t *>cnp.PyArray_DATA(arrs[0])
        self.p.h1 = <const int32_t *>cnp.PyArray_DATA(arrs[1])
        self.p.w0 = <const int32_t *>cnp.PyArray_DATA(arrs[2])
        self.p.w1 = <const int32_t *>cnp.PyArray_DATA(arrs[3])
        self.p.x_signed = dtype == np.int8
        lo, hi = (-128, 127) if self.p.x_signed else (0, 255)
        if not lo <= x_zero_point <= hi:
            raise ValueError("x_zero_point: expected %d..%d, got %d" % (lo, hi, x_zero_point))
        self.p.x_zero_point, self.p.qmin, self.p.qmax = x_zero_point, lo, hi
        self.p.split = split
        if len(rules) != 2:
            raise ValueError("rules: expected two (op, m, zp_before, zp_after), got %d" % len(rules))
        for i, (op, m, zb, za) in enumerate(rules):
            if op not in AVG_ROUND_OPS:
                raise ValueError("rules: op expected one of %s, got %r" % (", ".join(AVG_ROUND_OPS), op))
            m = np.asarray(m, np.float32)
            m = np.ascontiguousarray(np.broadcast_to(m.reshape(-1) if m.size == oh * ow else m, (oh * ow,)))
            arrs.append(m)
            self.p.rule[i].op = AVG_ROUND_OPS[op]
            self.p.rule[i].m = <const float *>cnp.PyArray_DATA(m)
            self.p.rule[i].zp_before = zb
            self.p.rule[i].zp_after = za
        self.keep = arrs
        isz = dtype.itemsize
        for s in x_strides:
            if s % isz:
                raise ValueError("x_strides: %s are not whole elements" % (x_strides,))
        self.p.x_stride_n //= isz
        self.p.x_stride_c //= isz
        self.p.x_stride_h //= isz
        self.p.x_stride_w //= isz
        self.x_shape, self.x_strides, self.dtype = x_shape, x_strides, dtype
        # channels-last in, channels-last out (a 1x1 output is the same bytes either way)
        self.p.y_channels_last = x_shape[1] > 1 and x_strides[1] == isz and oh * ow > 1
        n, c, oh, ow = x_shape[0], x_shape[1], int(oh), int(ow)
        if self.p.y_channels_last:
            self.y_alloc = (n, ow, c) if one_d else (n, oh, ow, c)
            self.y_perm = _PERM_3 if one_d else _PERM_4
        else:
            self.y_alloc = (n, c, ow) if one_d else (n, c, oh, ow)
            self.y_perm = None

    def __call__(self, x):
        """The pooled values of x, which must have the plan's shape, dtype and strides."""
        if type(x) is not np.ndarray or x.dtype is not self.dtype or x.shape != self.x_shape \
                or x.strides != self.x_strides:
            raise ValueError("x: this plan takes %s arrays of shape %s and strides %s, got %s"
                             % (self.dtype, self.x_shape, self.x_strides,
                                (getattr(x, "dtype", type(x)), getattr(x, "shape", None), getattr(x, "strides", None))))
        cdef cnp.ndarray xa = x
        cdef cnp.ndarray y = np.empty(self.y_alloc, self.dtype)
        with nogil:
            fq_avg_pool_rounded(&self.p, cnp.PyArray_DATA(xa), cnp.PyArray_DATA(y))
        return y if self.y_perm is None else y.transpose(self.y_perm)
