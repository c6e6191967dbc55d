/* AVX2 microkernels without VNNI, exact: u8 and s8 are widened to int16 and multiplied with
 * vpmaddwd (int16 x int16 pairs -> int32, cannot overflow: 2 * 255 * 128 < 2^31). The
 * saturating vpmaddubsw is never used (255 * 127 * 2 > 32767). Scalar twin: ukernel_scalar.c.
 *
 * Same packed panels as the VNNI kernel, any width nr (16, 32, 48, 64: nr / 8 column blocks of
 * one k-loop each; a narrow last panel costs its own columns). 16 bytes of a k-group (4 columns x 4 k) sign-extend
 * to one ymm of int16; one activation group (4 k) zero-extends to 4 int16, broadcast to all
 * four 64-bit lanes. vpmaddwd then leaves per column two half sums (k0+k1, k2+k3) in adjacent
 * int32 lanes; they are added horizontally (vphaddd) once, after the k-loop.
 * Activation rows are widened to int16 once per tile and k-chunk, so the inner loop has one
 * vpbroadcastq per row and group. Tile: 4 rows x 8 columns = 8 accumulators per k-chunk.
 * int8 activations (a_xor = 0x80) are flipped to uint8 where they are widened. */
#include "fastq.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2")
#include <immintrin.h>
#include <string.h>

#define MR_AVX2 4
#define KC_GROUPS 256           /* k-groups per chunk: 4 rows x 1024 k of int16 = 8 KiB */
#define COLS 8                  /* columns per register block */

static inline __m256i widen_w(const int8_t *p) {          /* 16 bytes -> 16 int16 */
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
}

/* half sums [c0 k01, c0 k23, c1 .., c1 .., c2, c2, c3, c3] x2 -> 8 column sums */
static inline __m256i finish_cols(__m256i h0, __m256i h1) {
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(h0, h1), 0xD8);
}

/* rows of a (k-groups [g0, g0 + ng)) as int16, 4 per group, zero past k */
static void widen_rows(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                       int32_t g0, int32_t ng, int16_t *a16) {
    const __m128i flip = _mm_set1_epi8((char)a_xor);
    for (int32_t i = 0; i < mr; i++) {
        const uint8_t *row = a + i * lda;
        int16_t *dst = a16 + (size_t)i * KC_GROUPS * FQ_KG;
        int32_t k0 = g0 * FQ_KG;
        int32_t kend = (g0 + ng) * FQ_KG;
        int32_t kk = k0;
        for (; kk + 16 <= kend && kk + 16 <= k; kk += 16)
            _mm256_storeu_si256((__m256i *)(dst + (kk - k0)),
                                _mm256_cvtepu8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(row + kk)), flip)));
        for (; kk < kend; kk++) dst[kk - k0] = kk < k ? (int16_t)(uint8_t)(row[kk] ^ a_xor) : 0;
    }
}

static inline __attribute__((always_inline)) void tile_rows(
        const int mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor, const int8_t *panel,
        int32_t k_groups, int32_t nr, int32_t *tile) {
    const size_t group_bytes = (size_t)nr * FQ_KG;
    int16_t a16[MR_AVX2 * KC_GROUPS * FQ_KG] __attribute__((aligned(32)));
    int32_t half[MR_AVX2][2 * FQ_NR] __attribute__((aligned(32)));
    for (int32_t g0 = 0; g0 < k_groups; g0 += KC_GROUPS) {
        int32_t ng = k_groups - g0 < KC_GROUPS ? k_groups - g0 : KC_GROUPS;
        int first = g0 == 0, last = g0 + ng == k_groups;
        widen_rows(mr, k, a, lda, a_xor, g0, ng, a16);
        for (int b = 0; b < nr / COLS; b++) {
            __m256i acc[MR_AVX2][2];
            for (int i = 0; i < mr; i++)
                for (int j = 0; j < 2; j++)
                    acc[i][j] = first ? _mm256_setzero_si256()
                                      : _mm256_load_si256((const __m256i *)&half[i][b * 16 + 8 * j]);
            const int8_t *w = panel + (size_t)g0 * group_bytes + b * COLS * FQ_KG;
            for (int32_t g = 0; g < ng; g++, w += group_bytes) {
                __m256i w0 = widen_w(w);
                __m256i w1 = widen_w(w + 16);
                for (int i = 0; i < mr; i++) {
                    int64_t x4;
                    memcpy(&x4, a16 + (size_t)i * KC_GROUPS * FQ_KG + g * FQ_KG, 8);
                    __m256i x = _mm256_set1_epi64x(x4);
                    acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(w0, x));
                    acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(w1, x));
                }
            }
            for (int i = 0; i < mr; i++) {
                if (last)
                    _mm256_store_si256((__m256i *)(tile + i * FQ_NR + b * COLS),
                                       finish_cols(acc[i][0], acc[i][1]));
                else
                    for (int j = 0; j < 2; j++)
                        _mm256_store_si256((__m256i *)&half[i][b * 16 + 8 * j], acc[i][j]);
            }
        }
    }
    if (k_groups == 0)
        for (int i = 0; i < mr; i++) memset(tile + i * FQ_NR, 0, (size_t)nr * sizeof(int32_t));
}

