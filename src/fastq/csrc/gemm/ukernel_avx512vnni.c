/* AVX-512 VNNI microkernels (vpdpbusd: 4 u8 x s8 products summed into each int32 lane).
 * Scalar twin: ukernel_scalar.c.
 *
 * Tile: up to 6 rows x one 64-column panel = 24 zmm accumulators, held in registers through
 * the whole k-loop. Per k-group: 4 zmm
 * loads of the panel (64 columns x 4 k), one 4-byte broadcast per activation row, 4*mr
 * vpdpbusd. The K tail (K % 4 bytes) is assembled byte by byte, so an activation row is
 * never read past its end; the panel is zero padded, so the missing lanes add nothing.
 * M = 1 has its own kernel: 16 independent accumulator chains over 4 k-groups, since one
 * row is bound by the weight stream, not by vpdpbusd latency. int8 activations (a_xor = 0x80)
 * are flipped to uint8 as each 4-byte group is broadcast (one scalar xor per group and row). */
#include "fastq.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#include <immintrin.h>
#include <string.h>

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

/* One tile function per row count R = 2..6, generated from one body, so that mr rows cost
 * mr rows (a 4-row tile runs 16 vpdpbusd per k-group, not 24). Each keeps 4*R named
 * accumulators in zmm registers through the k-loop (an array of __m512i was kept in memory
 * by gcc). Rows past mr read the last valid row again and are not stored, so one function
 * also serves mr < R. */
#define DP_ROW(i, x)                                   \
    c##i##0 = _mm512_dpbusd_epi32(c##i##0, x, w0);     \
    c##i##1 = _mm512_dpbusd_epi32(c##i##1, x, w1);     \
    c##i##2 = _mm512_dpbusd_epi32(c##i##2, x, w2);     \
    c##i##3 = _mm512_dpbusd_epi32(c##i##3, x, w3);
#define ZERO_ROW(i)                                                     \
    __m512i c##i##0 = _mm512_setzero_si512(), c##i##1 = c##i##0, \
            c##i##2 = c##i##0, c##i##3 = c##i##0;
