/* AVX-512 VNNI microkernels (vpdpbusd: 4 u8 x s8 products summed into each int32 lane).
 * Scalar twin: ukernel_scalar.c.
 *
 * One kernel per panel width nr = 16V (V = 1..4 zmm of 16 int32 per row and k-group) with
 * R rows per tile, R chosen so R*V accumulators (up to 24) plus V weight registers stay in the
 * 32 zmm: 16 rows x 16 columns, 12 x 32, 8 x 48, 6 x 64 (kernels.h FQ_MR_AVX512_W*). Per
 * k-group: V zmm loads of the panel (nr columns x 4 k), one 4-byte broadcast per activation
 * row, R*V vpdpbusd: a narrow panel costs its own columns (a 16-column panel in the 64-wide
 * kernel would compute 48 zero columns) and more rows share each weight load.
 * The K tail (K % 4 bytes) is assembled byte by byte, so an activation row is never read past
 * its end; the panel is zero padded, so the missing lanes add nothing.
 * M = 1 on a 64-wide panel has its own kernel: 16 independent accumulator chains over 4
 * k-groups, since one row is bound by the weight stream, not by vpdpbusd latency.
 * uint8 activations are broadcast straight from memory (vpbroadcastd zmm, m32: a load, no
 * vector ALU); int8 ones (a_xor = 0x80) are flipped to uint8 after the broadcast by one vpxord,
 * in a separate instance of each tile function, so the uint8 loop carries no xor at all. */
#include "fastq.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma")
#include <immintrin.h>
#include <string.h>
#include "gemm/kernels.h"
#include "gemm/epilogue_avx512_steps.h"

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

static inline __m512i broadcast(int32_t v, int flip, __m512i flipv) {
    __m512i x = _mm512_set1_epi32(v);
    return flip ? _mm512_xor_si512(x, flipv) : x;
}

/* Per width (V zmm per row): the accumulators c<row><v>, the panel group's weights w<v>. Each
 * tile function keeps R*V named accumulators in zmm registers through the k-loop (an array of
 * __m512i was kept in memory by gcc). */
#define ZERO_1(i) __m512i c##i##0 = _mm512_setzero_si512();
#define ZERO_2(i) ZERO_1(i) __m512i c##i##1 = _mm512_setzero_si512();
#define ZERO_3(i) ZERO_2(i) __m512i c##i##2 = _mm512_setzero_si512();
#define ZERO_4(i) ZERO_3(i) __m512i c##i##3 = _mm512_setzero_si512();
#define DP_1(i, x) c##i##0 = _mm512_dpbusd_epi32(c##i##0, x, w0);
#define DP_2(i, x) DP_1(i, x) c##i##1 = _mm512_dpbusd_epi32(c##i##1, x, w1);
#define DP_3(i, x) DP_2(i, x) c##i##2 = _mm512_dpbusd_epi32(c##i##2, x, w2);
#define DP_4(i, x) DP_3(i, x) c##i##3 = _mm512_dpbusd_epi32(c##i##3, x, w3);
#define LOAD_1(p) const __m512i w0 = _mm512_load_si512((const void *)((p) + 0));
#define LOAD_2(p) LOAD_1(p) const __m512i w1 = _mm512_load_si512((const void *)((p) + 64));
#define LOAD_3(p) LOAD_2(p) const __m512i w2 = _mm512_load_si512((const void *)((p) + 128));
#define LOAD_4(p) LOAD_3(p) const __m512i w3 = _mm512_load_si512((const void *)((p) + 192));
#define STORE_1(i) _mm512_store_si512((void *)(tile + i * FQ_NR + 0), c##i##0);
#define STORE_2(i) STORE_1(i) _mm512_store_si512((void *)(tile + i * FQ_NR + 16), c##i##1);
#define STORE_3(i) STORE_2(i) _mm512_store_si512((void *)(tile + i * FQ_NR + 32), c##i##2);
#define STORE_4(i) STORE_3(i) _mm512_store_si512((void *)(tile + i * FQ_NR + 48), c##i##3);
#define GROUP_ROW_1(i) { __m512i x = broadcast(load_group(ROW_AT(i)), flip, flipv); DP_1(i, x) }
#define GROUP_ROW_2(i) { __m512i x = broadcast(load_group(ROW_AT(i)), flip, flipv); DP_2(i, x) }
#define GROUP_ROW_3(i) { __m512i x = broadcast(load_group(ROW_AT(i)), flip, flipv); DP_3(i, x) }
#define GROUP_ROW_4(i) { __m512i x = broadcast(load_group(ROW_AT(i)), flip, flipv); DP_4(i, x) }
#define TAIL_ROW_1(i) { __m512i x = broadcast(load_tail(a + i * lda + o, rem), flip, flipv); DP_1(i, x) }
#define TAIL_ROW_2(i) { __m512i x = broadcast(load_tail(a + i * lda + o, rem), flip, flipv); DP_2(i, x) }
#define TAIL_ROW_3(i) { __m512i x = broadcast(load_tail(a + i * lda + o, rem), flip, flipv); DP_3(i, x) }
#define TAIL_ROW_4(i) { __m512i x = broadcast(load_tail(a + i * lda + o, rem), flip, flipv); DP_4(i, x) }
/* Row i of the group at b<i/4> + i%4 * lda: 16 rows need 4 base pointers and 3 multiples of
 * lda in registers (gcc, left alone, kept 16 row offsets and spilled some to the stack and to
 * xmm registers, vmovq uops beside every vpdpbusd) */
