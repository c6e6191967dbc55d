/* The backend table: every kernel of every family is looked up here (ruy's Path with
 * inherited kernels; XNNPACK's per-family configs). One binary carries every ISA path;
 * FASTQ_BACKEND (a name below) or fq_set_backend picks one for all families at once.
 *
 * A backend's kernels are its parent's with what its fill function overrides: a family (or an
 * epilogue variant) an ISA has no code for is an inherited table entry, not a branch in a
 * kernel. The table records which backend supplied each family, so a call can count the run
 * under the kernels that really ran (the covered-paths check of the tests). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "fastq.h"
#include "runtime/cpu.h"
#include "gemm/kernels.h"
#include "convert/convert.h"
#include "elementwise/elementwise.h"
#include "fixedpoint/fixedpoint.h"
#include "conv/conv.h"
#include "pool/pool.h"

typedef struct {
    const char *name;
    int parent;                                 /* -1: the root */
    uint32_t features;                          /* FQ_FEAT_* the backend needs (its own; the
                                                   parent's are checked through the parent) */
    uint32_t family_features[FQ_FAMILY_COUNT];  /* what its own kernels of a family need when
                                                   less than features; 0: features */
    void (*fill)(fq_kernels *k);                /* NULL: not compiled in */
} backend_desc;

/* ---- fill functions: each sets the kernels its ISA has ---------------------------------- */
static void fill_scalar(fq_kernels *k) {
    for (int w = 0; w < FQ_NR_WIDTHS; w++) {     /* one kernel for every panel width */
        k->mr[w] = 4;
        k->ukernel[w] = fq_ukernel_scalar;
    }
    k->gemv = fq_ukernel_scalar;
    k->row_sums = fq_row_sums_scalar;
    fq_epilogues_scalar(k->epilogue);
    fq_fused_scalar(k->fused);
    k->pack = fq_pack_panels_scalar;
    k->convert = fq_convert_scalar();
    k->elementwise = fq_elementwise_scalar();
    k->multiply_by_quantized_multiplier = fq_mbqm_array_scalar;
    k->conv = fq_conv_kernels_scalar();
    k->pool = fq_pool_kernels_scalar();
}

#ifdef FQ_COMPILE_AVX2
static void fill_avx2(fq_kernels *k) {
    for (int w = 0; w < FQ_NR_WIDTHS; w++) {     /* column blocks of 8: any panel width */
        k->mr[w] = FQ_MR_AVX2;
        k->ukernel[w] = fq_ukernel_avx2;
    }
    k->gemv = fq_gemv_avx2;
    k->row_sums = fq_row_sums_avx2;
    fq_epilogues_avx2(k->epilogue);
    fq_fused_avx2(k->fused);
    k->pack = fq_pack_panels_avx2;
    k->convert = fq_convert_avx2();
    k->elementwise = fq_elementwise_avx2();
    k->conv = fq_conv_kernels_avx2();
    k->pool = fq_pool_kernels_avx2();
}
#define FILL_AVX2 fill_avx2
#else
#define FILL_AVX2 NULL
#endif

#ifdef FQ_COMPILE_AVX512
/* Packing stays AVX2's: a zmm packer (64 rows x 64 bytes a step) measured 1.5x slower on
 * 4096 x 4096, as 64 rows 4 KiB apart thrash one L1 set. Mul stays AVX2's, and so does
 * pooling (memory bound); the add (float requantization, compute bound) takes 16 lanes. */
static void fill_avx512vnni(fq_kernels *k) {
    /* one kernel per panel width, each with as many rows as its accumulators allow */
    k->mr[0] = FQ_MR_AVX512_W16;
    k->ukernel[0] = fq_ukernel_avx512vnni_w16;
    k->mr[1] = FQ_MR_AVX512_W32;
    k->ukernel[1] = fq_ukernel_avx512vnni_w32;
    k->mr[2] = FQ_MR_AVX512_W48;
    k->ukernel[2] = fq_ukernel_avx512vnni_w48;
    k->mr[3] = FQ_MR_AVX512_W64;
    k->ukernel[3] = fq_ukernel_avx512vnni_w64;
    k->gemv = fq_gemv_avx512vnni;
    k->row_sums = fq_row_sums_avx512;
    fq_epilogues_avx512(k->epilogue);
    fq_fused_avx512vnni(k->fused);                /* the epilogue on the accumulators in registers */
    fq_fused_runs_avx512vnni(k->fused_runs);      /* the same over runs of K (conv/clip.c) */
    k->convert = fq_convert_avx512();
    k->conv = fq_conv_kernels_avx512vnni();     /* vpdpwssd tap pairs: needs VNNI */
    k->elementwise = fq_elementwise_avx512();
}
#define FILL_AVX512VNNI fill_avx512vnni
#else
#define FILL_AVX512VNNI NULL
#endif

