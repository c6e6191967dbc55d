/* CPU feature detection (once) and the backend switch. One binary carries every path;
 * FASTQ_BACKEND (scalar | avx2 | avx512vnni) or fq_set_backend forces one. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "fastq.h"

extern void fq_ukernel_scalar(int32_t, int32_t, const uint8_t *, ptrdiff_t, const int8_t *, int32_t, int32_t *);
extern void fq_epilogue_scalar(int32_t, int32_t, const int32_t *, const int32_t *, int32_t,
                               const fq_epilogue *, void *, ptrdiff_t);
extern void fq_row_sums_scalar(const uint8_t *, ptrdiff_t, int32_t, int32_t, int32_t *);
extern const fq_kernels *fq_kernels_avx2(void);        /* NULL when not compiled in */
extern const fq_kernels *fq_kernels_avx512vnni(void);

static const fq_kernels scalar_kernels = {
    "scalar", 4, fq_ukernel_scalar, fq_ukernel_scalar, fq_epilogue_scalar, fq_row_sums_scalar,
};

static const char *names[FQ_BACKEND_COUNT] = {"scalar", "avx2", "avx512vnni"};

const char *fq_backend_name(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT ? names[backend] : "unknown";
}

const fq_kernels *fq_kernels_for(int backend) {
    switch (backend) {
    case FQ_BACKEND_SCALAR: return &scalar_kernels;
    case FQ_BACKEND_AVX2: return fq_kernels_avx2();
    case FQ_BACKEND_AVX512VNNI: return fq_kernels_avx512vnni();
    default: return NULL;
    }
}

static int cpu_has(int backend) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    switch (backend) {
    case FQ_BACKEND_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FQ_BACKEND_AVX512VNNI:
        /* __builtin_cpu_supports checks the OS saves zmm state (xgetbv) as well */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    default:
        return backend == FQ_BACKEND_SCALAR;
    }
#else
    return backend == FQ_BACKEND_SCALAR;
#endif
}

int fq_backend_supported(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT && fq_kernels_for(backend) != NULL &&
           cpu_has(backend);
}

int fq_best_backend(void) {
    for (int b = FQ_BACKEND_COUNT - 1; b > 0; b--)
        if (fq_backend_supported(b)) return b;
    return FQ_BACKEND_SCALAR;
}

static atomic_int current_backend = -1;

int fq_get_backend(void) {
    int b = atomic_load(&current_backend);
    if (b < 0) {
        b = fq_best_backend();
        const char *env = getenv("FASTQ_BACKEND");
        if (env && *env) {
            for (int i = 0; i < FQ_BACKEND_COUNT; i++)
                if (strcmp(env, names[i]) == 0 && fq_backend_supported(i)) b = i;
        }
        atomic_store(&current_backend, b);
    }
    return b;
}

int fq_set_backend(int backend) {
    if (!fq_backend_supported(backend)) return -1;
    atomic_store(&current_backend, backend);
    return 0;
}