#define ROW_AT(i) (((i) < 4 ? b0 : (i) < 8 ? b1 : (i) < 12 ? b2 : b3) + \
                   ((i) % 4 == 0 ? 0 : (i) % 4 == 1 ? l1 : (i) % 4 == 2 ? l2 : l3))
#define ROWS_1(X) X(0)
#define ROWS_2(X) ROWS_1(X) X(1)
#define ROWS_3(X) ROWS_2(X) X(2)
#define ROWS_4(X) ROWS_3(X) X(3)
#define ROWS_5(X) ROWS_4(X) X(4)
#define ROWS_6(X) ROWS_5(X) X(5)
#define ROWS_7(X) ROWS_6(X) X(6)
#define ROWS_8(X) ROWS_7(X) X(7)
#define ROWS_9(X) ROWS_8(X) X(8)
#define ROWS_10(X) ROWS_9(X) X(9)
#define ROWS_11(X) ROWS_10(X) X(10)
#define ROWS_12(X) ROWS_11(X) X(11)
#define ROWS_13(X) ROWS_12(X) X(12)
#define ROWS_14(X) ROWS_13(X) X(13)
#define ROWS_15(X) ROWS_14(X) X(14)
#define ROWS_16(X) ROWS_15(X) X(15)

/* Tile of exactly R rows of a panel of width 16V; flip is a constant in each instance. The K
 * tail first: after the main loop only stores remain, which keeps gcc from spilling the
 * accumulators inside the loop. */
#define K_LOOP(V, R)                                                                            \
    const __m512i flipv = _mm512_set1_epi8((char)0x80);                                         \
    const size_t group_bytes = (size_t)(V) * 64;                                                \
    ROWS_##R(ZERO_##V)                                                                          \
    const int32_t full = k / FQ_KG;                                                             \
    const int32_t rem = k % FQ_KG;                                                              \
    if (rem) {                                                                                  \
        LOAD_##V(panel + (size_t)full * group_bytes)                                            \
        const ptrdiff_t o = (ptrdiff_t)full * FQ_KG;                                            \
        ROWS_##R(TAIL_ROW_##V)                                                                  \
    }                                                                                           \
    const int8_t *w = panel;                                                                    \
    const int8_t *w_end = panel + (size_t)full * group_bytes;                                   \
    const ptrdiff_t l1 = lda, l2 = 2 * lda, l3 = 3 * lda;                                       \
    const uint8_t *b0 = a, *b1 = a + 4 * lda, *b2 = a + 8 * lda, *b3 = a + 12 * lda;            \
    for (; w < w_end; w += group_bytes) {                                                       \
        /* opaque to gcc: each base stays its own register, not one induction + offsets */     \
        __asm__("" : "+r"(b0), "+r"(b1), "+r"(b2), "+r"(b3));                                   \
        LOAD_##V(w)                                                                             \
        ROWS_##R(GROUP_ROW_##V)                                                                 \
        b0 += FQ_KG; b1 += FQ_KG; b2 += FQ_KG; b3 += FQ_KG;                                     \
    }

