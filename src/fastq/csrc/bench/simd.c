/* Which SIMD multiply benchmarks this CPU runs (run-time detection), and dispatch. */
#include "bench.h"

int fqb_compiled_avxvnni(void);

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
/* ymm vpdpbusd comes in two encodings: VEX (AVX-VNNI) or EVEX (AVX512-VNNI + VL). */
static int use_vex_vnni(void) {
    __builtin_cpu_init();
    return fqb_compiled_avxvnni() && __builtin_cpu_supports("avxvnni");
}
static int use_evex_vnni_ymm(void) {
    __builtin_cpu_init();
    return fqb_compiled_avx512() && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512vl");
}
#endif

static int cpu_has(int instr, int bits) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    /* __builtin_cpu_supports also checks that the OS saves ymm/zmm state (xgetbv). */
    __builtin_cpu_init();
    if (bits == 512) {
        if (!fqb_compiled_avx512() || !__builtin_cpu_supports("avx512f")) return 0;
        switch (instr) {
        case FQB_VPDPBUSD: return __builtin_cpu_supports("avx512vnni");
        case FQB_VPMADDWD: return __builtin_cpu_supports("avx512bw");
        default: return 1;
        }
    }
    if (bits == 256) {
        if (!fqb_compiled_avx2() || !__builtin_cpu_supports("avx2")) return 0;
        switch (instr) {
        case FQB_VPDPBUSD: return use_vex_vnni() || use_evex_vnni_ymm();
        case FQB_VFMADD231PS: case FQB_VFMADD231PD: return __builtin_cpu_supports("fma");
        default: return 1;
        }
    }
    return 0;
#else
    (void)instr; (void)bits;
    return 0;
#endif
}

int fqb_simd_supported(int instr, int bits) {
    if (instr < 0 || instr >= FQB_INSTR_COUNT) return 0;
    return cpu_has(instr, bits);
}

int fqb_simd_products(int instr, int bits) {
    int lanes32 = bits / 32;   /* 32-bit lanes */
    switch (instr) {
    case FQB_VPDPBUSD: return lanes32 * 4;     /* 4 u8 x s8 products per int32 lane */
    case FQB_VPMADDWD: return lanes32 * 2;     /* 2 s16 x s16 products per int32 lane */
    case FQB_VPMULLD: return lanes32;
    case FQB_VFMADD231PS: return lanes32;
    case FQB_VFMADD231PD: return bits / 64;
    default: return 0;
    }
}

double fqb_simd_ns(int instr, int bits, int64_t n) {
    if (n < 1 || !fqb_simd_supported(instr, bits)) return -1.0;
    if (bits == 512) return fqb_simd_ns_avx512(instr, n);
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    if (instr == FQB_VPDPBUSD && !use_vex_vnni()) return fqb_vpdpbusd_ymm_evex_ns(n);
#endif
    return fqb_simd_ns_avx2(instr, n);
}

int fqb_simd_chains(int bits) { return bits == 512 ? 16 : 12; }
