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

/* One part of a call (fq_gemm_part), with what the driver derives for it. */
typedef struct {
    const fq_k_runs *runs;        /* NULL: the whole K */
    int32_t k;                    /* k of one row of A: w->k, or 4 * the runs' groups */
    int multi;                    /* several runs of K */
    const uint8_t *a;
    ptrdiff_t lda;
    int32_t m;
    const fq_epilogue *ep;
    char *out;
    ptrdiff_t ldo;
    const int32_t *row_sums;
    int32_t row_chunk;            /* rows per task: one task = one panel x row_chunk rows */
    int32_t chunks;
} gemm_part;

typedef struct {
    const fq_packed_weights *w;
    const fq_kernels *kern;
    fq_epilogue_fn epilogue;
    int use_fused;                /* 0: ukernel then epilogue per tile */
    fq_fused_fn fused[FQ_NR_WIDTHS];
    fq_fused_runs_fn fused_runs[FQ_NR_WIDTHS];   /* parts of several runs: NULL, or every width */
    uint8_t a_xor;
    size_t out_elem;
    const gemm_part *parts;
    int32_t n_parts;
    int32_t tasks_per_panel;      /* sum of the parts' chunks */
} gemm_job;

/* Tests and benchmarks only: 0 runs every call unfused (ukernel then epilogue), to hold the
 * fused kernels against the unfused path on the same backend and time both in one process. */
static atomic_int fused_enabled = 1;

int fq_gemm_set_fused(int enabled) {
    return atomic_exchange(&fused_enabled, enabled ? 1 : 0);
}

/* Several runs of K (fq_k_runs): the microkernel per run, each run's part of the panel and
 * of the A rows, the int32 tiles summed, then the epilogue. */
