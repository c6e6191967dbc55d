/* CPUID + XGETBV feature detection and the AMX permission request (runtime/cpu.h). Done by
 * hand rather than with __builtin_cpu_supports, which knows neither the tile state in XCR0
 * nor the Linux permission step. */
#include <pthread.h>
#include "runtime/cpu.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FQ_X86 1
#include <cpuid.h>
#endif
#if defined(FQ_X86) && defined(__linux__) && defined(__x86_64__)
#define FQ_LINUX_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#define FQ_ARCH_GET_XCOMP_PERM 0x1022     /* <asm/prctl.h>, Linux 5.16+ */
#define FQ_ARCH_REQ_XCOMP_PERM 0x1023
#define FQ_XFEATURE_XTILEDATA 18
#endif

static const char *feature_names[FQ_FEAT_COUNT] = {
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "amx_tile", "amx_int8",
    "os_ymm", "os_zmm", "os_amx", "amx_permitted",
};

const char *fq_cpu_feature_name(int bit_index) {
    return bit_index >= 0 && bit_index < FQ_FEAT_COUNT ? feature_names[bit_index] : NULL;
}

#ifdef FQ_X86
/* XCR0; only called when CPUID.1:ECX.OSXSAVE says XGETBV exists (else it faults). */
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static uint32_t detected;
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    uint32_t f = 0;
#ifdef FQ_X86
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
        if ((c >> 12) & 1) f |= FQ_FEAT_FMA;
        uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        if (avx && (xcr0 & 0x6) == 0x6) f |= FQ_FEAT_OS_YMM;
        if ((f & FQ_FEAT_OS_YMM) && (xcr0 & 0xe0) == 0xe0) f |= FQ_FEAT_OS_ZMM;
        if ((xcr0 & 0x60000) == 0x60000) f |= FQ_FEAT_OS_AMX;
    }
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b >> 5) & 1) f |= FQ_FEAT_AVX2;
        if ((b >> 16) & 1) f |= FQ_FEAT_AVX512F;
        if ((b >> 30) & 1) f |= FQ_FEAT_AVX512BW;
        if ((b >> 31) & 1) f |= FQ_FEAT_AVX512VL;
        if ((c >> 11) & 1) f |= FQ_FEAT_AVX512VNNI;
        if ((d >> 24) & 1) f |= FQ_FEAT_AMX_TILE;
        if ((d >> 25) & 1) f |= FQ_FEAT_AMX_INT8;
    }
#endif
    detected = f;
}

uint32_t fq_cpu_features(void) {
    pthread_once(&detect_once, detect);
    return detected;
}

static int amx_permitted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void request_amx(void) {
#ifdef FQ_LINUX_AMX
    uint32_t need = FQ_FEAT_AMX_TILE | FQ_FEAT_OS_AMX;
    if ((fq_cpu_features() & need) != need) return;
    /* an old kernel answers EINVAL: no permission, the backend stays away */
    if (syscall(SYS_arch_prctl, FQ_ARCH_REQ_XCOMP_PERM, FQ_XFEATURE_XTILEDATA) != 0) return;
    unsigned long granted = 0;
    if (syscall(SYS_arch_prctl, FQ_ARCH_GET_XCOMP_PERM, &granted) != 0) return;
    amx_permitted = (granted >> FQ_XFEATURE_XTILEDATA) & 1;
#endif
}

int fq_cpu_amx_permitted(void) {
    pthread_once(&amx_once, request_amx);
    return amx_permitted;
}

uint32_t fq_cpu_has(uint32_t mask) {
    uint32_t have = fq_cpu_features();
    if ((mask & FQ_FEAT_AMX_PERMITTED) && fq_cpu_amx_permitted()) have |= FQ_FEAT_AMX_PERMITTED;
    return have & mask;
}
