# cython: boundscheck=False, wraparound=False
"""Thin wrappers of csrc/elementwise.c: contiguous uint8 / int8 arrays of equal size in, a new
array of their shape out. The layers (layers/arith.py) check shapes and qparams first.
simd=False runs the scalar C loops (what a CPU without AVX2 + FMA gets), for the tests."""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, int32_t, uint32_t, uint8_t

cnp.import_array()

cdef extern from "csrc/elementwise/elementwise.h":
    void fastq_qadd_fbgemm(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                           float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                           float inv_scale, int32_t zero_point, int relu, int is_signed, int simd) nogil
    void fastq_qadd_qnnpack(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                            int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                            uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max, int simd) nogil
    void fastq_qmul(const void *a, const void *b, void *y, int64_t n, int32_t a_zero_point,
                    int32_t b_zero_point, float multiplier, int32_t zero_point, int relu,
                    int is_signed, int simd) nogil


cdef inline cnp.ndarray _c(cnp.ndarray x):
    return x if cnp.PyArray_IS_C_CONTIGUOUS(x) else np.ascontiguousarray(x)


cdef int _signed_pair(cnp.ndarray a, cnp.ndarray b) except -1:
    cdef int ta = cnp.PyArray_TYPE(a)
    if ta != cnp.PyArray_TYPE(b) or ta not in (cnp.NPY_UINT8, cnp.NPY_INT8):
        raise TypeError("a, b: expected two uint8 or two int8 arrays, got %s and %s" % (a.dtype, b.dtype))
    if a.size != b.size:
        raise ValueError("a, b: sizes differ (%d, %d)" % (a.size, b.size))
    return 1 if ta == cnp.NPY_INT8 else 0


def qadd_fbgemm(cnp.ndarray a not None, cnp.ndarray b not None, int64_t n_vec, float a_scale,
                int a_zero_point, float b_scale, int b_zero_point, float inv_scale, int zero_point,
                bint relu, bint simd=True):
    cdef int is_signed = _signed_pair(a, b)
    a = _c(a); b = _c(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.PyArray_TYPE(a), 0)
    with nogil:
        fastq_qadd_fbgemm(cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(y),
                          cnp.PyArray_SIZE(a), n_vec, a_scale, a_zero_point, b_scale, b_zero_point,
                          inv_scale, zero_point, relu, is_signed, simd)
    return y


def qadd_qnnpack(cnp.ndarray a not None, cnp.ndarray b not None, int32_t zero_point_product,
                 uint32_t a_multiplier, uint32_t b_multiplier, uint32_t shift, int zero_point,
                 int y_min, int y_max, bint simd=True):
    if _signed_pair(a, b) or not (0 < shift < 32):
        raise TypeError("a, b: QNNPACK add takes uint8 values and 0 < shift < 32")
    a = _c(a); b = _c(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.NPY_UINT8, 0)
    with nogil:
        fastq_qadd_qnnpack(<const uint8_t *>cnp.PyArray_DATA(a), <const uint8_t *>cnp.PyArray_DATA(b),
                           <uint8_t *>cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a), zero_point_product,
                           a_multiplier, b_multiplier, shift, zero_point, y_min, y_max, simd)
    return y


def qmul(cnp.ndarray a not None, cnp.ndarray b not None, int a_zero_point, int b_zero_point,
         float multiplier, int zero_point, bint relu, bint simd=True):
    cdef int is_signed = _signed_pair(a, b)
    a = _c(a); b = _c(b)
    cdef cnp.ndarray y = cnp.PyArray_EMPTY(a.ndim, a.shape, cnp.PyArray_TYPE(a), 0)
    with nogil:
        fastq_qmul(cnp.PyArray_DATA(a), cnp.PyArray_DATA(b), cnp.PyArray_DATA(y), cnp.PyArray_SIZE(a),
                   a_zero_point, b_zero_point, multiplier, zero_point, relu, is_signed, simd)
    return y
