/* Portable microkernel: the scalar twin every SIMD kernel is tested against.
 * tile[i*64 + c] = sum_k a[i*lda + k] * w[c, k], reading the packed panel. */
#include "fastq.h"

void fq_ukernel_scalar(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,
                       const int8_t *panel, int32_t k_groups, int32_t *tile) {
    (void)k_groups;
    for (int32_t i = 0; i < mr; i++) {
        int32_t *acc = tile + (size_t)i * FQ_NR;
        for (int c = 0; c < FQ_NR; c++) acc[c] = 0;
        const uint8_t *row = a + (ptrdiff_t)i * lda;
        for (int32_t kk = 0; kk < k; kk++) {
            const int8_t *wg = panel + (size_t)(kk / FQ_KG) * FQ_PANEL_GROUP_BYTES + (kk % FQ_KG);
            int32_t x = row[kk];
            for (int c = 0; c < FQ_NR; c++) acc[c] += x * (int32_t)wg[c * FQ_KG];
        }
    }
}
