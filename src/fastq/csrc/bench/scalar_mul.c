/* Scalar multiplies in plain C: latency (one dependent chain) and throughput
 * (FQB_THROUGHPUT_CHAINS independent chains), for int8 ... float64.
 *
 * How the loops are kept honest (checked with
 *   python setup.py build_ext --inplace
 *   objdump -d --no-show-raw-insn src/fastq/_bench.cpython-3*.so   (functions fqb_mul_*)
 * with gcc 12 -O3):
 * - OPAQUE(x) after every multiply is an empty asm statement that "modifies" x: gcc can
 *   neither precompute the chain (x * m^n), nor drop it, nor turn independent chains into
 *   SIMD lanes; the loop bodies hold exactly one imul (integers) or one mulss/mulsd
 *   (floats) per C multiply, with no loads or stores between them.
 * - int16 / int32: C multiplies in int and truncates; gcc emits the 32-bit `imul r32, r32`
 *   (only the low bits matter), so int16 costs what int32 costs - which is the point: x86
 *   has no cheaper narrow scalar multiply. int64: `imul r64, r64`.
 * - int8: gcc 12 also emits `imul r32, r32`, but allocates every int8 product through
 *   %eax (its QImode multiply pattern is tied to the one-operand `imul r/m8`, which
 *   writes AL): `mov x,%eax; imul a,%eax; imul b,%eax; mov %eax,x` per chain. The latency
 *   is unchanged (the moves are renamed away), but throughput halves: int8 scalar code
 *   is, if anything, slower in C. We measure what the compiler makes of plain C.
 * - floats alternate x*2 and x*0.5 (exact), so values never reach denormals or infinity
 *   (which would take slow paths on some cores and measure the wrong thing).
 * The multiplier m is itself made opaque, so it is a register operand, not an immediate. */
#include "bench.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define OPAQUE_I(x) __asm__ volatile("" : "+r"(x))
#define OPAQUE_F(x) __asm__ volatile("" : "+x"(x))
#elif defined(__GNUC__) && defined(__aarch64__)
#define OPAQUE_I(x) __asm__ volatile("" : "+r"(x))
#define OPAQUE_F(x) __asm__ volatile("" : "+w"(x))
#elif defined(__GNUC__)
#define OPAQUE_I(x) __asm__ volatile("" : "+r"(x))
#define OPAQUE_F(x) __asm__ volatile("" : "+m"(x))
#else   /* a volatile round trip: slower, but the chain stays */
#define OPAQUE_I(x) do { volatile double v_ = (double)(x); (x) = v_; } while (0)
#define OPAQUE_F(x) OPAQUE_I(x)
#endif

/* One step of chain x: x = x * a; then x = x * b (two multiplies). */
#define STEP(T, OPQ, x, a, b) x = (T)(x * a); OPQ(x); x = (T)(x * b); OPQ(x);
#define STEP12(T, OPQ, a, b) \
    STEP(T, OPQ, x0, a, b) STEP(T, OPQ, x1, a, b) STEP(T, OPQ, x2, a, b) STEP(T, OPQ, x3, a, b) \
    STEP(T, OPQ, x4, a, b) STEP(T, OPQ, x5, a, b) STEP(T, OPQ, x6, a, b) STEP(T, OPQ, x7, a, b) \
    STEP(T, OPQ, x8, a, b) STEP(T, OPQ, x9, a, b) STEP(T, OPQ, x10, a, b) STEP(T, OPQ, x11, a, b)

/* Latency: n multiplies in one chain, 8 per loop iteration so the loop counter (which runs
 * beside the chain, not in it) costs nothing. Throughput: 12 chains x 2 per iteration. */
