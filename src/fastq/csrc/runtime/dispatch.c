/* The one CPU detector, the one table of kernels per ISA and the backend switch. One binary
 * carries every path; FASTQ_BACKEND (scalar | avx2 | avx512vnni) or fq_set_backend forces one.
 *
 * Each ISA contributes its microkernels, its row sums, its conversions and the epilogue
 * variants it has SIMD code for; every other epilogue entry is the scalar function, so a
 * missing variant is a table entry, not a branch in a kernel. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "fastq.h"
#include "convert/convert.h"

/* per-ISA pieces (ukernel_*.c, epilogue_*.c) */
void fq_ukernel_scalar(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_scalar(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_scalar(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
#ifdef FQ_COMPILE_AVX2
void fq_ukernel_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_gemv_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_avx2(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx2(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
#define FQ_MR_AVX2 4
#endif
#ifdef FQ_COMPILE_AVX512
void fq_ukernel_avx512vnni(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_gemv_avx512vnni(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_avx512(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx512(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
#define FQ_MR_AVX512 6
#endif

static const char *names[FQ_BACKEND_COUNT] = {"scalar", "avx2", "avx512vnni"};

const char *fq_backend_name(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT ? names[backend] : "unknown";
}

/* ---- the CPU detector ---------------------------------------------------------------- */
int fq_cpu_supports(int feature) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves ymm / zmm state (xgetbv) */
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    switch (feature) {
    case FQ_CPU_AVX2_FMA: return avx2;
    case FQ_CPU_AVX512: return avx512;
    case FQ_CPU_AVX512VNNI: return avx512 && __builtin_cpu_supports("avx512vnni");
    default: return 0;
    }
#else
    (void)feature;
    return 0;
#endif
}

/* ---- the tables ------------------------------------------------------------------------ */
static fq_kernels tables[FQ_BACKEND_COUNT];
static int compiled[FQ_BACKEND_COUNT];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void build_tables(void) {
    fq_kernels *s = &tables[FQ_BACKEND_SCALAR];
    s->name = names[FQ_BACKEND_SCALAR];
    s->mr = 4;
    s->ukernel = s->gemv = fq_ukernel_scalar;
    s->row_sums = fq_row_sums_scalar;
    fq_epilogues_scalar(s->epilogue);
    s->convert = fq_convert_scalar();
    compiled[FQ_BACKEND_SCALAR] = 1;
#ifdef FQ_COMPILE_AVX2
    fq_kernels *a = &tables[FQ_BACKEND_AVX2];
    *a = *s;                                  /* scalar epilogues where AVX2 has none */
    a->name = names[FQ_BACKEND_AVX2];
    a->mr = FQ_MR_AVX2;
    a->ukernel = fq_ukernel_avx2;
    a->gemv = fq_gemv_avx2;
    a->row_sums = fq_row_sums_avx2;
    fq_epilogues_avx2(a->epilogue);
    a->convert = fq_convert_avx2();
    compiled[FQ_BACKEND_AVX2] = 1;
#endif
#ifdef FQ_COMPILE_AVX512
    fq_kernels *v = &tables[FQ_BACKEND_AVX512VNNI];
    *v = *s;
    v->name = names[FQ_BACKEND_AVX512VNNI];
    v->mr = FQ_MR_AVX512;
    v->ukernel = fq_ukernel_avx512vnni;
    v->gemv = fq_gemv_avx512vnni;
    v->row_sums = fq_row_sums_avx512;
    fq_epilogues_avx512(v->epilogue);
    v->convert = fq_convert_avx512();
    compiled[FQ_BACKEND_AVX512VNNI] = 1;
#endif
}

const fq_kernels *fq_kernels_for(int backend) {
    if (backend < 0 || backend >= FQ_BACKEND_COUNT) return NULL;
    pthread_once(&tables_once, build_tables);
    return compiled[backend] ? &tables[backend] : NULL;
}

static int cpu_runs_backend(int backend) {
    switch (backend) {
    case FQ_BACKEND_SCALAR: return 1;
    case FQ_BACKEND_AVX2: return fq_cpu_supports(FQ_CPU_AVX2_FMA);
    case FQ_BACKEND_AVX512VNNI: return fq_cpu_supports(FQ_CPU_AVX512VNNI);
    default: return 0;
    }
}

int fq_backend_supported(int backend) {
    return fq_kernels_for(backend) != NULL && cpu_runs_backend(backend);
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
