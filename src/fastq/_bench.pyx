# cython: language_level=3
"""fastq._bench: what a multiply costs on this CPU (C microbenchmarks, see csrc/bench/).

Times come from a steady clock in C. Cycles are derived from an estimate of the core clock,
`core_ghz()`: a dependent chain of integer adds retires one add per core cycle, so
adds / second = cycles / second. The TSC is not used (it ticks at a fixed reference rate,
not at the core clock, and under a hypervisor it may be emulated).

Operations: one multiply that feeds an accumulation counts as 2 operations (multiply + add),
the convention behind GOPS / GFLOPS peak figures; `vpmulld` (multiply only) counts 1.
Every figure is for one thread on one core; the best (shortest) of `repeats` runs is kept.
"""
from libc.stdint cimport int64_t

cdef extern from "csrc/bench/bench.h" nogil:
    double fqb_now_ns()
    double fqb_add_chain_ns(int64_t n)
    int FQB_I8, FQB_I16, FQB_I32, FQB_I64, FQB_F32, FQB_F64
    int FQB_THROUGHPUT_CHAINS
    double fqb_scalar_mul_ns(int dtype, int chains, int64_t n)
    int FQB_VPDPBUSD, FQB_VPMADDWD, FQB_VPMULLD, FQB_VFMADD231PS, FQB_VFMADD231PD
    int fqb_simd_chains(int bits)
    int fqb_simd_supported(int instr, int bits)
    double fqb_simd_ns(int instr, int bits, int64_t n)
    int fqb_simd_products(int instr, int bits)

DTYPES = ("int8", "int16", "int32", "int64", "float32", "float64")
_DTYPE_CODE = dict(zip(DTYPES, (FQB_I8, FQB_I16, FQB_I32, FQB_I64, FQB_F32, FQB_F64)))
MODES = ("latency", "throughput")
THROUGHPUT_CHAINS = FQB_THROUGHPUT_CHAINS

INSTRUCTIONS = ("vpdpbusd", "vpmaddwd", "vpmulld", "vfmadd231ps", "vfmadd231pd")
_INSTR_CODE = dict(zip(INSTRUCTIONS, (FQB_VPDPBUSD, FQB_VPMADDWD, FQB_VPMULLD,
                                      FQB_VFMADD231PS, FQB_VFMADD231PD)))
# What each instruction multiplies, for tables.
INSTRUCTION_TYPES = {"vpdpbusd": "u8*s8+s32", "vpmaddwd": "s16*s16+s32",
                     "vpmulld": "s32*s32", "vfmadd231ps": "f32*f32+f32",
                     "vfmadd231pd": "f64*f64+f64"}
WIDTHS = (512, 256)


def _check_n(n, name="n"):
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("%s: expected an int, got %s" % (name, type(n).__name__))
    if n < 1:
        raise ValueError("%s: expected a positive count, got %d" % (name, n))
    return n


def _check_repeats(repeats):
    _check_n(repeats, "repeats")
    return repeats


def add_chain_ns(n=20_000_000, repeats=3):
    """ns per add of a dependent chain of n integer adds (= ns per core cycle), best of repeats."""
    cdef int64_t nn = _check_n(n)
    cdef double t, best = -1.0
    for _ in range(_check_repeats(repeats)):
        with nogil:
            t = fqb_add_chain_ns(nn)
        if best < 0 or t < best:
            best = t
    return best / nn


_core_ghz_cache = None


def core_ghz(n=20_000_000, repeats=3, refresh=False):
    """Core clock estimate in GHz: 1 / (ns per add of a dependent add chain). Cached;
    refresh=True measures again (the clock moves with load and temperature)."""
    global _core_ghz_cache
    if _core_ghz_cache is None or refresh:
        _core_ghz_cache = 1.0 / add_chain_ns(n, repeats)
    return _core_ghz_cache


def scalar_mul_ns(dtype, mode="latency", n=4_000_000, repeats=3):
    """ns per scalar multiply of C type `dtype` ("int8" ... "float64").

    mode "latency": one dependent chain (each multiply waits for the previous result);
    "throughput": THROUGHPUT_CHAINS independent chains (ns per multiply, all chains together).
    n: multiplies per chain."""
    if dtype not in _DTYPE_CODE:
        raise ValueError("dtype: expected one of %s, got %r" % (", ".join(DTYPES), dtype))
    if mode not in MODES:
        raise ValueError("mode: expected 'latency' or 'throughput', got %r" % (mode,))
    cdef int code = _DTYPE_CODE[dtype]
    cdef int chains = 1 if mode == "latency" else FQB_THROUGHPUT_CHAINS
    cdef int64_t nn = _check_n(n)
    cdef double t, best = -1.0
    for _ in range(_check_repeats(repeats)):
        with nogil:
            t = fqb_scalar_mul_ns(code, chains, nn)
        if t < 0:
            raise RuntimeError("fqb_scalar_mul_ns refused dtype %s" % dtype)
        if best < 0 or t < best:
            best = t
    return best / (nn * chains)