#define DEFINE_TILE(V, R)                                                                       \
static inline __attribute__((always_inline)) void body_##V##_##R(                               \
        int32_t k, const uint8_t *a, ptrdiff_t lda, const int flip, const int8_t *panel,          \
        int32_t *tile) {                                                                        \
    K_LOOP(V, R)                                                                                \
    ROWS_##R(STORE_##V)                                                                         \
}                                                                                               \
static void tile_##V##_##R##_u8(int32_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, \
                                int32_t *tile) { body_##V##_##R(k, a, lda, 0, panel, tile); }    \
static void tile_##V##_##R##_s8(int32_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, \
                                int32_t *tile) { body_##V##_##R(k, a, lda, 1, panel, tile); }

typedef void (*tile_fn)(int32_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, int32_t *tile);
#define TILE_PAIR(V, R) {tile_##V##_##R##_u8, tile_##V##_##R##_s8},

DEFINE_TILE(1, 1) DEFINE_TILE(1, 2) DEFINE_TILE(1, 3) DEFINE_TILE(1, 4) DEFINE_TILE(1, 5) DEFINE_TILE(1, 6)
DEFINE_TILE(1, 7) DEFINE_TILE(1, 8) DEFINE_TILE(1, 9) DEFINE_TILE(1, 10) DEFINE_TILE(1, 11)
DEFINE_TILE(1, 12) DEFINE_TILE(1, 13) DEFINE_TILE(1, 14) DEFINE_TILE(1, 15) DEFINE_TILE(1, 16)
DEFINE_TILE(2, 1) DEFINE_TILE(2, 2) DEFINE_TILE(2, 3) DEFINE_TILE(2, 4) DEFINE_TILE(2, 5) DEFINE_TILE(2, 6)
DEFINE_TILE(2, 7) DEFINE_TILE(2, 8) DEFINE_TILE(2, 9) DEFINE_TILE(2, 10) DEFINE_TILE(2, 11)
DEFINE_TILE(2, 12)
DEFINE_TILE(3, 1) DEFINE_TILE(3, 2) DEFINE_TILE(3, 3) DEFINE_TILE(3, 4) DEFINE_TILE(3, 5) DEFINE_TILE(3, 6)
DEFINE_TILE(3, 7) DEFINE_TILE(3, 8)
DEFINE_TILE(4, 1) DEFINE_TILE(4, 2) DEFINE_TILE(4, 3) DEFINE_TILE(4, 4) DEFINE_TILE(4, 5) DEFINE_TILE(4, 6)

/* [rows - 1][flip] per width */
static const tile_fn tiles_w16[FQ_MR_AVX512_W16][2] = {
    TILE_PAIR(1, 1) TILE_PAIR(1, 2) TILE_PAIR(1, 3) TILE_PAIR(1, 4) TILE_PAIR(1, 5) TILE_PAIR(1, 6)
    TILE_PAIR(1, 7) TILE_PAIR(1, 8) TILE_PAIR(1, 9) TILE_PAIR(1, 10) TILE_PAIR(1, 11)
    TILE_PAIR(1, 12) TILE_PAIR(1, 13) TILE_PAIR(1, 14) TILE_PAIR(1, 15) TILE_PAIR(1, 16)};
static const tile_fn tiles_w32[FQ_MR_AVX512_W32][2] = {
    TILE_PAIR(2, 1) TILE_PAIR(2, 2) TILE_PAIR(2, 3) TILE_PAIR(2, 4) TILE_PAIR(2, 5) TILE_PAIR(2, 6)
    TILE_PAIR(2, 7) TILE_PAIR(2, 8) TILE_PAIR(2, 9) TILE_PAIR(2, 10) TILE_PAIR(2, 11)
    TILE_PAIR(2, 12)};
static const tile_fn tiles_w48[FQ_MR_AVX512_W48][2] = {
    TILE_PAIR(3, 1) TILE_PAIR(3, 2) TILE_PAIR(3, 3) TILE_PAIR(3, 4) TILE_PAIR(3, 5) TILE_PAIR(3, 6)
    TILE_PAIR(3, 7) TILE_PAIR(3, 8)};
static const tile_fn tiles_w64[FQ_MR_AVX512_W64][2] = {
    TILE_PAIR(4, 1) TILE_PAIR(4, 2) TILE_PAIR(4, 3) TILE_PAIR(4, 4) TILE_PAIR(4, 5) TILE_PAIR(4, 6)};

/* mr rows (1..the width's rows per tile; the driver never asks for more) */
#define DEFINE_UKERNEL(W)                                                                        \
void fq_ukernel_avx512vnni_w##W(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,          \
                                uint8_t a_xor, const int8_t *panel, int32_t k_groups, int32_t nr, \
                                int32_t *tile) {                                                 \
    (void)k_groups;                                                                              \
    (void)nr;                                                                                    \
    int32_t r = mr < 1 ? 1 : mr > FQ_MR_AVX512_W##W ? FQ_MR_AVX512_W##W : mr;                    \
    tiles_w##W[r - 1][a_xor != 0](k, a, lda, panel, tile);                                       \
}
DEFINE_UKERNEL(16)
DEFINE_UKERNEL(32)
DEFINE_UKERNEL(48)
DEFINE_UKERNEL(64)


