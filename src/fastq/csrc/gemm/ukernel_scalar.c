/* Portable microkernel: the scalar twin every SIMD kernel is tested against.
 * tile[i*64 + c] = sum_k (a[i*lda + k] ^ a_xor) * w[c, k], c < nr, reading a packed panel of
 * any width nr (16, 32, 48, 64).
 * The sums are formed in uint32 (wrapping, as vpaddd does): the raw sum of a row near its
 * zero point may exceed int32 for large K while the zero-point corrected acc fits (the
 * overflow check bounds only that); signed overflow would be undefined behaviour. */
#include "fastq.h"

void fq_ukernel_scalar(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                       const int8_t *panel, int32_t k_groups, int32_t nr, int32_t *tile) {
    (void)k_groups;
    for (int32_t i = 0; i < mr; i++) {
        uint32_t acc[FQ_NR] = {0};
        const uint8_t *row = a + (ptrdiff_t)i * lda;
        for (int32_t kk = 0; kk < k; kk++) {
            const int8_t *wg = panel + (size_t)(kk / FQ_KG) * nr * FQ_KG + (kk % FQ_KG);
            int32_t x = (uint8_t)(row[kk] ^ a_xor);
            for (int32_t c = 0; c < nr; c++) acc[c] += (uint32_t)(x * (int32_t)wg[c * FQ_KG]);
        }
        for (int32_t c = 0; c < nr; c++) tile[(size_t)i * FQ_NR + c] = (int32_t)acc[c];
    }
}

/* sums[i] = sum_k (a[i*lda + k] ^ a_xor) modulo 2^32 (see fq_row_sums_fn) */
void fq_row_sums_scalar(const uint8_t *a, ptrdiff_t lda, int32_t m, int32_t k, uint8_t a_xor,
                        int32_t *sums) {
    for (int32_t i = 0; i < m; i++) {
        const uint8_t *row = a + (ptrdiff_t)i * lda;
        uint32_t s = 0;
        for (int32_t kk = 0; kk < k; kk++) s += (uint8_t)(row[kk] ^ a_xor);
        sums[i] = (int32_t)s;
    }
}
