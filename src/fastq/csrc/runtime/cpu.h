/* The one CPU detector: CPUID feature bits and the OS enablement they need (XCR0 via XGETBV:
 * the OS saves ymm / zmm / tile state on context switches, else the registers are unusable;
 * for AMX also the per-process permission Linux grants through arch_prctl). The backend table
 * (runtime/backends.c) names a backend's needs as a mask of these bits. */
#ifndef FASTQ_RUNTIME_CPU_H
#define FASTQ_RUNTIME_CPU_H
#include <stdint.h>

typedef enum {
    FQ_FEAT_AVX2 = 1u << 0,          /* CPUID.7.0:EBX[5] */
    FQ_FEAT_FMA = 1u << 1,           /* CPUID.1:ECX[12] */
    FQ_FEAT_AVX512F = 1u << 2,       /* CPUID.7.0:EBX[16] */
    FQ_FEAT_AVX512BW = 1u << 3,      /* CPUID.7.0:EBX[30] */
    FQ_FEAT_AVX512VL = 1u << 4,      /* CPUID.7.0:EBX[31] */
    FQ_FEAT_AVX512VNNI = 1u << 5,    /* CPUID.7.0:ECX[11] */
    FQ_FEAT_AMX_TILE = 1u << 6,      /* CPUID.7.0:EDX[24] */
    FQ_FEAT_AMX_INT8 = 1u << 7,      /* CPUID.7.0:EDX[25] */
    FQ_FEAT_OS_YMM = 1u << 8,        /* OSXSAVE and XCR0 bits 1, 2 (SSE, AVX state) */
    FQ_FEAT_OS_ZMM = 1u << 9,        /* the above and XCR0 bits 5, 6, 7 (opmask, zmm0-15 high, zmm16-31) */
    FQ_FEAT_OS_AMX = 1u << 10,       /* XCR0 bits 17, 18 (XTILECFG, XTILEDATA) */
    FQ_FEAT_AMX_PERMITTED = 1u << 11 /* Linux granted XTILEDATA to this process (asked for lazily:
                                        only a backend needing it triggers the request) */
} fq_cpu_feature_bit;
#define FQ_FEAT_COUNT 12

/* The bits of mask this CPU and OS provide (== mask: all of them). Asking for
 * FQ_FEAT_AMX_PERMITTED requests the permission once per process (fq_cpu_amx_permitted). */
uint32_t fq_cpu_has(uint32_t mask);
/* Every bit but FQ_FEAT_AMX_PERMITTED (detecting never changes the process). */
uint32_t fq_cpu_features(void);
/* Once per process, when CPUID reports AMX-TILE and XCR0 enables the tile state:
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), confirmed with ARCH_GET_XCOMP_PERM.
 * 1 when the process may use the tile registers; 0 otherwise (never a crash). */
int fq_cpu_amx_permitted(void);
const char *fq_cpu_feature_name(int bit_index);   /* "avx2", ..., NULL past the last */

#endif
