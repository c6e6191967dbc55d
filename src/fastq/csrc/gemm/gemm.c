/* The GEMM driver: splits the output into tiles (mr rows x one panel of 64 columns, or of
 * the narrower last panel's width), runs the current backend's microkernel for that width
 * (with that width's rows per tile) and its fused epilogue on each tile while it is in L1,
 * and spreads the tiles over threads. Byte outputs of the float requantizations (fbgemm, qnnpack,
 * oneDNN) run the backend's fused kernel instead where it has one (gemm_fused family: on
 * AVX-512 the epilogue on the accumulators in registers, no int32 tile). The epilogue function is looked up once per call in
 * the backend's table, by (variant, output type). */
#include <stdatomic.h>
#include <stdlib.h>
#include "fastq.h"
#include "gemm/kernels.h"

typedef struct {
    const fq_packed_weights *w;
    const fq_k_runs *runs;        /* NULL: the whole K */
    int32_t k;                    /* k of one row of A: w->k, or 4 * the runs' groups */
    const fq_kernels *kern;
    fq_epilogue_fn epilogue;
    int use_fused;                /* 0: ukernel then epilogue per tile */
    fq_fused_fn fused[FQ_NR_WIDTHS];
    fq_fused_runs_fn fused_runs[FQ_NR_WIDTHS];   /* several runs of K: NULL unless use_fused */
    const uint8_t *a;
    ptrdiff_t lda;
    uint8_t a_xor;
    int32_t m;
    int32_t row_chunk;            /* rows per task: one task = one panel x row_chunk rows */
    int32_t chunks_per_panel;
    const int32_t *row_sums;
    const fq_epilogue *ep;
    void *out;
    ptrdiff_t ldo;
    size_t out_elem;
} gemm_job;

/* Tests and benchmarks only: 0 runs every call unfused (ukernel then epilogue), to hold the
 * fused kernels against the unfused path on the same backend and time both in one process. */
static atomic_int fused_enabled = 1;

int fq_gemm_set_fused(int enabled) {
    return atomic_exchange(&fused_enabled, enabled ? 1 : 0);
}

/* Several runs of K (fq_k_runs): the microkernel per run, each run's part of the panel and
 * of the A rows, the int32 tiles summed, then the epilogue. */
