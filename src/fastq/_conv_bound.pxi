# ---------------------------------------------------------------------------------------------
# A convolution bound to one input signature (layers/conv.py QuantizedConv._bind; the
# protocol: layers/_fast.py). conv2d parses its arguments, checks the geometry and builds its
# call on every call; a small model at batch 1 spends as long on that as on its arithmetic
# (DS-CNN: a 3x3 depthwise layer is ~2 us of kernel). Here the geometry, the output shape and
# the input's layout are settled once, when the layer binds (the checked call has just run on
# an input of this signature); each call checks the signature (the QTensor's quantization, the
# values' dtype, shape and strides), allocates the output and runs fq_conv2d_run: the same
# kernels on the same bytes as conv2d, so the same integers.

cdef extern from *:
    """
    /* cls.__new__'s allocation without the call: what object.__new__(cls) runs for a class
     * without __init__ arguments to check */
    static PyObject *fq_type_alloc(PyObject *cls) { return ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0); }
    """
    object fq_type_alloc(object cls)

cdef enum:
    _IN_NHWC_VIEW = 0       # x's values are an NHWC array seen as NCHW: read in place as NHWC
    _IN_NCHW = 1            # x's values are C-contiguous NCHW: read in place as NCHW
    _IN_COPY = 2            # any other strides: an NCHW copy first (as conv2d makes one)


_TO_LAST_4, _TO_LAST_3 = (0, 2, 3, 1), (0, 2, 1)


cdef inline object _new_qtensor(object cls):
    """object.__new__(cls) without the call (the slots unset, set next by the caller, as
    QTensor._checked does)."""
    return fq_type_alloc(cls)


