/* Weight packing: [N, K] int8 rows -> 64-column panels (the last one 16, 32, 48 or 64 wide)
 * of 4-byte k groups (see fastq.h),
 * column sums and the overflow bound computed in the same pass over the weights
 * (pack_avx2.c: the vectorized pass, a dword transpose; the backend table picks one). */
#include <stdlib.h>
#include <string.h>
#include "fastq.h"
#include "gemm/kernels.h"
/* Uninitialized 64-byte aligned memory (the SIMD packer writes every byte). */
static void *panel_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void *aligned_zalloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return p;
}

/* Scalar packer, the twin of pack_avx2.c: one row at a time, 4 bytes to a lane, after zeroing
 * the panels (padding columns and the tail group). */
void fq_pack_panels_scalar(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k, int8_t *data,
                           int32_t *row_sum, int32_t *row_min, int32_t *row_max) {
    const int32_t k_groups = (k + FQ_KG - 1) / FQ_KG;
    const int32_t n_panels = (n + FQ_NR - 1) / FQ_NR;
    const int32_t n_padded = n_panels ? (n_panels - 1) * FQ_NR + fq_panel_width(n, n_panels - 1) : 0;
    memset(data, 0, (size_t)n_padded * k_groups * FQ_KG);
    for (int32_t c = 0; c < n; c++) {
        const int8_t *row = w + (ptrdiff_t)c * ldw;
        const int32_t n0 = c / FQ_NR * FQ_NR;
        const size_t group_bytes = (size_t)fq_panel_width(n, c / FQ_NR) * FQ_KG;
        int8_t *dst = data + (size_t)n0 * k_groups * FQ_KG + (size_t)(c - n0) * FQ_KG;
        uint32_t sum = 0;
        int32_t lo = 127, hi = -128;
        int32_t kk = 0;
        for (int32_t g = 0; g < k / FQ_KG; g++, kk += FQ_KG) {     /* whole groups: a lane */
            memcpy(dst + (size_t)g * group_bytes, row + kk, FQ_KG);
            for (int j = 0; j < FQ_KG; j++) {
                int32_t v = row[kk + j];
                sum += (uint32_t)v;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
        }
        for (int32_t j = 0; kk < k; kk++, j++) {                   /* the tail group */
            int32_t v = row[kk];
            dst[(size_t)(k / FQ_KG) * group_bytes + j] = (int8_t)v;
            sum += (uint32_t)v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        row_sum[c] = (int32_t)sum;
        row_min[c] = lo;
        row_max[c] = hi;
    }
}

int fq_pack_weights(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k,
                    const int32_t *w_zero_point, int w_zero_point_per_column,
                    fq_packed_weights *out) {
    memset(out, 0, sizeof(*out));
    out->n = n;
    out->k = k;
    out->k_groups = (k + FQ_KG - 1) / FQ_KG;
    out->n_panels = (n + FQ_NR - 1) / FQ_NR;
    out->last_nr = n > 0 ? fq_panel_width(n, out->n_panels - 1) : 0;
    out->n_padded = n > 0 ? (out->n_panels - 1) * FQ_NR + out->last_nr : 0;
    size_t ncols = (size_t)out->n_padded;
    size_t data_bytes = (size_t)out->n_padded * out->k_groups * FQ_KG;
    out->data = (int8_t *)panel_alloc(data_bytes);
    out->col_sums = (int32_t *)aligned_zalloc(ncols * sizeof(int32_t));
    out->w_zero_point = (int32_t *)aligned_zalloc(ncols * sizeof(int32_t));
    int32_t *stats = (int32_t *)malloc(((size_t)n * 2 + 1) * sizeof(int32_t));
    if (!out->data || !out->col_sums || !out->w_zero_point || !stats) {
        free(stats);
        fq_packed_free(out);
        return -1;
    }
    int32_t *row_min = stats, *row_max = stats + n;
    /* the packer follows the backend, so each packer is tested with its kernels */
    fq_kernels_run(FQ_FAMILY_PACK, -1)->pack(w, ldw, n, k, out->data, out->col_sums, row_min, row_max);
    int32_t all_zero = 1, max_dev = 0;
    for (int32_t c = 0; c < n; c++) {
        int32_t zw = w_zero_point_per_column ? w_zero_point[c] : w_zero_point[0];
        out->w_zero_point[c] = zw;
        if (zw != 0) all_zero = 0;
        if (k > 0) {
            int32_t d = row_max[c] - zw > zw - row_min[c] ? row_max[c] - zw : zw - row_min[c];
            if (d > max_dev) max_dev = d;
        }
    }
    free(stats);
    out->w_zero_point_all_zero = all_zero;
    out->max_abs_w_dev = max_dev;
    return 0;
}

void fq_packed_free(fq_packed_weights *p) {
    free(p->data);
    free(p->col_sums);
    free(p->w_zero_point);
    p->data = NULL;
    p->col_sums = NULL;
    p->w_zero_point = NULL;
}

void fq_col_offsets(const fq_packed_weights *w, int32_t a_zero_point,
                    const int32_t *int_bias, int32_t *col_offset) {
    /* K*za*zw - za*colsum, in wrapping arithmetic: only the final acc has to fit. */
    uint32_t kza = (uint32_t)w->k * (uint32_t)a_zero_point;
    int32_t ncols = w->n_padded;
    for (int32_t c = 0; c < ncols; c++) {
        uint32_t v = kza * (uint32_t)w->w_zero_point[c] - (uint32_t)a_zero_point * (uint32_t)w->col_sums[c];
        if (int_bias && c < w->n) v += (uint32_t)int_bias[c];
        col_offset[c] = (int32_t)v;
    }
}
