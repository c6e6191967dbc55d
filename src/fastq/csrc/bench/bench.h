/* fastq._bench: what one multiply costs on this CPU, measured in C.
 *
 * Every function runs a fixed number of loop iterations and returns the elapsed
 * steady-clock time in nanoseconds (a double); the caller divides by the operation count.
 * Cycles are never read from the TSC (on most CPUs it ticks at a fixed reference rate,
 * not the core clock, and under a hypervisor it says even less): the core clock is
 * estimated from a dependent chain of integer adds, which retire one per core cycle. */
#ifndef FASTQ_BENCH_H
#define FASTQ_BENCH_H

#include <stdint.h>

/* Each timed loop is its own symbol, so `objdump -d` shows it by name. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* A monotonic clock in nanoseconds. */
double fqb_now_ns(void);

/* A dependent chain of n 1-cycle integer adds: ns per add = ns per core cycle. */
double fqb_add_chain_ns(int64_t n);

/* Scalar multiplies. dtype: FQB_I8 ... FQB_F64; chains: 1 (latency: each multiply waits
 * for the previous one) or FQB_THROUGHPUT_CHAINS independent chains (throughput).
 * Runs n iterations of every chain: n * chains multiplies in all. Returns -1 for a bad
 * dtype or chain count. */
enum { FQB_I8, FQB_I16, FQB_I32, FQB_I64, FQB_F32, FQB_F64, FQB_DTYPE_COUNT };
#define FQB_THROUGHPUT_CHAINS 12
double fqb_scalar_mul_ns(int dtype, int chains, int64_t n);

/* SIMD multiply(-accumulate) throughput: independent accumulators (16 zmm, 12 ymm),
 * n iterations, each iteration one instruction per accumulator. */
enum { FQB_VPDPBUSD, FQB_VPMADDWD, FQB_VPMULLD, FQB_VFMADD231PS, FQB_VFMADD231PD, FQB_INSTR_COUNT };
int fqb_simd_chains(int bits);
/* Whether this CPU and OS run instr at this vector width (256 or 512 bits) and this
 * build compiled it in. */
int fqb_simd_supported(int instr, int bits);
/* Returns elapsed ns, or -1 where unsupported. */
double fqb_simd_ns(int instr, int bits, int64_t n);
/* Multiplies one instruction performs at this width (vpdpbusd zmm: 64). */
int fqb_simd_products(int instr, int bits);

/* Per ISA file: the loops (called only when supported). */
double fqb_simd_ns_avx2(int instr, int64_t n);
double fqb_simd_ns_avx512(int instr, int64_t n);
double fqb_vpdpbusd_ymm_evex_ns(int64_t n);   /* 12 ymm chains, AVX512-VNNI + VL */
int fqb_compiled_avx2(void);
int fqb_compiled_avx512(void);

#endif
