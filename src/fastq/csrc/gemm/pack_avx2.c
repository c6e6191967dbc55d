/* AVX2 weight packer: the panel layout of fastq.h (scalar twin: fq_pack_panels_scalar in
 * pack.c), each row's sum, min and max gathered in the same pass. A k-group of a panel is nr
 * columns (64, or 16 / 32 / 48 for the last panel) x 4 bytes, one dword per column, so packing
 * is a dword transpose: the unit here is 32 k (8 groups) of 8 rows, an 8x8 dword transpose,
 * stored as 8 groups x 32 bytes. The last partial chunk of a row is
 * copied into a zeroed 32-byte buffer, so nothing is read past a row. Rows past N are zero;
 * every byte of the panels is written. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX2)
#pragma GCC target("avx2")
#include <immintrin.h>
#include <string.h>
#include "fastq.h"
#include "gemm/kernels.h"

/* r[0..7] (8 rows of 8 dwords) -> r[c] = column c */
static inline void transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {   /* rows 0-3, then rows 4-7 */
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

void fq_pack_panels_avx2(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k,
                         int8_t *data, int32_t *row_sum, int32_t *row_min, int32_t *row_max) {
    const int32_t k_groups = (k + FQ_KG - 1) / FQ_KG;
    const int32_t n_panels = (n + FQ_NR - 1) / FQ_NR;
    const int32_t k_full = k & ~31;                 /* k covered by whole 32-byte chunks */
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int32_t p = 0; p < n_panels; p++) {
        const int32_t nr = fq_panel_width(n, p);
        const size_t group_bytes = (size_t)nr * FQ_KG;
        int8_t *panel = data + (size_t)p * FQ_NR * k_groups * FQ_KG;
        int32_t rows = n - p * FQ_NR < FQ_NR ? n - p * FQ_NR : FQ_NR;
        __m256i sum[FQ_NR], lo[FQ_NR], hi[FQ_NR];
        for (int c = 0; c < FQ_NR; c++) {
            sum[c] = _mm256_setzero_si256();
            lo[c] = _mm256_set1_epi8(127);
            hi[c] = _mm256_set1_epi8(-128);
        }
        for (int32_t k0 = 0; k0 < k; k0 += 32) {
            int whole = k0 < k_full;
            int32_t groups = k_groups - k0 / FQ_KG < 8 ? k_groups - k0 / FQ_KG : 8;
            for (int b = 0; b < nr / 8; b++) {
                __m256i r[8];
                for (int i = 0; i < 8; i++) {
                    int c = b * 8 + i;
                    if (c >= rows) {
                        r[i] = _mm256_setzero_si256();
                        continue;
                    }
                    const int8_t *src = w + (ptrdiff_t)(p * FQ_NR + c) * ldw + k0;
                    if (whole) {
                        __m256i x = _mm256_loadu_si256((const __m256i *)src);
                        sum[c] = _mm256_add_epi64(sum[c], _mm256_sad_epu8(_mm256_xor_si256(x, bias),
                                                                          _mm256_setzero_si256()));
                        lo[c] = _mm256_min_epi8(lo[c], x);
                        hi[c] = _mm256_max_epi8(hi[c], x);
                        r[i] = x;
                    } else {    /* the tail: its sum and bounds are taken in scalar below */
                        int8_t buf[32] __attribute__((aligned(32))) = {0};
                        memcpy(buf, src, (size_t)(k - k0));
                        r[i] = _mm256_load_si256((const __m256i *)buf);
                    }
                }
                transpose8(r);
                for (int g = 0; g < groups; g++)
                    _mm256_store_si256((__m256i *)(panel + (size_t)(k0 / FQ_KG + g) * group_bytes + b * 32),
                                       r[g]);
            }
        }
        for (int32_t c = 0; c < rows; c++) {
            int32_t i = p * FQ_NR + c;
            int8_t l8[32], h8[32];
            int64_t s8[4];
            _mm256_storeu_si256((__m256i *)l8, lo[c]);
            _mm256_storeu_si256((__m256i *)h8, hi[c]);
            _mm256_storeu_si256((__m256i *)s8, sum[c]);
            int64_t s = s8[0] + s8[1] + s8[2] + s8[3] - 128 * (int64_t)k_full;
            int32_t mn = 127, mx = -128;
            for (int j = 0; j < 32; j++) {
                mn = l8[j] < mn ? l8[j] : mn;
                mx = h8[j] > mx ? h8[j] : mx;
            }
            const int8_t *row = w + (ptrdiff_t)i * ldw;
            for (int32_t kk = k_full; kk < k; kk++) {
                s += row[kk];
                mn = row[kk] < mn ? row[kk] : mn;
                mx = row[kk] > mx ? row[kk] : mx;
            }
            row_sum[i] = (int32_t)(uint32_t)(uint64_t)s;
            row_min[i] = mn;
            row_max[i] = mx;
        }
    }
}
#endif