#define STORE_ROW(i)                                                              \
    if (i < mr) {                                                                 \
        _mm512_store_si512((void *)(tile + i * FQ_NR + 0), c##i##0);              \
        _mm512_store_si512((void *)(tile + i * FQ_NR + 16), c##i##1);             \
        _mm512_store_si512((void *)(tile + i * FQ_NR + 32), c##i##2);             \
        _mm512_store_si512((void *)(tile + i * FQ_NR + 48), c##i##3);             \
    }
#define TAIL_ROW(i) { __m512i x = _mm512_set1_epi32(load_tail(row[i] + o, rem) ^ flip4); DP_ROW(i, x) }
#define GROUP_ROW(i) { __m512i x = _mm512_set1_epi32(load_group(row[i] + o) ^ flip4); DP_ROW(i, x) }
#define LOAD_PANEL_GROUP(p)                                                 \
    const __m512i w0 = _mm512_load_si512((const void *)((p) + 0));         \
    const __m512i w1 = _mm512_load_si512((const void *)((p) + 64));        \
    const __m512i w2 = _mm512_load_si512((const void *)((p) + 128));       \
    const __m512i w3 = _mm512_load_si512((const void *)((p) + 192));
#define ROWS_2(X) X(0) X(1)
#define ROWS_3(X) X(0) X(1) X(2)
#define ROWS_4(X) X(0) X(1) X(2) X(3)
#define ROWS_5(X) X(0) X(1) X(2) X(3) X(4)
#define ROWS_6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* The K tail first: after the main loop only stores remain, which keeps gcc from spilling
 * the accumulators inside the loop. */
#define DEFINE_TILE(R)                                                                      \
static void tile_##R##rows(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,          \
                           int32_t flip4, const int8_t *panel, int32_t *tile) {             \
    const uint8_t *row[R];                                                                  \
    for (int32_t i = 0; i < R; i++) row[i] = a + (ptrdiff_t)(i < mr ? i : mr - 1) * lda;    \
    ROWS_##R(ZERO_ROW)                                                                      \
    const int32_t full = k / FQ_KG;                                                         \
    const int32_t rem = k % FQ_KG;                                                          \
    if (rem) {                                                                              \
        LOAD_PANEL_GROUP(panel + (size_t)full * FQ_PANEL_GROUP_BYTES)                       \
        const ptrdiff_t o = (ptrdiff_t)full * FQ_KG;                                        \
        ROWS_##R(TAIL_ROW)                                                                  \
    }                                                                                       \
    const int8_t *w = panel;                                                                \
    for (int32_t g = 0; g < full; g++, w += FQ_PANEL_GROUP_BYTES) {                         \
        LOAD_PANEL_GROUP(w)                                                                 \
        const ptrdiff_t o = (ptrdiff_t)g * FQ_KG;                                           \
        ROWS_##R(GROUP_ROW)                                                                 \
    }                                                                                       \
    ROWS_##R(STORE_ROW)                                                                     \
}

DEFINE_TILE(2)
DEFINE_TILE(3)
DEFINE_TILE(4)
DEFINE_TILE(5)
DEFINE_TILE(6)

void fq_ukernel_avx512vnni(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                           const int8_t *panel, int32_t k_groups, int32_t *tile) {
    (void)k_groups;
    /* past k the panel is zero: flipped padding bytes of the tail add nothing */
    const int32_t flip4 = (int32_t)(a_xor * 0x01010101u);
    switch (mr) {
    case 1: /* fall through: the driver sends mr == 1 to the GEMV kernel */
    case 2: tile_2rows(mr, k, a, lda, flip4, panel, tile); break;
    case 3: tile_3rows(mr, k, a, lda, flip4, panel, tile); break;
    case 4: tile_4rows(mr, k, a, lda, flip4, panel, tile); break;
    case 5: tile_5rows(mr, k, a, lda, flip4, panel, tile); break;
    default: tile_6rows(mr, k, a, lda, flip4, panel, tile); break;
    }
}

/* One row: 4 k-groups per step, each into its own 4 accumulators (16 chains), summed at
 * the end; integer addition is associative, so the order does not change the result. */
#define DP_GROUP(u, x, wg)                                                                   \
    d##u##0 = _mm512_dpbusd_epi32(d##u##0, x, _mm512_load_si512((const void *)((wg) + 0)));   \
    d##u##1 = _mm512_dpbusd_epi32(d##u##1, x, _mm512_load_si512((const void *)((wg) + 64)));  \
    d##u##2 = _mm512_dpbusd_epi32(d##u##2, x, _mm512_load_si512((const void *)((wg) + 128))); \
    d##u##3 = _mm512_dpbusd_epi32(d##u##3, x, _mm512_load_si512((const void *)((wg) + 192)));
#define ZERO_GROUP(u) \
    __m512i d##u##0 = _mm512_setzero_si512(), d##u##1 = d##u##0, d##u##2 = d##u##0, d##u##3 = d##u##0;

void fq_gemv_avx512vnni(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                        const int8_t *panel, int32_t k_groups, int32_t *tile) {
    (void)mr;
    (void)lda;
    (void)k_groups;
    const int32_t flip4 = (int32_t)(a_xor * 0x01010101u);
    ZERO_GROUP(0) ZERO_GROUP(1) ZERO_GROUP(2) ZERO_GROUP(3)
    const int32_t full = k / FQ_KG;
    const int32_t rem = k % FQ_KG;
    const int32_t full4 = full & ~3;
    __m512i x;
    /* the groups that do not fill a step of 4, then the K tail, before the main loop */
    for (int32_t g = full4; g < full; g++) {
        x = _mm512_set1_epi32(load_group(a + (ptrdiff_t)g * FQ_KG) ^ flip4);
        DP_GROUP(0, x, panel + (size_t)g * FQ_PANEL_GROUP_BYTES)
    }
    if (rem) {
        x = _mm512_set1_epi32(load_tail(a + (ptrdiff_t)full * FQ_KG, rem) ^ flip4);
        DP_GROUP(1, x, panel + (size_t)full * FQ_PANEL_GROUP_BYTES)
    }
    const int8_t *w = panel;
    for (int32_t g = 0; g < full4; g += 4, w += 4 * FQ_PANEL_GROUP_BYTES) {
        const uint8_t *ag = a + (ptrdiff_t)g * FQ_KG;
        x = _mm512_set1_epi32(load_group(ag + 0) ^ flip4);  DP_GROUP(0, x, w)
        x = _mm512_set1_epi32(load_group(ag + 4) ^ flip4);  DP_GROUP(1, x, w + FQ_PANEL_GROUP_BYTES)
        x = _mm512_set1_epi32(load_group(ag + 8) ^ flip4);  DP_GROUP(2, x, w + 2 * FQ_PANEL_GROUP_BYTES)
        x = _mm512_set1_epi32(load_group(ag + 12) ^ flip4); DP_GROUP(3, x, w + 3 * FQ_PANEL_GROUP_BYTES)
    }
    _mm512_store_si512((void *)(tile + 0), _mm512_add_epi32(_mm512_add_epi32(d00, d10), _mm512_add_epi32(d20, d30)));
    _mm512_store_si512((void *)(tile + 16), _mm512_add_epi32(_mm512_add_epi32(d01, d11), _mm512_add_epi32(d21, d31)));
    _mm512_store_si512((void *)(tile + 32), _mm512_add_epi32(_mm512_add_epi32(d02, d12), _mm512_add_epi32(d22, d32)));
    _mm512_store_si512((void *)(tile + 48), _mm512_add_epi32(_mm512_add_epi32(d03, d13), _mm512_add_epi32(d23, d33)));
}

/* Row sums with vpsadbw (|x - 0| summed over 8 bytes into a 64-bit lane), of x ^ a_xor. */
void fq_row_sums_avx512(const uint8_t *a, ptrdiff_t lda, int32_t m, int32_t k, uint8_t a_xor, int32_t *sums) {
    const __m512i flip = _mm512_set1_epi8((char)a_xor);
    for (int32_t i = 0; i < m; i++) {
        const uint8_t *row = a + (ptrdiff_t)i * lda;
        __m512i s = _mm512_setzero_si512();
        int32_t kk = 0;
        for (; kk + 64 <= k; kk += 64)
            s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512((const void *)(row + kk)), flip),
                                                    _mm512_setzero_si512()));
        if (kk < k) {   /* masked load: nothing is read past the row (and the rest stays 0) */
            __mmask64 valid = ((__mmask64)1 << (k - kk)) - 1;
            __m512i tail = _mm512_xor_si512(_mm512_maskz_loadu_epi8(valid, row + kk),
                                            _mm512_maskz_mov_epi8(valid, flip));
            s = _mm512_add_epi64(s, _mm512_sad_epu8(tail, _mm512_setzero_si512()));
        }
        sums[i] = (int32_t)(uint32_t)(uint64_t)_mm512_reduce_add_epi64(s);   /* modulo 2^32 */
    }
}
#endif