/* ---- fused: the byte epilogue on the accumulators still in registers ---------------------
 * After the k-loop each column block v (16 columns at n0 + 16v) of every row goes through the
 * very step function the tile epilogue uses (epilogue_avx512_steps.h), in the same order of
 * operations: acc = raw + col_offset - row_sum * zw, then the variant's step, stored as bytes
 * (int8: XOR 0x80 from the per-call constants). Blocks outside, rows inside, as there, so each
 * block's column constants are loaded once and its accumulators die as it is stored. The
 * panel width nr = 16V and nc > 16(V - 1) columns are valid: only the last block is masked. */
#define EPI_ROW(i, v)                                                                           \
    {                                                                                           \
        __m512i acc = _mm512_add_epi32(c##i##v, col_offset);                                    \
        if (row_sums)                                                                           \
            acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(row_sums[i]), zw)); \
        STEP(&kc, &cols, acc, left, (uint8_t *)out + (ptrdiff_t)(i) * ldo + n);                 \
    }
#define EPI_ROW_0(i) EPI_ROW(i, 0)
#define EPI_ROW_1(i) EPI_ROW(i, 1)
#define EPI_ROW_2(i) EPI_ROW(i, 2)
#define EPI_ROW_3(i) EPI_ROW(i, 3)
#define EPI_BLOCK(v, R)                                                                         \
    {                                                                                           \
        const int32_t n = n0 + 16 * (v);                                                        \
        const int32_t left = nc - 16 * (v);                                                     \
        const COLS_T cols = COLS(ep, n);                                                        \
        const __m512i col_offset = load_i(ep->col_offset + n);                                  \
        const __m512i zw = row_sums ? load_i(ep->w_zero_point + n) : _mm512_setzero_si512();    \
        ROWS_##R(EPI_ROW_##v)                                                                   \
    }
#define EPI_BLOCKS_1(R) EPI_BLOCK(0, R)
#define EPI_BLOCKS_2(R) EPI_BLOCKS_1(R) EPI_BLOCK(1, R)
#define EPI_BLOCKS_3(R) EPI_BLOCKS_2(R) EPI_BLOCK(2, R)
#define EPI_BLOCKS_4(R) EPI_BLOCKS_3(R) EPI_BLOCK(3, R)

#define FUSED_ARGS                                                                              \
    int32_t k, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, int32_t nc,                \
    const int32_t *row_sums, int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo
typedef void (*fused_tile_fn)(FUSED_ARGS);

/* COLS_T, COLS, STEP name the variant's column constants and step (defined around each use) */
#define DEFINE_FUSED_TILE(VAR, V, R)                                                            \
static inline __attribute__((always_inline)) void fbody_##VAR##_##V##_##R(                      \
        FUSED_ARGS, const int flip) {                                                           \
    K_LOOP(V, R)                                                                                \
    const consts kc = make_consts(ep, ep->out_signed ? 0x80 : 0);                               \
    EPI_BLOCKS_##V(R)                                                                           \
}                                                                                               \
static void fused_##VAR##_##V##_##R##_u8(FUSED_ARGS) {                                          \
    fbody_##VAR##_##V##_##R(k, a, lda, panel, nc, row_sums, n0, ep, out, ldo, 0);               \
}                                                                                               \
static void fused_##VAR##_##V##_##R##_s8(FUSED_ARGS) {                                          \
    fbody_##VAR##_##V##_##R(k, a, lda, panel, nc, row_sums, n0, ep, out, ldo, 1);               \
}
#define FUSED_PAIR(VAR, V, R) {fused_##VAR##_##V##_##R##_u8, fused_##VAR##_##V##_##R##_s8},

/* Every (width V, rows R) shape, per width: X(VAR, V, R) for each (one list, used for the
 * tile functions and for their tables) */
#define SHAPES_W16(X, VAR)                                                                      \
    X(VAR, 1, 1) X(VAR, 1, 2) X(VAR, 1, 3) X(VAR, 1, 4) X(VAR, 1, 5) X(VAR, 1, 6) X(VAR, 1, 7)  \
    X(VAR, 1, 8) X(VAR, 1, 9) X(VAR, 1, 10) X(VAR, 1, 11) X(VAR, 1, 12) X(VAR, 1, 13)           \
    X(VAR, 1, 14) X(VAR, 1, 15) X(VAR, 1, 16)