cdef class ConvBound:
    """bound(x) = the layer's output QTensor for x, a QTensor of the signature bound to (else
    the protocol's miss marker). Built by QuantizedConv._bind only."""
    cdef ConvEpilogue ep
    cdef fq_conv_geometry g
    cdef object qtensor, miss
    cdef object x_scale, x_zero_point, y_scale, y_zero_point
    cdef int nd, x_typenum, mode
    cdef cnp.npy_intp shape[4]
    cdef cnp.npy_intp strides[4]
    cdef cnp.npy_intp out_dims[4]          # the kernel's NHWC output
    cdef cnp.npy_intp to_first[4]          # the transpose that shows it as NCHW
    cdef cnp.PyArray_Dims perm

    def __cinit__(self, x, ConvEpilogue ep not None, stride, padding, dilation, y_scale, y_zero_point, miss):
        cdef cnp.ndarray v = x._values
        cdef int nd = cnp.PyArray_NDIM(v), i
        if nd not in (3, 4) or cnp.PyArray_TYPE(v) != ep.x_typenum:
            raise TypeError("x: expected a 3-D or 4-D %s array, got %s" % (ep.x_dtype, v.dtype))
        cdef ConvWeights cw = ep.cw
        cdef bint one_d = nd == 3
        cdef int sp = 1 if one_d else 2
        if cw.k_h != 1 and one_d:
            raise ValueError("x: a 3-D input [N, C, L] needs 1-D weights, these have k_h = %d" % cw.k_h)
        cdef cnp.npy_intp *d = cnp.PyArray_DIMS(v)
        if d[1] != cw.in_c:
            raise ValueError("x: expected %d channels, got %d" % (cw.in_c, d[1]))
        if d[0] > 2**30 or d[nd - 1] > 2**30 or (not one_d and d[2] > 2**30):
            raise ValueError("x: too large, shape %s" % (x._values.shape,))
        memset(&self.g, 0, sizeof(self.g))
        _pair_into(stride, sp, "stride", 1, &self.g.stride_h, &self.g.stride_w)
        _pair_into(padding, sp, "padding", 0, &self.g.pad_h, &self.g.pad_w)
        _pair_into(dilation, sp, "dilation", 1, &self.g.dil_h, &self.g.dil_w)
        self.g.batch, self.g.in_c = d[0], d[1]
        self.g.in_h = 1 if one_d else d[2]
        self.g.in_w = d[nd - 1]
        self.g.out_c, self.g.groups, self.g.k_h, self.g.k_w = cw.out_c, cw.groups, cw.k_h, cw.k_w
        if fq_conv_geometry_check(&self.g) != 0:
            raise ValueError("x, stride, padding, dilation: no output pixel (or a buffer over 2**31) for input %s"
                             % (x._values.shape,))
        self.ep = ep
        self.nd = nd
        self.x_typenum = ep.x_typenum
        for i in range(nd):
            self.shape[i] = d[i]
            self.strides[i] = cnp.PyArray_STRIDES(v)[i]
        # the input layout, as QuantizedConv._call decides it
        to_last = _TO_LAST_4 if nd == 4 else _TO_LAST_3
        if x._values.transpose(to_last).flags.c_contiguous:
            self.mode = _IN_NHWC_VIEW
        elif cnp.PyArray_IS_C_CONTIGUOUS(v):
            self.mode = _IN_NCHW
        else:
            self.mode = _IN_COPY
        self.out_dims[0] = self.g.batch
        if one_d:
            self.out_dims[1], self.out_dims[2] = self.g.out_w, cw.out_c
            self.to_first[0], self.to_first[1], self.to_first[2] = 0, 2, 1
        else:
            self.out_dims[1], self.out_dims[2], self.out_dims[3] = self.g.out_h, self.g.out_w, cw.out_c
            self.to_first[0], self.to_first[1], self.to_first[2], self.to_first[3] = 0, 3, 1, 2
        self.perm.ptr = self.to_first
        self.perm.len = nd
        self.qtensor = type(x)
        self.x_scale, self.x_zero_point = x._scale, x._zero_point
        self.y_scale, self.y_zero_point = y_scale, y_zero_point
        self.miss = miss

    cdef bint _same_signature(self, x, cnp.ndarray v):
        cdef int i
        if cnp.PyArray_TYPE(v) != self.x_typenum or cnp.PyArray_NDIM(v) != self.nd:
            return False
        cdef cnp.npy_intp *d = cnp.PyArray_DIMS(v)
        cdef cnp.npy_intp *s = cnp.PyArray_STRIDES(v)
        for i in range(self.nd):
            if d[i] != self.shape[i] or s[i] != self.strides[i]:
                return False
        return True

    def __call__(self, x):
        if type(x) is not self.qtensor or x._axis is not None:
            return self.miss
        sx, zx = x._scale, x._zero_point
        # the scale and zero point objects are the producer's own (the same each call) but
        # compare by value as the full call does
        if (sx is not self.x_scale and sx != self.x_scale) or (zx is not self.x_zero_point and zx != self.x_zero_point):
            return self.miss
        v = x._values
        if not cnp.PyArray_CheckExact(v) or not self._same_signature(x, <cnp.ndarray>v):
            return self.miss
        cdef cnp.ndarray xc = <cnp.ndarray>v
        if self.mode == _IN_COPY:
            xc = np.ascontiguousarray(xc)
        cdef ConvEpilogue ep = self.ep
        cdef ConvWeights cw = ep.cw
        cdef int zp = ep.zp_u8
        cdef double k
        if ep.may_overflow and cnp.PyArray_SIZE(xc):
            # only inputs with values far from the zero point can overflow: look at them (the
            # extremes do not depend on the layout, so x's own array serves)
            k = <double>cw.k_h * cw.k_w * (cw.in_c // cw.groups)
            xu = xc.view(np.uint8) ^ np.uint8(0x80) if ep.x_xor else xc
            dev = max(abs(int(xu.max()) - zp), abs(int(xu.min()) - zp))
            if k * dev * cw.max_dev > 2147483647.0:
                raise ValueError("x: the accumulator could overflow int32 (%d products of |x - zx| <= %d and "
                                 "|w - zw| <= %d)" % (k, dev, cw.max_dev))
        cdef cnp.ndarray y = cnp.PyArray_EMPTY(self.nd, self.out_dims, ep.out_typenum, 0)
        cdef fq_conv_call c
        c.g = &self.g
        c.x = <const uint8_t *>cnp.PyArray_DATA(xc)
        c.x_nhwc = self.mode == _IN_NHWC_VIEW
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
        c.y_nhwc = True
        c.num_threads = 0
        cdef int rc
        with nogil:
            rc = fq_conv2d_run(&c)
        if rc != 0:
            raise MemoryError("conv2d: could not allocate its scratch buffers")
        q = _new_qtensor(self.qtensor)
        q._values = cnp.PyArray_Transpose(y, &self.perm)
        q._scale = self.y_scale
        q._zero_point = self.y_zero_point
        q._axis = None
        return q


cdef class AvgPoolBound:
    """bound(x) = the pooled QTensor of x, a QTensor of the plan's signature (values' dtype,
    shape, strides) with the bound zero point (and scale, where the plan's constants depend
    on it), else the protocol's miss marker: the checks and the output array of
    AvgPoolPlan.__call__ and of the layer's QTensor without a Python frame (layers/pool.py
    _bind_plan). reshape: None, or the output's shape (MeanHW without keepdim)."""
    cdef AvgPoolPlan plan
    cdef object qtensor, miss, x_scale, x_zero_point, reshape
    cdef bint scale_too, transpose
    cdef int nd, typenum
    cdef cnp.npy_intp shape[4]
    cdef cnp.npy_intp strides[4]
    cdef cnp.npy_intp y_dims[4]
    cdef cnp.npy_intp perm[4]
    cdef cnp.PyArray_Dims pd

    def __cinit__(self, AvgPoolPlan plan not None, x, reshape, bint scale_too, miss):
        cdef int i
        self.plan = plan
        self.nd = len(plan.x_shape)
        for i in range(self.nd):
            self.shape[i] = plan.x_shape[i]
            self.strides[i] = plan.x_strides[i]
        self.typenum = (<cnp.dtype>plan.dtype).type_num
        for i in range(len(plan.y_alloc)):
            self.y_dims[i] = plan.y_alloc[i]
        self.transpose = plan.y_perm is not None
        if self.transpose:
            for i in range(self.nd):
                self.perm[i] = plan.y_perm[i]
        self.pd.ptr = self.perm
        self.pd.len = self.nd
        self.qtensor = type(x)
        self.x_scale, self.x_zero_point = x._scale, x._zero_point
        self.reshape, self.scale_too, self.miss = reshape, scale_too, miss

    def __call__(self, x):
        cdef int i
        if type(x) is not self.qtensor or x._axis is not None:
            return self.miss
        zx = x._zero_point
        if zx is not self.x_zero_point and zx != self.x_zero_point:
            return self.miss
        sx = x._scale
        if self.scale_too and sx is not self.x_scale and sx != self.x_scale:
            return self.miss
        v = x._values
        if not cnp.PyArray_CheckExact(v):
            return self.miss
        cdef cnp.ndarray xa = <cnp.ndarray>v
        if cnp.PyArray_TYPE(xa) != self.typenum or cnp.PyArray_NDIM(xa) != self.nd:
            return self.miss
        for i in range(self.nd):
            if cnp.PyArray_DIMS(xa)[i] != self.shape[i] or cnp.PyArray_STRIDES(xa)[i] != self.strides[i]:
                return self.miss
        cdef cnp.ndarray y = cnp.PyArray_EMPTY(self.nd, self.y_dims, self.typenum, 0)
        with nogil:
            fq_avg_pool_rounded(&self.plan.p, cnp.PyArray_DATA(xa), cnp.PyArray_DATA(y))
        out = cnp.PyArray_Transpose(y, &self.pd) if self.transpose else y
        if self.reshape is not None:
            out = out.reshape(self.reshape)
        q = _new_qtensor(self.qtensor)
        q._values = out
        q._scale = sx
        q._zero_point = zx
        q._axis = None
        return q