def _instr_code(instr, bits):
    if instr not in _INSTR_CODE:
        raise ValueError("instr: expected one of %s, got %r" % (", ".join(INSTRUCTIONS), instr))
    if bits not in WIDTHS:
        raise ValueError("bits: expected 256 or 512, got %r" % (bits,))
    return _INSTR_CODE[instr]


def simd_supported(instr, bits=512):
    """Whether this CPU (and this build) runs `instr` at `bits` (256: ymm, 512: zmm)."""
    return bool(fqb_simd_supported(_instr_code(instr, bits), bits))


def simd_available():
    """[(instr, bits)] that this CPU runs, widest first."""
    return [(i, b) for i in INSTRUCTIONS for b in WIDTHS if simd_supported(i, b)]


def simd_chains(bits=512):
    """Independent accumulators the timed loop keeps (16 zmm, 12 ymm)."""
    if bits not in WIDTHS:
        raise ValueError("bits: expected 256 or 512, got %r" % (bits,))
    return fqb_simd_chains(bits)


def simd_products(instr, bits=512):
    """Multiplies one instruction performs (vpdpbusd at 512 bits: 16 lanes x 4 = 64)."""
    return fqb_simd_products(_instr_code(instr, bits), bits)


def ops_per_product(instr):
    """2 where each product is accumulated (multiply + add), 1 for vpmulld."""
    _instr_code(instr, 512)
    return 1 if instr == "vpmulld" else 2


def simd_ns(instr, bits=512, n=1_000_000, repeats=3):
    """ns per instruction at full throughput (independent accumulators), best of repeats.
    Raises ValueError where this CPU does not run it (see simd_supported)."""
    cdef int code = _instr_code(instr, bits)
    cdef int b = bits
    if not fqb_simd_supported(code, b):
        raise ValueError("instr: %s at %d bits is not supported by this CPU or build" % (instr, bits))
    cdef int64_t nn = _check_n(n)
    cdef double t, best = -1.0
    for _ in range(_check_repeats(repeats)):
        with nogil:
            t = fqb_simd_ns(code, b, nn)
        if best < 0 or t < best:
            best = t
    return best / (nn * fqb_simd_chains(b))


def simd_throughput(instr, bits=512, n=1_000_000, repeats=3, ghz=None):
    """dict: ns per instruction, products/s, ops/s, and per cycle (with `ghz` or core_ghz())."""
    ns = simd_ns(instr, bits, n, repeats)
    ghz = core_ghz() if ghz is None else ghz
    products = simd_products(instr, bits)
    ops = products * ops_per_product(instr)
    return {"instr": instr, "bits": bits, "type": INSTRUCTION_TYPES[instr],
            "ns_per_instr": ns, "instr_per_cycle": 1.0 / (ns * ghz),
            "products_per_instr": products, "products_per_s": products / ns * 1e9,
            "ops_per_s": ops / ns * 1e9, "ops_per_cycle": ops / (ns * ghz), "core_ghz": ghz}


def peak_ops_per_s(instr, n=1_000_000, repeats=3):
    """The best ops/s over the widths this CPU runs `instr` at; None where it runs none."""
    best = None
    for bits in WIDTHS:
        if simd_supported(instr, bits):
            ops = simd_products(instr, bits) * ops_per_product(instr) / simd_ns(instr, bits, n, repeats) * 1e9
            best = ops if best is None or ops > best else best
    return best


def _giga(x):
    return None if x is None else x / 1e9


def peak_int8_gops(n=1_000_000, repeats=3):
    """Measured int8 peak (vpdpbusd, u8 x s8 -> s32), GOPS, one core; None without VNNI."""
    return _giga(peak_ops_per_s("vpdpbusd", n, repeats))


def peak_int16_gops(n=1_000_000, repeats=3):
    """Measured int16 peak (vpmaddwd), GOPS, one core."""
    return _giga(peak_ops_per_s("vpmaddwd", n, repeats))


def peak_fp32_gflops(n=1_000_000, repeats=3):
    """Measured float32 peak (vfmadd231ps), GFLOPS, one core."""
    return _giga(peak_ops_per_s("vfmadd231ps", n, repeats))


def peak_fp64_gflops(n=1_000_000, repeats=3):
    """Measured float64 peak (vfmadd231pd), GFLOPS, one core."""
    return _giga(peak_ops_per_s("vfmadd231pd", n, repeats))