#define DEFINE_MUL(name, T, OPQ, A, B)                                                   \
    NOINLINE static double fqb_mul_##name##_latency(int64_t n) {                                  \
        T x = (T)1, a = (T)(A), b = (T)(B);                                              \
        OPQ(a); OPQ(b); OPQ(x);                                                          \
        int64_t iters = n / 8 > 0 ? n / 8 : 1;                                           \
        double t0 = fqb_now_ns();                                                        \
        for (int64_t i = 0; i < iters; i++) {                                            \
            STEP(T, OPQ, x, a, b) STEP(T, OPQ, x, a, b)                                  \
            STEP(T, OPQ, x, a, b) STEP(T, OPQ, x, a, b)                                  \
        }                                                                                \
        double t1 = fqb_now_ns();                                                        \
        OPQ(x);                                                                          \
        return (t1 - t0) * (double)n / (double)(iters * 8);                              \
    }                                                                                    \
    NOINLINE static double fqb_mul_##name##_throughput(int64_t n) {                               \
        T a = (T)(A), b = (T)(B);                                                        \
        T x0 = 1, x1 = 2, x2 = 3, x3 = 4, x4 = 5, x5 = 6, x6 = 7, x7 = 8, x8 = 9, x9 = 10, \
          x10 = 11, x11 = 12;                                                            \
        OPQ(a); OPQ(b);                                                                  \
        int64_t iters = n / 2 > 0 ? n / 2 : 1;                                           \
        double t0 = fqb_now_ns();                                                        \
        for (int64_t i = 0; i < iters; i++) {                                            \
            STEP12(T, OPQ, a, b)                                                         \
        }                                                                                \
        double t1 = fqb_now_ns();                                                        \
        OPQ(x0); OPQ(x1); OPQ(x2); OPQ(x3); OPQ(x4); OPQ(x5);                            \
        OPQ(x6); OPQ(x7); OPQ(x8); OPQ(x9); OPQ(x10); OPQ(x11);                          \
        return (t1 - t0) * (double)n / (double)(iters * 2);                              \
    }

/* Odd integer multipliers: the chain never collapses to zero. The chains wrap on purpose:
 * int32 / int64 run in the unsigned types of their width (the same imul instruction; a signed
 * overflow would be undefined behaviour), int8 / int16 are promoted to int, multiplied without
 * overflow and converted back (modulo 2^width). */
DEFINE_MUL(i8, int8_t, OPAQUE_I, 3, 5)
DEFINE_MUL(i16, int16_t, OPAQUE_I, 12345, 3)
DEFINE_MUL(i32, uint32_t, OPAQUE_I, 0x9E3779B1u, 3)
DEFINE_MUL(i64, uint64_t, OPAQUE_I, 0x9E3779B97F4A7C15ull, 3)
DEFINE_MUL(f32, float, OPAQUE_F, 2.0f, 0.5f)
DEFINE_MUL(f64, double, OPAQUE_F, 2.0, 0.5)

/* Returns ns for n multiplies per chain (n * chains multiplies in all). */
double fqb_scalar_mul_ns(int dtype, int chains, int64_t n) {
    if (n < 1) return -1.0;
    if (chains == 1) {
        switch (dtype) {
        case FQB_I8: return fqb_mul_i8_latency(n);
        case FQB_I16: return fqb_mul_i16_latency(n);
        case FQB_I32: return fqb_mul_i32_latency(n);
        case FQB_I64: return fqb_mul_i64_latency(n);
        case FQB_F32: return fqb_mul_f32_latency(n);
        case FQB_F64: return fqb_mul_f64_latency(n);
        default: return -1.0;
        }
    }
    if (chains == FQB_THROUGHPUT_CHAINS) {
        switch (dtype) {
        case FQB_I8: return fqb_mul_i8_throughput(n);
        case FQB_I16: return fqb_mul_i16_throughput(n);
        case FQB_I32: return fqb_mul_i32_throughput(n);
        case FQB_I64: return fqb_mul_i64_throughput(n);
        case FQB_F32: return fqb_mul_f32_throughput(n);
        case FQB_F64: return fqb_mul_f64_throughput(n);
        default: return -1.0;
        }
    }
    return -1.0;
}