static void gemm_tile_runs(const gemm_job *j, const gemm_part *pt, const int8_t *panel, int32_t nr, int32_t nc,
                           int32_t n0, int32_t m0, int32_t mr, const int32_t *row_sums, char *out) {
    int32_t tile[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    int32_t sum[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    const fq_k_runs *r = pt->runs;
    const uint8_t *a = pt->a + (ptrdiff_t)m0 * pt->lda;
    fq_ukernel_fn uk = j->kern->ukernel[nr / FQ_NR_STEP - 1];
    for (int32_t s = 0; s < r->count; s++) {
        const int8_t *p = panel + (size_t)r->first[s] * nr * FQ_KG;
        uk(mr, r->groups[s] * FQ_KG, a, pt->lda, j->a_xor, p, r->groups[s], nr, s ? tile : sum);
        a += (ptrdiff_t)r->groups[s] * FQ_KG;
        if (s)
            for (int32_t i = 0; i < mr; i++)
                for (int32_t c = 0; c < nr; c++)
                    sum[i * FQ_NR + c] = (int32_t)((uint32_t)sum[i * FQ_NR + c] + (uint32_t)tile[i * FQ_NR + c]);
    }
    j->epilogue(mr, nc, sum, row_sums, n0, pt->ep, out, pt->ldo);
}

static void gemm_tile(const gemm_job *j, const gemm_part *pt, int32_t p, int32_t nr, int32_t m0, int32_t mr) {
    int32_t n0 = p * FQ_NR;
    int32_t nc = j->w->n - n0 < nr ? j->w->n - n0 : nr;
    const int8_t *panel = j->w->data + (size_t)n0 * j->w->k_groups * FQ_KG;
    char *out = pt->out + (ptrdiff_t)m0 * pt->ldo * (ptrdiff_t)j->out_elem;
    const int32_t *row_sums = pt->row_sums ? pt->row_sums + m0 : NULL;
    const uint8_t *a = pt->a + (ptrdiff_t)m0 * pt->lda;
    int32_t k_groups = j->w->k_groups;
    if (pt->multi) {
        fq_fused_runs_fn f = j->fused_runs[nr / FQ_NR_STEP - 1];
        if (f)
            f(mr, pt->runs, a, pt->lda, panel, nr, nc, row_sums, n0, pt->ep, out, pt->ldo);
        else
            gemm_tile_runs(j, pt, panel, nr, nc, n0, m0, mr, row_sums, out);
        return;
    }
    if (pt->runs) {
        /* one run: a contiguous part of every panel, the kernels as for a whole K */
        panel += (size_t)pt->runs->first[0] * nr * FQ_KG;
        k_groups = pt->runs->groups[0];
    }
    /* one row of a full panel keeps the GEMV kernel (16 accumulator chains, not 4) */
    if (j->use_fused && !(mr == 1 && nr == FQ_NR)) {
        j->fused[nr / FQ_NR_STEP - 1](mr, pt->k, a, pt->lda, j->a_xor, panel, k_groups, nr, nc, row_sums, n0,
                                      pt->ep, out, pt->ldo);
        return;
    }
    int32_t tile[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));
    fq_ukernel_fn uk = mr == 1 && nr == FQ_NR ? j->kern->gemv : j->kern->ukernel[nr / FQ_NR_STEP - 1];
    uk(mr, pt->k, a, pt->lda, j->a_xor, panel, k_groups, nr, tile);
    j->epilogue(mr, nc, tile, row_sums, n0, pt->ep, out, pt->ldo);
}

/* One task: one panel, a run of consecutive rows of one part, in tiles of the panel width's
 * rows. Tasks are numbered panel first, so one thread's tasks of a panel follow each other
 * across the parts: a panel is streamed into the caches once for all of them (the windows of
 * a clipped convolution at batch 1 each had read every panel again). */
static void gemm_task(void *ctx, int64_t task) {
    const gemm_job *j = (const gemm_job *)ctx;
    int32_t p = (int32_t)(task / j->tasks_per_panel);
    int32_t t = (int32_t)(task % j->tasks_per_panel);
    const gemm_part *pt = j->parts;
    while (t >= pt->chunks) t -= (pt++)->chunks;
    int32_t nr = fq_panel_width(j->w->n, p);
    int32_t mr_max = j->kern->mr[nr / FQ_NR_STEP - 1];
    int32_t r0 = t * pt->row_chunk;
    int32_t r1 = pt->m - r0 > pt->row_chunk ? r0 + pt->row_chunk : pt->m;
    for (int32_t m0 = r0; m0 < r1; m0 += mr_max)
        gemm_tile(j, pt, p, nr, m0, r1 - m0 < mr_max ? r1 - m0 : mr_max);
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
    if (m <= 0) return 0;
    fq_gemm_part part = {NULL, a, lda, m, ep, out, ldo};
    return fq_gemm_parts(w, &part, 1, a_signed, num_threads);
}

/* k of a part's A rows, or -1 when its runs are not increasing runs of whole k-groups */
static int32_t part_k(const fq_packed_weights *w, const fq_k_runs *runs) {
    if (!runs) return w->k;
    int64_t groups = 0;
    int32_t end = 0;
    if (runs->count < 1 || runs->count > FQ_K_RUNS_MAX) return -1;
    for (int32_t s = 0; s < runs->count; s++) {
        if (runs->first[s] < end || runs->groups[s] < 1 || runs->first[s] + (int64_t)runs->groups[s] > w->k_groups)
            return -1;
        end = runs->first[s] + runs->groups[s];
        groups += runs->groups[s];
    }
    /* a run ends inside the last k-group only as the whole K (its tail bytes are read as 0 by
     * the kernels, which take k, not groups) */
    if (runs->count == 1 && runs->first[0] == 0 && runs->groups[0] == w->k_groups) return w->k;
    if ((int64_t)end * FQ_KG > w->k) return -1;
    return (int32_t)(groups * FQ_KG);
}

int fq_gemm_parts(const fq_packed_weights *w, const fq_gemm_part *parts, int32_t n_parts, int a_signed,
                  int num_threads) {
    if (n_parts < 1 || n_parts > FQ_GEMM_PARTS_MAX) return -1;
    if (w->n <= 0) return 0;
    const fq_epilogue *ep = parts[0].ep;
    gemm_part pts[FQ_GEMM_PARTS_MAX];
    int64_t m_total = 0;
    double macs = 0.0;
    int any_multi = 0, any_single = 0;
    for (int32_t i = 0; i < n_parts; i++) {
        const fq_gemm_part *q = &parts[i];
        /* one arithmetic for the call: the parts differ only in their column offsets */
        if (q->m < 0 || q->ep->variant != ep->variant || q->ep->out_signed != ep->out_signed ||
            q->ep->scalar_only != ep->scalar_only || (q->ep->w_zero_point == NULL) != (ep->w_zero_point == NULL))
            return -1;
        gemm_part *pt = &pts[i];
        pt->runs = q->runs;
        pt->k = part_k(w, q->runs);
        if (pt->k < 0) return -1;
        pt->multi = q->runs && q->runs->count > 1;
        any_multi |= pt->multi;
        any_single |= !pt->multi && q->m > 0;
        pt->a = q->a;
        pt->lda = q->lda;
        pt->m = q->m;
        pt->ep = q->ep;
        pt->out = (char *)q->out;
        pt->ldo = q->ldo;
        pt->row_sums = NULL;
        m_total += q->m;
        macs += (double)q->m * (double)w->n * (double)pt->k;
    }
    if (m_total == 0) return 0;
    gemm_job j;
    j.w = w;
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
    /* parts of several runs of K (uint8 A): the backend's fused kernels over runs where it has
     * every width, else the microkernel per run and the tile epilogue */
    int runs_fused = any_multi && j.use_fused && !a_signed;
    for (int wi = 0; wi < FQ_NR_WIDTHS; wi++) {
        j.fused_runs[wi] = runs_fused ? fk->fused_runs[wi][ep->variant] : NULL;
        if (!j.fused_runs[wi]) runs_fused = 0;
    }
    if (!runs_fused)
        for (int wi = 0; wi < FQ_NR_WIDTHS; wi++) j.fused_runs[wi] = NULL;
    if (j.use_fused && (runs_fused || any_single)) fq_note_run(FQ_FAMILY_GEMM_FUSED, fk->owner[FQ_FAMILY_GEMM_FUSED]);
    j.a_xor = a_signed ? 0x80 : 0;
    j.out_elem = ep->kind == FQ_EPI_INT32 ? sizeof(int32_t)
               : ep->kind == FQ_EPI_FLOAT ? sizeof(float) : sizeof(uint8_t);
    int32_t stack_sums[256];
    int32_t *sums = NULL;
    if (ep->w_zero_point) {
        sums = m_total <= 256 ? stack_sums : (int32_t *)malloc((size_t)m_total * sizeof(int32_t));
        if (!sums) return -1;
        int32_t *s = sums;
        for (int32_t i = 0; i < n_parts; i++) {
            if (pts[i].m) j.kern->row_sums(pts[i].a, pts[i].lda, pts[i].m, pts[i].k, j.a_xor, s);
            pts[i].row_sums = s;
            s += pts[i].m;
        }
    }
    /* threads only pay off when each wakes up for enough work */
    if (macs < 1 << 20) num_threads = 1;
    else if (num_threads <= 0) num_threads = fq_get_num_threads();
    /* Split each panel's rows into as few runs as still give every thread about 4 tasks (load
     * balance), so threads rarely share a panel; a run is a whole number of tiles of every
     * panel width present (64 and the last panel's). A part takes its share of the runs. */
    int32_t mr_full = j.kern->mr[FQ_NR_WIDTHS - 1], mr_last = j.kern->mr[w->last_nr / FQ_NR_STEP - 1];
    int32_t unit = mr_full;
    while (w->n_panels > 1 && unit % mr_last) unit += mr_full;
    if (w->n_panels == 1) unit = mr_last;
    int64_t want = num_threads > 1 ? 4 * (int64_t)num_threads : 1;
    int64_t per_panel_all = (want + w->n_panels - 1) / w->n_panels;
    int64_t tasks_per_panel = 0;
    for (int32_t i = 0; i < n_parts; i++) {
        gemm_part *pt = &pts[i];
        int64_t units = (pt->m + unit - 1) / unit;
        int64_t per_panel = (per_panel_all * pt->m + m_total - 1) / m_total;
        if (per_panel > units) per_panel = units;
        if (per_panel < 1) per_panel = 1;
        int64_t chunk = (units + per_panel - 1) / per_panel * unit;
        pt->row_chunk = chunk < pt->m ? (int32_t)chunk : pt->m;     /* m < 2^31: no int32 overflow */
        pt->chunks = pt->m ? (pt->m + pt->row_chunk - 1) / pt->row_chunk : 0;
        tasks_per_panel += pt->chunks;
    }
    j.parts = pts;
    j.n_parts = n_parts;
    j.tasks_per_panel = (int32_t)tasks_per_panel;
    fq_parallel_for((int64_t)w->n_panels * tasks_per_panel, gemm_task, &j, num_threads);
    if (sums && sums != stack_sums) free(sums);
    return 0;
}
