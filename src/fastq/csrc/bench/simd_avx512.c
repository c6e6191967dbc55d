/* SIMD multiply(-accumulate) throughput at 512 bits (zmm, EVEX).
 *
 * 16 independent accumulators, one instruction each per loop iteration: enough to cover
 * latency x throughput of every instruction here on current x86 (e.g. 4-5 cycles x 2 per
 * cycle), so the loop runs at the issue rate of the multiplier ports. The operands are
 * opaque registers (empty asm), the accumulators are live after the loop: gcc -O3 keeps
 * exactly one vpdpbusd / vpmaddwd / vpmulld / vfmadd231ps / vfmadd231pd per accumulator
 * per iteration, all in registers (checked with objdump -d, functions avx512_*). */
#include "bench.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>

#define OPAQUE_V(x) __asm__ volatile("" : "+v"(x))
#define ACC_DECL(T, init) T c0 = init, c1 = init, c2 = init, c3 = init, c4 = init, c5 = init, \
    c6 = init, c7 = init, c8 = init, c9 = init, c10 = init, c11 = init, c12 = init, c13 = init, \
    c14 = init, c15 = init;
#define ACC_APPLY(F) F(c0) F(c1) F(c2) F(c3) F(c4) F(c5) F(c6) F(c7) F(c8) F(c9) F(c10) F(c11) \
    F(c12) F(c13) F(c14) F(c15)
#define KEEP(c) OPAQUE_V(c);
#define CHAINS 16

/* BODY(c) is one instruction updating accumulator c. */
#define DEFINE_LOOP(name, T, init, BODY)                          \
    NOINLINE static double avx512_##name(int64_t n, T a, T b) {            \
        ACC_DECL(T, init)                                         \
        OPAQUE_V(a); OPAQUE_V(b);                                 \
        ACC_APPLY(KEEP)                                           \
        double t0 = fqb_now_ns();                                 \
        for (int64_t i = 0; i < n; i++) { ACC_APPLY(BODY) }       \
        double t1 = fqb_now_ns();                                 \
        ACC_APPLY(KEEP)                                           \
        return t1 - t0;                                           \
    }

#define DPBUSD(c) c = _mm512_dpbusd_epi32(c, a, b);
#define MADDWD(c) c = _mm512_madd_epi16(c, b);
#define MULLD(c) c = _mm512_mullo_epi32(c, b);
#define FMAPS(c) c = _mm512_fmadd_ps(a, b, c);
#define FMAPD(c) c = _mm512_fmadd_pd(a, b, c);

DEFINE_LOOP(vpdpbusd, __m512i, _mm512_set1_epi32(1), DPBUSD)
DEFINE_LOOP(vpmaddwd, __m512i, _mm512_set1_epi32(0x00030001), MADDWD)
DEFINE_LOOP(vpmulld, __m512i, _mm512_set1_epi32(7), MULLD)
DEFINE_LOOP(vfmadd231ps, __m512, _mm512_set1_ps(1.0f), FMAPS)
DEFINE_LOOP(vfmadd231pd, __m512d, _mm512_set1_pd(1.0), FMAPD)

/* 256-bit vpdpbusd in EVEX form (AVX512-VNNI + VL), for CPUs without AVX-VNNI (VEX). */
NOINLINE static double avx512_vpdpbusd_ymm(int64_t n, __m256i a, __m256i b) {
    __m256i c0 = _mm256_set1_epi32(1), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
            c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    OPAQUE_V(a); OPAQUE_V(b);
    OPAQUE_V(c0); OPAQUE_V(c1); OPAQUE_V(c2); OPAQUE_V(c3); OPAQUE_V(c4); OPAQUE_V(c5);
    OPAQUE_V(c6); OPAQUE_V(c7); OPAQUE_V(c8); OPAQUE_V(c9); OPAQUE_V(c10); OPAQUE_V(c11);
    double t0 = fqb_now_ns();
    for (int64_t i = 0; i < n; i++) {
        c0 = _mm256_dpbusd_epi32(c0, a, b); c1 = _mm256_dpbusd_epi32(c1, a, b);
        c2 = _mm256_dpbusd_epi32(c2, a, b); c3 = _mm256_dpbusd_epi32(c3, a, b);
        c4 = _mm256_dpbusd_epi32(c4, a, b); c5 = _mm256_dpbusd_epi32(c5, a, b);
        c6 = _mm256_dpbusd_epi32(c6, a, b); c7 = _mm256_dpbusd_epi32(c7, a, b);
        c8 = _mm256_dpbusd_epi32(c8, a, b); c9 = _mm256_dpbusd_epi32(c9, a, b);
        c10 = _mm256_dpbusd_epi32(c10, a, b); c11 = _mm256_dpbusd_epi32(c11, a, b);
    }
    double t1 = fqb_now_ns();
    OPAQUE_V(c0); OPAQUE_V(c1); OPAQUE_V(c2); OPAQUE_V(c3); OPAQUE_V(c4); OPAQUE_V(c5);
    OPAQUE_V(c6); OPAQUE_V(c7); OPAQUE_V(c8); OPAQUE_V(c9); OPAQUE_V(c10); OPAQUE_V(c11);
    return t1 - t0;
}

double fqb_vpdpbusd_ymm_evex_ns(int64_t n) {
    return avx512_vpdpbusd_ymm(n, _mm256_set1_epi8(3), _mm256_set1_epi8(-5));
}

int fqb_compiled_avx512(void) { return 1; }

double fqb_simd_ns_avx512(int instr, int64_t n) {
    /* acc grows by a*b per step: tiny float products keep it finite and normal. */
    switch (instr) {
    case FQB_VPDPBUSD: return avx512_vpdpbusd(n, _mm512_set1_epi8(3), _mm512_set1_epi8(-5));
    case FQB_VPMADDWD: return avx512_vpmaddwd(n, _mm512_set1_epi16(3), _mm512_set1_epi16(5));
    case FQB_VPMULLD: return avx512_vpmulld(n, _mm512_set1_epi32(3), _mm512_set1_epi32(0x9E3779B1));
    case FQB_VFMADD231PS: return avx512_vfmadd231ps(n, _mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    case FQB_VFMADD231PD: return avx512_vfmadd231pd(n, _mm512_set1_pd(1e-3), _mm512_set1_pd(1e-3));
    default: return -1.0;
    }
}
#else
int fqb_compiled_avx512(void) { return 0; }
double fqb_simd_ns_avx512(int instr, int64_t n) { (void)instr; (void)n; return -1.0; }
double fqb_vpdpbusd_ymm_evex_ns(int64_t n) { (void)n; return -1.0; }
#endif