#define TILE_FN(R)                                                                       \
    static void tile_##R(int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t x, const int8_t *panel, \
                         int32_t kg, int32_t nr, int32_t *tile) { tile_rows(R, k, a, lda, x, panel, kg, nr, tile); }
TILE_FN(1)
TILE_FN(2)
TILE_FN(3)
TILE_FN(4)

void fq_ukernel_avx2(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                     const int8_t *panel, int32_t k_groups, int32_t nr, int32_t *tile) {
    switch (mr) {
    case 1: tile_1(k, a, lda, a_xor, panel, k_groups, nr, tile); break;
    case 2: tile_2(k, a, lda, a_xor, panel, k_groups, nr, tile); break;
    case 3: tile_3(k, a, lda, a_xor, panel, k_groups, nr, tile); break;
    default: tile_4(k, a, lda, a_xor, panel, k_groups, nr, tile); break;
    }
}

/* one activation group (4 bytes, or the k % 4 tail) as 4 int16 in every 64-bit lane */
static inline __m256i broadcast_group(const uint8_t *a, int32_t g, int32_t k, uint32_t flip4) {
    uint32_t v = 0;
    int32_t k0 = g * FQ_KG;
    if (k0 + FQ_KG <= k) memcpy(&v, a + k0, 4);
    else for (int32_t j = 0; k0 + j < k; j++) v |= (uint32_t)a[k0 + j] << (8 * j);
    v ^= flip4;        /* past k the weights are zero: the flipped padding adds nothing */
    __m128i x16 = _mm_cvtepu8_epi16(_mm_cvtsi32_si128((int32_t)v));
    return _mm256_broadcastq_epi64(x16);
}

/* One row of a 64-wide panel, bound by the weight stream: each half panel (32 columns) in 8
 * independent accumulator chains. */
void fq_gemv_avx2(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                  const int8_t *panel, int32_t k_groups, int32_t nr, int32_t *tile) {
    (void)mr;
    (void)lda;
    (void)nr;
    const uint32_t flip4 = a_xor * 0x01010101u;
    for (int h = 0; h < 2; h++) {
        __m256i acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_si256();
        const int8_t *w = panel + h * 128;
        for (int32_t g = 0; g < k_groups; g++, w += FQ_PANEL_GROUP_BYTES) {
            __m256i x = broadcast_group(a, g, k, flip4);
            for (int j = 0; j < 8; j++)
                acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(widen_w(w + 16 * j), x));
        }
        for (int j = 0; j < 4; j++)
            _mm256_store_si256((__m256i *)(tile + h * 32 + j * COLS),
                               finish_cols(acc[2 * j], acc[2 * j + 1]));
    }
}

/* Row sums with vpsadbw (|x - 0| summed over 8 bytes into a 64-bit lane), of x ^ a_xor. */
void fq_row_sums_avx2(const uint8_t *a, ptrdiff_t lda, int32_t m, int32_t k, uint8_t a_xor, int32_t *sums) {
    const __m256i flip = _mm256_set1_epi8((char)a_xor);
    for (int32_t i = 0; i < m; i++) {
        const uint8_t *row = a + (ptrdiff_t)i * lda;
        __m256i s = _mm256_setzero_si256();
        int32_t kk = 0;
        for (; kk + 32 <= k; kk += 32)
            s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + kk)), flip),
                                                    _mm256_setzero_si256()));
        __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        uint64_t total = (uint64_t)_mm_cvtsi128_si64(h) + (uint64_t)_mm_extract_epi64(h, 1);
        for (; kk < k; kk++) total += (uint8_t)(row[kk] ^ a_xor);
        sums[i] = (int32_t)(uint32_t)total;   /* modulo 2^32: the acc arithmetic wraps */
    }
}
#endif
