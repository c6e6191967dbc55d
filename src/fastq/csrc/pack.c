/* Weight packing: [N, K] int8 rows -> 64-column panels of 4-byte k groups (see fastq.h),
 * column sums and the overflow bound computed in the same pass over the weights. */
#include <stdlib.h>
#include <string.h>
#include "fastq.h"

static void *aligned_zalloc(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return p;
}

int fq_pack_weights(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k,
                    const int32_t *w_zero_point, int w_zero_point_per_column,
                    fq_packed_weights *out) {
    memset(out, 0, sizeof(*out));
    out->n = n;
    out->k = k;
    out->k_groups = (k + FQ_KG - 1) / FQ_KG;
    out->n_panels = (n + FQ_NR - 1) / FQ_NR;
    size_t ncols = (size_t)out->n_panels * FQ_NR;
    size_t panel_bytes = (size_t)out->k_groups * FQ_PANEL_GROUP_BYTES;
    out->data = (int8_t *)aligned_zalloc((size_t)out->n_panels * panel_bytes);
    out->col_sums = (int32_t *)aligned_zalloc(ncols * sizeof(int32_t));
    out->w_zero_point = (int32_t *)aligned_zalloc(ncols * sizeof(int32_t));
    if (!out->data || !out->col_sums || !out->w_zero_point) {
        fq_packed_free(out);
        return -1;
    }
    int32_t all_zero = 1, max_dev = 0;
    for (int32_t c = 0; c < n; c++) {
        const int8_t *row = w + (ptrdiff_t)c * ldw;
        int32_t zw = w_zero_point_per_column ? w_zero_point[c] : w_zero_point[0];
        int8_t *dst = out->data + (size_t)(c / FQ_NR) * panel_bytes + (size_t)(c % FQ_NR) * FQ_KG;
        int32_t sum = 0, lo = 127, hi = -128;
        int32_t kk = 0;
        /* whole groups: 4 bytes to a lane */
        for (int32_t g = 0; g < k / FQ_KG; g++, kk += FQ_KG) {
            memcpy(dst + (size_t)g * FQ_PANEL_GROUP_BYTES, row + kk, FQ_KG);
            for (int j = 0; j < FQ_KG; j++) {
                int32_t v = row[kk + j];
                sum += v;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
        }
        for (int j = 0; kk < k; kk++, j++) {   /* tail group, rest stays zero */
            int32_t v = row[kk];
            dst[(size_t)(k / FQ_KG) * FQ_PANEL_GROUP_BYTES + j] = (int8_t)v;
            sum += v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        out->col_sums[c] = sum;
        out->w_zero_point[c] = zw;
        if (zw != 0) all_zero = 0;
        if (k > 0) {
            int32_t d = hi - zw > zw - lo ? hi - zw : zw - lo;
            if (d > max_dev) max_dev = d;
        }
    }
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
    int32_t ncols = w->n_panels * FQ_NR;
    for (int32_t c = 0; c < ncols; c++) {
        uint32_t v = kza * (uint32_t)w->w_zero_point[c] - (uint32_t)a_zero_point * (uint32_t)w->col_sums[c];
        if (int_bias && c < w->n) v += (uint32_t)int_bias[c];
        col_offset[c] = (int32_t)v;
    }
}