#define FEAT_AVX2 (FQ_FEAT_AVX2 | FQ_FEAT_FMA | FQ_FEAT_OS_YMM)
#define FEAT_AVX512 (FQ_FEAT_AVX512F | FQ_FEAT_AVX512BW | FQ_FEAT_AVX512VL | FQ_FEAT_OS_ZMM)

static const backend_desc table[FQ_BACKEND_COUNT] = {
    [FQ_BACKEND_SCALAR] = {"scalar", -1, 0, {0}, fill_scalar},
    [FQ_BACKEND_AVX2] = {"avx2", FQ_BACKEND_SCALAR, FEAT_AVX2, {0}, FILL_AVX2},
    [FQ_BACKEND_AVX512VNNI] = {"avx512vnni", FQ_BACKEND_AVX2, FEAT_AVX512 | FQ_FEAT_AVX512VNNI,
                               {[FQ_FAMILY_CONVERT] = FEAT_AVX512}, FILL_AVX512VNNI},
    /* [FQ_BACKEND_AMX] = {"amx", FQ_BACKEND_AVX512VNNI, FQ_FEAT_AMX_TILE | FQ_FEAT_AMX_INT8 |
     *                     FQ_FEAT_OS_AMX | FQ_FEAT_AMX_PERMITTED, {0}, FILL_AMX}, */
};

static const char *family_names[FQ_FAMILY_COUNT] = {
    "gemm", "epilogue", "pack", "convert", "elementwise", "fixedpoint", "conv", "pool", "gemm_fused",
};

const char *fq_backend_name(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT ? table[backend].name : "unknown";
}

const char *fq_family_name(int family) {
    return family >= 0 && family < FQ_FAMILY_COUNT ? family_names[family] : "unknown";
}

int fq_backend_parent(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT ? table[backend].parent : -1;
}

uint32_t fq_backend_features(int backend) {
    return backend >= 0 && backend < FQ_BACKEND_COUNT ? table[backend].features : 0;
}

/* ---- resolution: parent's kernels, then the fill function's --------------------------------- */
static fq_kernels resolved[FQ_BACKEND_COUNT];
static int compiled[FQ_BACKEND_COUNT];
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;

static int family_differs(const fq_kernels *a, const fq_kernels *b, int family) {
    switch (family) {
    case FQ_FAMILY_GEMM:
        return memcmp(a->mr, b->mr, sizeof(a->mr)) != 0 || memcmp(a->ukernel, b->ukernel, sizeof(a->ukernel)) != 0 ||
               a->gemv != b->gemv || a->row_sums != b->row_sums;
    case FQ_FAMILY_EPILOGUE: return memcmp(a->epilogue, b->epilogue, sizeof(a->epilogue)) != 0;
    case FQ_FAMILY_PACK: return a->pack != b->pack;
    case FQ_FAMILY_CONVERT: return a->convert != b->convert;
    case FQ_FAMILY_ELEMENTWISE: return a->elementwise != b->elementwise;
    case FQ_FAMILY_FIXEDPOINT: return a->multiply_by_quantized_multiplier != b->multiply_by_quantized_multiplier;
    case FQ_FAMILY_CONV: return a->conv != b->conv;
    case FQ_FAMILY_POOL: return a->pool != b->pool;
    case FQ_FAMILY_GEMM_FUSED:
        return memcmp(a->fused, b->fused, sizeof(a->fused)) != 0 ||
               memcmp(a->fused_runs, b->fused_runs, sizeof(a->fused_runs)) != 0;
    default: return 0;
    }
}

/* every kernel present and the tile within the driver's bounds */
static int complete(const fq_kernels *k) {
    if (!k->gemv || !k->row_sums || !k->pack || !k->convert || !k->elementwise ||
        !k->multiply_by_quantized_multiplier || !k->conv || !k->pool)
        return 0;
    for (int w = 0; w < FQ_NR_WIDTHS; w++)
        if (k->mr[w] < 1 || k->mr[w] > FQ_MR_MAX || !k->ukernel[w]) return 0;
    for (int v = 0; v < FQ_EPV_COUNT; v++)
        if (!k->epilogue[v][0] || !k->epilogue[v][1]) return 0;
    return 1;
}