#define SHAPES_W32(X, VAR)                                                                      \
    X(VAR, 2, 1) X(VAR, 2, 2) X(VAR, 2, 3) X(VAR, 2, 4) X(VAR, 2, 5) X(VAR, 2, 6) X(VAR, 2, 7)  \
    X(VAR, 2, 8) X(VAR, 2, 9) X(VAR, 2, 10) X(VAR, 2, 11) X(VAR, 2, 12)
#define SHAPES_W48(X, VAR)                                                                      \
    X(VAR, 3, 1) X(VAR, 3, 2) X(VAR, 3, 3) X(VAR, 3, 4) X(VAR, 3, 5) X(VAR, 3, 6) X(VAR, 3, 7)  \
    X(VAR, 3, 8)
#define SHAPES_W64(X, VAR)                                                                      \
    X(VAR, 4, 1) X(VAR, 4, 2) X(VAR, 4, 3) X(VAR, 4, 4) X(VAR, 4, 5) X(VAR, 4, 6)
#define SHAPES(X, VAR) SHAPES_W16(X, VAR) SHAPES_W32(X, VAR) SHAPES_W48(X, VAR) SHAPES_W64(X, VAR)

/* every (width, rows) shape of one variant, its [rows - 1][flip] tables per width, and the
 * entry point per width that the backend table holds */
#define DEFINE_FUSED_VARIANT(VAR)                                                               \
    SHAPES(DEFINE_FUSED_TILE, VAR)                                                              \
    static const fused_tile_fn VAR##_w16[FQ_MR_AVX512_W16][2] = {SHAPES_W16(FUSED_PAIR, VAR)};  \
    static const fused_tile_fn VAR##_w32[FQ_MR_AVX512_W32][2] = {SHAPES_W32(FUSED_PAIR, VAR)};  \
    static const fused_tile_fn VAR##_w48[FQ_MR_AVX512_W48][2] = {SHAPES_W48(FUSED_PAIR, VAR)};  \
    static const fused_tile_fn VAR##_w64[FQ_MR_AVX512_W64][2] = {SHAPES_W64(FUSED_PAIR, VAR)};  \
    DEFINE_FUSED_ENTRY(VAR, 16) DEFINE_FUSED_ENTRY(VAR, 32) DEFINE_FUSED_ENTRY(VAR, 48)         \
    DEFINE_FUSED_ENTRY(VAR, 64)                                                                 \
    DEFINE_RUNS_VARIANT(VAR)

/* ---- fused over runs of K (fq_k_runs: conv/clip.c's windows) -----------------------------
 * The k-loop of K_LOOP once per run (the panel read from the run's first group on, the A rows
 * straight on: they hold the runs back to back), uint8 A only (no flip) and whole k-groups (no
 * tail); then the same epilogue blocks. */
#define K_LOOP_RUNS(V, R)                                                                       \
    const int flip = 0;                                                                         \
    const __m512i flipv = _mm512_setzero_si512();                                               \
    const size_t group_bytes = (size_t)(V) * 64;                                                \
    ROWS_##R(ZERO_##V)                                                                          \
    const ptrdiff_t l1 = lda, l2 = 2 * lda, l3 = 3 * lda;                                       \
    const uint8_t *b0 = a, *b1 = a + 4 * lda, *b2 = a + 8 * lda, *b3 = a + 12 * lda;            \
    for (int32_t s = 0; s < runs->count; s++) {                                                 \
        const int8_t *w = panel + (size_t)runs->first[s] * group_bytes;                         \
        const int8_t *w_end = w + (size_t)runs->groups[s] * group_bytes;                        \
        for (; w < w_end; w += group_bytes) {                                                   \
            __asm__("" : "+r"(b0), "+r"(b1), "+r"(b2), "+r"(b3));                               \
            LOAD_##V(w)                                                                         \
            ROWS_##R(GROUP_ROW_##V)                                                             \
            b0 += FQ_KG; b1 += FQ_KG; b2 += FQ_KG; b3 += FQ_KG;                                 \
        }                                                                                       \
    }

#define RUNS_ARGS                                                                               \
    const fq_k_runs *runs, const uint8_t *a, ptrdiff_t lda, const int8_t *panel, int32_t nc,    \
    const int32_t *row_sums, int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo
typedef void (*runs_tile_fn)(RUNS_ARGS);
#define DEFINE_RUNS_TILE(VAR, V, R)                                                             \
static void runs_##VAR##_##V##_##R(RUNS_ARGS) {                                                 \
    K_LOOP_RUNS(V, R)                                                                           \
    const consts kc = make_consts(ep, ep->out_signed ? 0x80 : 0);                               \
    EPI_BLOCKS_##V(R)                                                                           \
}
#define RUNS_ENTRY_OF(VAR, V, R) runs_##VAR##_##V##_##R,
#define DEFINE_RUNS_ENTRY(VAR, W)                                                               \
    static void VAR##_runs_w##W(int32_t mr, const fq_k_runs *runs, const uint8_t *a, ptrdiff_t lda, \
                                const int8_t *panel, int32_t nr, int32_t nc, const int32_t *row_sums, \
                                int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {  \
        (void)nr;                                                                               \
        static const runs_tile_fn tiles[FQ_MR_AVX512_W##W] = {SHAPES_W##W(RUNS_ENTRY_OF, VAR)}; \
        int32_t r = mr < 1 ? 1 : mr > FQ_MR_AVX512_W##W ? FQ_MR_AVX512_W##W : mr;               \
        tiles[r - 1](runs, a, lda, panel, nc, row_sums, n0, ep, out, ldo);                      \
    }
#define DEFINE_RUNS_VARIANT(VAR)                                                                \
    SHAPES(DEFINE_RUNS_TILE, VAR)                                                               \
    DEFINE_RUNS_ENTRY(VAR, 16) DEFINE_RUNS_ENTRY(VAR, 32) DEFINE_RUNS_ENTRY(VAR, 48)            \
    DEFINE_RUNS_ENTRY(VAR, 64)

/* mr rows (1..the width's rows per tile; the driver never asks for more) */
#define DEFINE_FUSED_ENTRY(VAR, W)                                                              \
    static void VAR##_entry_w##W(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda,        \
                                 uint8_t a_xor, const int8_t *panel, int32_t k_groups, int32_t nr, \
                                 int32_t nc, const int32_t *row_sums, int32_t n0,               \
                                 const fq_epilogue *ep, void *out, ptrdiff_t ldo) {             \
        (void)k_groups;                                                                         \
        (void)nr;                                                                               \
        int32_t r = mr < 1 ? 1 : mr > FQ_MR_AVX512_W##W ? FQ_MR_AVX512_W##W : mr;               \
        VAR##_w##W[r - 1][a_xor != 0](k, a, lda, panel, nc, row_sums, n0, ep, out, ldo);        \
    }

#define COLS_T cols_float
#define COLS cols_scale_bias
#define STEP step_fbgemm
DEFINE_FUSED_VARIANT(fbgemm)
#undef STEP
#define STEP step_onednn
DEFINE_FUSED_VARIANT(onednn)
#undef STEP
#undef COLS
#undef COLS_T
#define COLS_T cols_scale_only
#define COLS cols_scale
#define STEP step_qnnpack
DEFINE_FUSED_VARIANT(qnnpack)
#undef STEP
#undef COLS
#undef COLS_T

/* the four widths' entries of one variant into its column of a backend table */
#define FILL_WIDTHS(table, VAR, KIND, EPV)                                                      \
    (table)[0][EPV] = VAR##_##KIND##_w16;                                                       \
    (table)[1][EPV] = VAR##_##KIND##_w32;                                                       \
    (table)[2][EPV] = VAR##_##KIND##_w48;                                                       \
    (table)[3][EPV] = VAR##_##KIND##_w64;

void fq_fused_avx512vnni(fq_fused_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]) {
    FILL_WIDTHS(table, fbgemm, entry, FQ_EPV_FBGEMM)
    FILL_WIDTHS(table, qnnpack, entry, FQ_EPV_QNNPACK)
    FILL_WIDTHS(table, onednn, entry, FQ_EPV_ONEDNN)
}

void fq_fused_runs_avx512vnni(fq_fused_runs_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]) {
    FILL_WIDTHS(table, fbgemm, runs, FQ_EPV_FBGEMM)
    FILL_WIDTHS(table, qnnpack, runs, FQ_EPV_QNNPACK)
    FILL_WIDTHS(table, onednn, runs, FQ_EPV_ONEDNN)
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
                        const int8_t *panel, int32_t k_groups, int32_t nr, int32_t *tile) {
    (void)mr;
    (void)nr;
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