static void gemm_tile_runs(const gemm_job *j, const int8_t *panel, int32_t nr, int32_t nc, int32_t n0,
                           int32_t m0, int32_t mr, const int32_t *row_sums, char *out) {
    int32_t tile[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    int32_t part[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    const fq_k_runs *r = j->runs;
    const uint8_t *a = j->a + (ptrdiff_t)m0 * j->lda;
    fq_ukernel_fn uk = j->kern->ukernel[nr / FQ_NR_STEP - 1];
    for (int32_t s = 0; s < r->count; s++) {
        const int8_t *p = panel + (size_t)r->first[s] * nr * FQ_KG;
        uk(mr, r->groups[s] * FQ_KG, a, j->lda, j->a_xor, p, r->groups[s], nr, s ? part : tile);
        a += (ptrdiff_t)r->groups[s] * FQ_KG;
        if (s)
            for (int32_t i = 0; i < mr; i++)
                for (int32_t c = 0; c < nr; c++)
                    tile[i * FQ_NR + c] = (int32_t)((uint32_t)tile[i * FQ_NR + c] + (uint32_t)part[i * FQ_NR + c]);
    }
    j->epilogue(mr, nc, tile, row_sums, n0, j->ep, out, j->ldo);
}

static void gemm_tile(const gemm_job *j, int32_t p, int32_t nr, int32_t m0, int32_t mr) {
    int32_t n0 = p * FQ_NR;
    int32_t nc = j->w->n - n0 < nr ? j->w->n - n0 : nr;
    const int8_t *panel = j->w->data + (size_t)n0 * j->w->k_groups * FQ_KG;
    char *out = (char *)j->out + (ptrdiff_t)m0 * j->ldo * (ptrdiff_t)j->out_elem;
    const int32_t *row_sums = j->row_sums ? j->row_sums + m0 : NULL;
    int32_t k_groups = j->w->k_groups;
    if (j->runs) {
        if (j->runs->count > 1) {
            fq_fused_runs_fn f = j->fused_runs[nr / FQ_NR_STEP - 1];
            if (f)
                f(mr, j->runs, j->a + (ptrdiff_t)m0 * j->lda, j->lda, panel, nr, nc, row_sums, n0, j->ep, out, j->ldo);
            else
                gemm_tile_runs(j, panel, nr, nc, n0, m0, mr, row_sums, out);
            return;
        }
        /* one run: a contiguous part of every panel, the kernels as for a whole K */
        panel += (size_t)j->runs->first[0] * nr * FQ_KG;
        k_groups = j->runs->groups[0];
    }
    /* one row of a full panel keeps the GEMV kernel (16 accumulator chains, not 4) */
    if (j->use_fused && !(mr == 1 && nr == FQ_NR)) {
        j->fused[nr / FQ_NR_STEP - 1](mr, j->k, j->a + (ptrdiff_t)m0 * j->lda, j->lda, j->a_xor, panel,
                                      k_groups, nr, nc, row_sums, n0, j->ep, out, j->ldo);
        return;
    }
    int32_t tile[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    fq_ukernel_fn uk = mr == 1 && nr == FQ_NR ? j->kern->gemv : j->kern->ukernel[nr / FQ_NR_STEP - 1];
    uk(mr, j->k, j->a + (ptrdiff_t)m0 * j->lda, j->lda, j->a_xor, panel, k_groups, nr, tile);
    j->epilogue(mr, nc, tile, row_sums, n0, j->ep, out, j->ldo);
}

/* One task: one panel, a run of consecutive rows, in tiles of the panel width's rows. A
 * thread that takes a task keeps that panel of weights hot in its own caches for the whole run. */
static void gemm_task(void *ctx, int64_t task) {
    const gemm_job *j = (const gemm_job *)ctx;
    int32_t p = (int32_t)(task / j->chunks_per_panel);
    int32_t nr = fq_panel_width(j->w->n, p);
    int32_t mr_max = j->kern->mr[nr / FQ_NR_STEP - 1];
    int32_t r0 = (int32_t)(task % j->chunks_per_panel) * j->row_chunk;
    int32_t r1 = j->m - r0 > j->row_chunk ? r0 + j->row_chunk : j->m;
    for (int32_t m0 = r0; m0 < r1; m0 += mr_max)
        gemm_tile(j, p, nr, m0, r1 - m0 < mr_max ? r1 - m0 : mr_max);
}

static int shifts_in_simd_range(const int32_t *shift, int32_t n) {
    for (int32_t c = 0; c < n; c++)
        if (shift[c] > 30 || shift[c] < -31) return 0;
    return 1;
}

static int right_shifts_only(const int32_t *multiplier, const int32_t *shift, int32_t n) {
    for (int32_t c = 0; c < n; c++)
        if (shift[c] > 0 || multiplier[c] == INT32_MIN) return 0;
    return 1;
}

int fq_epilogue_prepare(fq_epilogue *ep, int32_t n_padded) {
    if (!ep->col_offset || n_padded < 0) return -1;
    if (ep->out_signed != 0 && ep->out_signed != 1) return -1;
    ep->scalar_only = 0;
    switch (ep->kind) {
    case FQ_EPI_INT32:
        ep->variant = FQ_EPV_INT32;
        return 0;
    case FQ_EPI_FLOAT:
        if (!ep->scale || !ep->bias) return -1;
        ep->variant = ep->float_fma ? FQ_EPV_FLOAT_FMA : FQ_EPV_FLOAT_TWO_ROUNDINGS;
        return 0;
    case FQ_EPI_FBGEMM:
        if (!ep->scale || !ep->bias) return -1;
        ep->variant = FQ_EPV_FBGEMM;
        break;
    case FQ_EPI_QNNPACK:
        if (!ep->scale) return -1;
        ep->variant = FQ_EPV_QNNPACK;
        break;
    case FQ_EPI_ONEDNN:
        if (!ep->scale || !ep->bias) return -1;
        ep->variant = FQ_EPV_ONEDNN;
        break;
    case FQ_EPI_TFLITE:
        if (!ep->multiplier || !ep->shift) return -1;
        switch (ep->rounding) {
        case FQ_ROUNDING_DOUBLE:
            ep->variant = right_shifts_only(ep->multiplier, ep->shift, n_padded) ? FQ_EPV_FIXED_DOUBLE_RIGHT
                                                                                : FQ_EPV_FIXED_DOUBLE;
            break;
        case FQ_ROUNDING_SINGLE: ep->variant = FQ_EPV_FIXED_SINGLE; break;
        case FQ_ROUNDING_DOUBLE_UP: ep->variant = FQ_EPV_FIXED_DOUBLE_UP; break;
        default: return -1;
        }
        /* the C shifts of the scalar code define the rest; callers keep shifts in range */
        ep->scalar_only = !shifts_in_simd_range(ep->shift, n_padded);
        break;
    default:
        return -1;
    }
    /* byte output: a uint8 zero point, and bounds whose distance to it fits int32 (the SIMD
     * code clamps r to [lo - zy, hi - zy]); the stored byte is the low one of the result, so
     * only bounds within 0..255 make sense, but wider ones are defined (tests use them) */
    if (ep->out_zero_point < 0 || ep->out_zero_point > 255 || ep->out_min > ep->out_max ||
        ep->out_min < INT32_MIN + 255)
        return -1;
    return 0;
}

int fq_gemm(const fq_packed_weights *w, const uint8_t *a, ptrdiff_t lda, int32_t m, int a_signed,
            const fq_epilogue *ep, void *out, ptrdiff_t ldo, int num_threads) {
    return fq_gemm_runs(w, NULL, a, lda, m, a_signed, ep, out, ldo, num_threads);
}

int fq_gemm_runs(const fq_packed_weights *w, const fq_k_runs *runs, const uint8_t *a, ptrdiff_t lda, int32_t m,
                 int a_signed, const fq_epilogue *ep, void *out, ptrdiff_t ldo, int num_threads) {
    if (m <= 0 || w->n <= 0) return 0;
    gemm_job j;
    j.w = w;
    j.runs = runs;
    j.k = w->k;
    if (runs) {
        int64_t groups = 0;
        int32_t end = 0;
        if (runs->count < 1 || runs->count > FQ_K_RUNS_MAX) return -1;
        for (int32_t s = 0; s < runs->count; s++) {
            if (runs->first[s] < end || runs->groups[s] < 1 || runs->first[s] + (int64_t)runs->groups[s] > w->k_groups)
                return -1;
            end = runs->first[s] + runs->groups[s];
            groups += runs->groups[s];
        }
        /* a run ends inside the last k-group only as the whole K (its tail bytes are read as 0
         * by the kernels, which take k, not groups) */
        j.k = runs->count == 1 && runs->first[0] == 0 && runs->groups[0] == w->k_groups ? w->k
                                                                                         : (int32_t)(groups * FQ_KG);
        if (j.k != w->k && (int64_t)end * FQ_KG > w->k) return -1;
    }
    j.kern = fq_kernels_run(FQ_FAMILY_GEMM, -1);
    const fq_kernels *epi_table = ep->scalar_only ? fq_kernels_for(FQ_BACKEND_SCALAR) : j.kern;
    j.epilogue = epi_table->epilogue[ep->variant][ep->out_signed];
    fq_note_run(FQ_FAMILY_EPILOGUE, epi_table->epilogue_owner[ep->variant][ep->out_signed]);
    /* Fused per call: the backend has a fused kernel of every width for the variant (byte
     * outputs), from the same backend as the microkernels and the epilogue it replaces (it
     * runs their arithmetic). The epilogue count above stands: the fused kernel runs its steps. */
    const fq_kernels *fk = j.kern;
    j.use_fused = atomic_load_explicit(&fused_enabled, memory_order_relaxed) && !ep->scalar_only && fk->owner[FQ_FAMILY_GEMM_FUSED] == fk->owner[FQ_FAMILY_GEMM];
    for (int wi = 0; wi < FQ_NR_WIDTHS; wi++) {
        j.fused[wi] = fk->fused[wi][ep->variant];
        if (!j.fused[wi]) j.use_fused = 0;
    }
    /* several runs of K (uint8 A): the backend's fused kernels over runs where it has every width */
    int multi = runs && runs->count > 1;
    int runs_fused = multi && j.use_fused && !a_signed;
    for (int wi = 0; wi < FQ_NR_WIDTHS; wi++) {
        j.fused_runs[wi] = runs_fused ? fk->fused_runs[wi][ep->variant] : NULL;
        if (!j.fused_runs[wi]) runs_fused = 0;
    }
    if (!runs_fused)
        for (int wi = 0; wi < FQ_NR_WIDTHS; wi++) j.fused_runs[wi] = NULL;
    if (multi && !runs_fused) j.use_fused = 0;
    if (j.use_fused) fq_note_run(FQ_FAMILY_GEMM_FUSED, fk->owner[FQ_FAMILY_GEMM_FUSED]);
    j.a = a;
    j.lda = lda;
    j.a_xor = a_signed ? 0x80 : 0;
    j.m = m;
    j.ep = ep;
    j.out = out;
    j.ldo = ldo;
    j.out_elem = ep->kind == FQ_EPI_INT32 ? sizeof(int32_t)
               : ep->kind == FQ_EPI_FLOAT ? sizeof(float) : sizeof(uint8_t);
    int32_t stack_sums[256];
    int32_t *sums = NULL;
    if (ep->w_zero_point) {
        sums = m <= 256 ? stack_sums : (int32_t *)malloc((size_t)m * sizeof(int32_t));
        if (!sums) return -1;
        j.kern->row_sums(a, lda, m, j.k, j.a_xor, sums);
    }
    j.row_sums = sums;
    /* threads only pay off when each wakes up for enough work */
    double macs = (double)m * (double)w->n * (double)j.k;
    if (macs < 1 << 20) num_threads = 1;
    else if (num_threads <= 0) num_threads = fq_get_num_threads();
    /* Split each panel's rows into as few runs as still give every thread about 4 tasks (load
     * balance), so threads rarely share a panel; a run is a whole number of tiles of every
     * panel width present (64 and the last panel's). */
    int32_t mr_full = j.kern->mr[FQ_NR_WIDTHS - 1], mr_last = j.kern->mr[w->last_nr / FQ_NR_STEP - 1];
    int32_t unit = mr_full;
    while (w->n_panels > 1 && unit % mr_last) unit += mr_full;
    if (w->n_panels == 1) unit = mr_last;
    int64_t want = num_threads > 1 ? 4 * (int64_t)num_threads : 1;
    int64_t per_panel = (want + w->n_panels - 1) / w->n_panels;
    int64_t units = (m + unit - 1) / unit;
    if (per_panel > units) per_panel = units;
    if (per_panel < 1) per_panel = 1;
    int64_t chunk = (units + per_panel - 1) / per_panel * unit;
    j.row_chunk = chunk < m ? (int32_t)chunk : m;     /* m < 2^31: no int32 overflow */
    j.chunks_per_panel = (m + j.row_chunk - 1) / j.row_chunk;
    int64_t n_tasks = (int64_t)w->n_panels * j.chunks_per_panel;
    fq_parallel_for(n_tasks, gemm_task, &j, num_threads);
    if (sums && sums != stack_sums) free(sums);
    return 0;
}
