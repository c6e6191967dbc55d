# Per-channel table kernels (csrc/norm/): included at the end of _kernels.pyx.
cdef extern from "csrc/norm/channel_table.h" nogil:
    void fq_channel_table_nchw(const uint8_t *x, int64_t batch, int64_t channels, int64_t pixels,
                               const uint8_t *table, uint8_t *y)


def channel_table(x, table):
    """y[n, c, ...] = table[c, byte of x[n, c, ...]] for 8-bit x of shape [N, C, ...] (N, C >= 1) and a
    uint8 / int8 table [C, 256] indexed by the input byte (int8 values by their two's-complement
    byte); y has the table's dtype and x's shape."""
    if not isinstance(x, np.ndarray) or x.dtype not in (np.uint8, np.int8) or x.ndim < 2:
        raise TypeError("x: expected a uint8 or int8 array of shape [N, C, ...], got %r" % (type(x),))
    if not isinstance(table, np.ndarray) or table.dtype not in (np.uint8, np.int8) or table.ndim != 2 \
            or table.shape[0] != x.shape[1] or table.shape[1] != 256:
        raise ValueError("table: expected a uint8 or int8 array [%d, 256]" % x.shape[1])
    xc = np.ascontiguousarray(x)
    tc = np.ascontiguousarray(table)
    y = np.empty(x.shape, dtype=table.dtype)
    cdef int64_t n = x.shape[0], c = x.shape[1]
    cdef int64_t p = x.size // (n * c) if n * c else 0
    if n * c * p == 0:
        return y
    cdef const uint8_t *xp = <const uint8_t *>cnp.PyArray_DATA(xc)
    cdef const uint8_t *tp = <const uint8_t *>cnp.PyArray_DATA(tc)
    cdef uint8_t *yp = <uint8_t *>cnp.PyArray_DATA(y)
    with nogil:
        fq_channel_table_nchw(xp, n, c, p, tp, yp)
    return y