static void resolve(void) {
    for (int b = 0; b < FQ_BACKEND_COUNT; b++) {
        const backend_desc *d = &table[b];
        int p = d->parent;
        /* a parent comes first in the table, so it is resolved already */
        if (!d->fill || (p >= 0 && (p >= b || !compiled[p]))) continue;
        fq_kernels *k = &resolved[b];
        fq_kernels before;
        memset(&before, 0, sizeof(before));
        if (p >= 0) before = resolved[p];
        *k = before;
        d->fill(k);
        k->name = d->name;
        for (int f = 0; f < FQ_FAMILY_COUNT; f++)
            if (p < 0 || family_differs(&before, k, f)) k->owner[f] = (int8_t)b;
        for (int v = 0; v < FQ_EPV_COUNT; v++)
            for (int s = 0; s < 2; s++)
                if (p < 0 || k->epilogue[v][s] != before.epilogue[v][s]) k->epilogue_owner[v][s] = (int8_t)b;
        compiled[b] = complete(k);
    }
}

const fq_kernels *fq_kernels_for(int backend) {
    if (backend < 0 || backend >= FQ_BACKEND_COUNT) return NULL;
    pthread_once(&resolve_once, resolve);
    return compiled[backend] ? &resolved[backend] : NULL;
}

int fq_backend_compiled(int backend) { return fq_kernels_for(backend) != NULL; }

int fq_backend_supported(int backend) {
    if (!fq_kernels_for(backend)) return 0;
    int p = table[backend].parent;
    return fq_cpu_has(table[backend].features) == table[backend].features &&
           (p < 0 || fq_backend_supported(p));
}

int fq_family_owner(int backend, int family) {
    const fq_kernels *k = fq_kernels_for(backend);
    return k && family >= 0 && family < FQ_FAMILY_COUNT ? k->owner[family] : -1;
}

int fq_family_supported(int backend, int family) {
    int owner = fq_family_owner(backend, family);
    if (owner < 0) return 0;
    if (fq_backend_supported(backend)) return 1;
    /* the backend as a whole cannot run here: its family may still (what the owner's kernels
     * of that family need, and the owner's ancestors) */
    uint32_t need = table[owner].family_features[family] ? table[owner].family_features[family]
                                                         : table[owner].features;
    int p = table[owner].parent;
    return fq_cpu_has(need) == need && (p < 0 || fq_backend_supported(p));
}

int fq_best_backend(void) {
    for (int b = FQ_BACKEND_COUNT - 1; b > 0; b--)
        if (fq_backend_supported(b)) return b;
    return FQ_BACKEND_SCALAR;
}

/* ---- the current backend ---------------------------------------------------------------- */
static atomic_int current_backend = -1;

int fq_get_backend(void) {
    int b = atomic_load_explicit(&current_backend, memory_order_relaxed);
    if (b < 0) {
        b = fq_best_backend();
        const char *env = getenv("FASTQ_BACKEND");   /* fastq/runtime.py warns on a bad name */
        if (env && *env) {
            for (int i = 0; i < FQ_BACKEND_COUNT; i++)
                if (strcmp(env, table[i].name) == 0 && fq_backend_supported(i)) b = i;
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

const fq_kernels *fq_current_kernels(void) {
    return fq_kernels_for(fq_get_backend());          /* a selected backend is always compiled */
}

/* ---- run counters ------------------------------------------------------------------------ */
static atomic_llong runs[FQ_FAMILY_COUNT][FQ_BACKEND_COUNT];

/* A relaxed load and store, not a locked add: this is on every call of every kernel (tens of
 * ns per call for a locked add on a 0.5 us layer), and the counts only need to tell "ran" from
 * "never ran", which increments lost to a concurrent call on another thread cannot change. */
void fq_note_run(int family, int owner) {
    atomic_llong *c = &runs[family][owner];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

long long fq_family_runs(int family, int backend) {
    if (family < 0 || family >= FQ_FAMILY_COUNT || backend < 0 || backend >= FQ_BACKEND_COUNT) return 0;
    return atomic_load(&runs[family][backend]);
}

const fq_kernels *fq_kernels_run(int family, int isa) {
    const fq_kernels *k;
    if (isa < 0) k = fq_current_kernels();
    else k = fq_kernels_for(fq_family_supported(isa, family) ? isa : FQ_BACKEND_SCALAR);
    fq_note_run(family, k->owner[family]);
    return k;
}

int fq_scalar_set_mr(int32_t mr) {
    if (mr < 1 || mr > FQ_MR_MAX) return -1;
    fq_kernels_for(FQ_BACKEND_SCALAR);
    int32_t previous = resolved[FQ_BACKEND_SCALAR].mr[FQ_NR_WIDTHS - 1];
    for (int w = 0; w < FQ_NR_WIDTHS; w++) resolved[FQ_BACKEND_SCALAR].mr[w] = mr;
    return previous;
}
