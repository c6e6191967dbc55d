/* SIMD multiply(-accumulate) throughput at 256 bits (ymm, VEX: AVX2, FMA, AVX-VNNI).
 *
 * 12 independent accumulators (VEX code has 16 ymm registers: 12 + 2 operands fit),
 * one instruction each per loop iteration; operands opaque, accumulators live after the
 * loop, so gcc -O3 keeps one multiply instruction per accumulator per iteration, in
 * registers (checked with objdump -d, functions avx2_*). */
#include "bench.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#define OPAQUE_V(x) __asm__ volatile("" : "+x"(x))
#define ACC_DECL(T, init) T c0 = init, c1 = init, c2 = init, c3 = init, c4 = init, c5 = init, \
    c6 = init, c7 = init, c8 = init, c9 = init, c10 = init, c11 = init;
#define ACC_APPLY(F) F(c0) F(c1) F(c2) F(c3) F(c4) F(c5) F(c6) F(c7) F(c8) F(c9) F(c10) F(c11)
#define KEEP(c) OPAQUE_V(c);

#define DEFINE_LOOP(attr, name, T, init, BODY)                    \
    attr NOINLINE static double avx2_##name(int64_t n, T a, T b) {         \
        ACC_DECL(T, init)                                         \
        OPAQUE_V(a); OPAQUE_V(b);                                 \
        ACC_APPLY(KEEP)                                           \
        double t0 = fqb_now_ns();                                 \
        for (int64_t i = 0; i < n; i++) { ACC_APPLY(BODY) }       \
        double t1 = fqb_now_ns();                                 \
        ACC_APPLY(KEEP)                                           \
        return t1 - t0;                                           \
    }

#define MADDWD(c) c = _mm256_madd_epi16(c, b);
#define MULLD(c) c = _mm256_mullo_epi32(c, b);
#define FMAPS(c) c = _mm256_fmadd_ps(a, b, c);
#define FMAPD(c) c = _mm256_fmadd_pd(a, b, c);

DEFINE_LOOP(, vpmaddwd, __m256i, _mm256_set1_epi32(0x00030001), MADDWD)
DEFINE_LOOP(, vpmulld, __m256i, _mm256_set1_epi32(7), MULLD)
DEFINE_LOOP(, vfmadd231ps, __m256, _mm256_set1_ps(1.0f), FMAPS)
DEFINE_LOOP(, vfmadd231pd, __m256d, _mm256_set1_pd(1.0), FMAPD)

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define HAVE_AVXVNNI 1
/* VEX-encoded vpdpbusd (AVX-VNNI): the ymm form that needs no AVX-512. */
#define DPBUSD(c) c = _mm256_dpbusd_avx_epi32(c, a, b);
DEFINE_LOOP(__attribute__((target("avx2,avxvnni"))), vpdpbusd, __m256i, _mm256_set1_epi32(1), DPBUSD)
#endif

int fqb_compiled_avx2(void) { return 1; }

int fqb_compiled_avxvnni(void) {
#ifdef HAVE_AVXVNNI
    return 1;
#else
    return 0;
#endif
}

double fqb_simd_ns_avx2(int instr, int64_t n) {
    switch (instr) {
#ifdef HAVE_AVXVNNI
    case FQB_VPDPBUSD: return avx2_vpdpbusd(n, _mm256_set1_epi8(3), _mm256_set1_epi8(-5));
#endif
    case FQB_VPMADDWD: return avx2_vpmaddwd(n, _mm256_set1_epi16(3), _mm256_set1_epi16(5));
    case FQB_VPMULLD: return avx2_vpmulld(n, _mm256_set1_epi32(3), _mm256_set1_epi32(0x9E3779B1));
    case FQB_VFMADD231PS: return avx2_vfmadd231ps(n, _mm256_set1_ps(1e-3f), _mm256_set1_ps(1e-3f));
    case FQB_VFMADD231PD: return avx2_vfmadd231pd(n, _mm256_set1_pd(1e-3), _mm256_set1_pd(1e-3));
    default: return -1.0;
    }
}
#else
int fqb_compiled_avx2(void) { return 0; }
int fqb_compiled_avxvnni(void) { return 0; }
double fqb_simd_ns_avx2(int instr, int64_t n) { (void)instr; (void)n; return -1.0; }
#endif
