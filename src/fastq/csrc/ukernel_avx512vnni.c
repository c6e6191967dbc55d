/* AVX-512 VNNI microkernels (vpdpbusd: 4 u8 x s8 products summed into each int32 lane).
 * Scalar twin: ukernel_scalar.c.
 *
 * Tile: up to 6 rows x one 64-column panel = 24 zmm accumulators, held in registers through
 * the whole k-loop (each row size is its own fully unrolled instance). Per k-group: 4 zmm
 * loads of the panel (64 columns x 4 k), one 4-byte broadcast per activation row, 4*mr
 * vpdpbusd. The K tail (K % 4 bytes) is assembled byte by byte, so an activation row is
 * never read past its end; the panel is zero padded, so the missing lanes add nothing.
 * M = 1 has its own kernel: 16 independent accumulator chains over 4 k-groups, since one
 * row is bound by the weight stream, not by vpdpbusd latency. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>
#include <string.h>
#include "fastq.h"

#define MR_AVX512 6

static inline int32_t load_group(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the last k % 4 bytes of a row, zero extended to 4 (little endian: k order = lane order) */
static inline int32_t load_tail(const uint8_t *p, int32_t rem) {
    uint32_t v = 0;
    for (int32_t j = 0; j < rem; j++) v |= (uint32_t)p[j] << (8 * j);
    return (int32_t)v;
}

static inline __attribute__((always_inline)) void tile_rows(
        const int mr, int32_t k, const uint8_t *a, ptrdiff_t lda,
        const int8_t *panel, int32_t *tile) {
    __m512i acc[MR_AVX512][4];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_si512();
    const int32_t full = k / FQ_KG;
    const int32_t rem = k % FQ_KG;
    const int8_t *w = panel;
    for (int32_t g = 0; g < full; g++, w += FQ_PANEL_GROUP_BYTES) {
        __m512i w0 = _mm512_load_si512((const void *)(w + 0));
        __m512i w1 = _mm512_load_si512((const void *)(w + 64));
        __m512i w2 = _mm512_load_si512((const void *)(w + 128));
        __m512i w3 = _mm512_load_si512((const void *)(w + 192));
        for (int i = 0; i < mr; i++) {
            __m512i x = _mm512_set1_epi32(load_group(a + i * lda + (ptrdiff_t)g * FQ_KG));
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], x, w0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], x, w1);
            acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], x, w2);
            acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], x, w3);
        }
    }
    if (rem) {
        __m512i w0 = _mm512_load_si512((const void *)(w + 0));
        __m512i w1 = _mm512_load_si512((const void *)(w + 64));
        __m512i w2 = _mm512_load_si512((const void *)(w + 128));
        __m512i w3 = _mm512_load_si512((const void *)(w + 192));
        for (int i = 0; i < mr; i++) {
            __m512i x = _mm512_set1_epi32(load_tail(a + i * lda + (ptrdiff_t)full * FQ_KG, rem));
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], x, w0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], x, w1);
            acc[i][2] = _mm512_dpbusd_epi32(acc[i][2], x, w2);
            acc[i][3] = _mm512_dpbusd_epi32(acc[i][3], x, w3);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < 4; j++) _mm512_store_si512((void *)(tile + i * FQ_NR + 16 * j), acc[i][j]);
}

#define TILE_FN(R)                                                                        \
    static void tile_##R(int32_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, \
                         int32_t *tile) { tile_rows(R, k, a, lda, panel, tile); }
TILE_FN(1)
TILE_FN(2)
TILE_FN(3)
TILE_FN(4)
TILE_FN(5)
TILE_FN(6)

void fq_ukernel_avx512vnni(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,
                           const int8_t *panel, int32_t k_groups, int32_t *tile) {
    (void)k_groups;
    switch (mr) {
    case 1: tile_1(k, a, lda, panel, tile); break;
    case 2: tile_2(k, a, lda, panel, tile); break;
    case 3: tile_3(k, a, lda, panel, tile); break;
    case 4: tile_4(k, a, lda, panel, tile); break;
    case 5: tile_5(k, a, lda, panel, tile); break;
    default: tile_6(k, a, lda, panel, tile); break;
    }
}

/* One row: 4 k-groups per step, each into its own 4 accumulators (16 chains), summed at
 * the end; integer addition is associative, so the order does not change the result. */
void fq_gemv_avx512vnni(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,
                        const int8_t *panel, int32_t k_groups, int32_t *tile) {
    (void)mr;
    (void)lda;
    (void)k_groups;
    __m512i acc[4][4];
    for (int u = 0; u < 4; u++)
        for (int j = 0; j < 4; j++) acc[u][j] = _mm512_setzero_si512();
    const int32_t full = k / FQ_KG;
    const int32_t rem = k % FQ_KG;
    const int8_t *w = panel;
    int32_t g = 0;
    for (; g + 4 <= full; g += 4, w += 4 * FQ_PANEL_GROUP_BYTES) {
        for (int u = 0; u < 4; u++) {
            __m512i x = _mm512_set1_epi32(load_group(a + (ptrdiff_t)(g + u) * FQ_KG));
            for (int j = 0; j < 4; j++)
                acc[u][j] = _mm512_dpbusd_epi32(
                    acc[u][j], x,
                    _mm512_load_si512((const void *)(w + u * FQ_PANEL_GROUP_BYTES + 64 * j)));
        }
    }
    for (; g < full; g++, w += FQ_PANEL_GROUP_BYTES) {
        __m512i x = _mm512_set1_epi32(load_group(a + (ptrdiff_t)g * FQ_KG));
        for (int j = 0; j < 4; j++)
            acc[0][j] = _mm512_dpbusd_epi32(acc[0][j], x, _mm512_load_si512((const void *)(w + 64 * j)));
    }
    if (rem) {
        __m512i x = _mm512_set1_epi32(load_tail(a + (ptrdiff_t)full * FQ_KG, rem));
        for (int j = 0; j < 4; j++)
            acc[1][j] = _mm512_dpbusd_epi32(acc[1][j], x, _mm512_load_si512((const void *)(w + 64 * j)));
    }
    for (int j = 0; j < 4; j++) {
        __m512i s = _mm512_add_epi32(_mm512_add_epi32(acc[0][j], acc[1][j]),
                                     _mm512_add_epi32(acc[2][j], acc[3][j]));
        _mm512_store_si512((void *)(tile + 16 * j), s);
    }
}

extern void fq_epilogue_avx512(int32_t, int32_t, const int32_t *, const int32_t *, int32_t,
                               const fq_epilogue *, void *, ptrdiff_t);

static const fq_kernels kernels = {
    "avx512vnni", MR_AVX512, fq_ukernel_avx512vnni, fq_gemv_avx512vnni, fq_epilogue_avx512,
};

const fq_kernels *fq_kernels_avx512vnni(void) { return &kernels; }

#else
#include "fastq.h"
const fq_kernels *fq_kernels_avx512vnni(void) { return NULL; }
#endif
