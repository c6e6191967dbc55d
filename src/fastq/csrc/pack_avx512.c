/* AVX-512 weight packer: the panel layout of fastq.h (scalar twin: pack_rows_scalar in
 * pack.c), with each row's sum, min and max gathered in the same pass.
 *
 * A k-group of a panel is 64 columns x 4 bytes, i.e. one dword per column: packing is a
 * dword transpose. Per panel and per 64 k (16 groups): one 64-byte load from each of the 64
 * rows (masked past K, so the tail group is zero filled), four 16x16 dword transposes, and
 * 16 groups x 256 bytes written in order. Rows past N are zero. Every byte of the panels is
 * written, so the buffer needs no memset. */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX512)
#pragma GCC target("avx512f,avx512bw,avx512vl")
#include <immintrin.h>
#include "fastq.h"

/* r[0..15] (16 rows of 16 dwords) -> r[c] = column c (16 rows) */
static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j */
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        r[0 + j] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        r[12 + j] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

void fq_pack_panels_avx512(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k,
                           int8_t *data, int32_t *row_sum, int32_t *row_min, int32_t *row_max) {
    const int32_t k_groups = (k + FQ_KG - 1) / FQ_KG;
    const int32_t n_panels = (n + FQ_NR - 1) / FQ_NR;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int32_t p = 0; p < n_panels; p++) {
        int8_t *panel = data + (size_t)p * k_groups * FQ_PANEL_GROUP_BYTES;
        int32_t rows = n - p * FQ_NR < FQ_NR ? n - p * FQ_NR : FQ_NR;
        __m512i sum[FQ_NR], lo[FQ_NR], hi[FQ_NR];
        for (int c = 0; c < FQ_NR; c++) {
            sum[c] = _mm512_setzero_si512();
            lo[c] = _mm512_set1_epi8(127);
            hi[c] = _mm512_set1_epi8(-128);
        }
        for (int32_t k0 = 0; k0 < k; k0 += 64) {
            __mmask64 valid = k - k0 >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (k - k0)) - 1);
            int32_t groups = k_groups - k0 / FQ_KG < 16 ? k_groups - k0 / FQ_KG : 16;
            for (int q = 0; q < 4; q++) {
                __m512i r[16];
                for (int i = 0; i < 16; i++) {
                    int c = q * 16 + i;
                    if (c < rows) {
                        const int8_t *src = w + (ptrdiff_t)(p * FQ_NR + c) * ldw + k0;
                        __m512i x = _mm512_maskz_loadu_epi8(valid, src);
                        /* signed bytes + 128 are unsigned: vpsadbw sums them */
                        __m512i xu = _mm512_maskz_mov_epi8(valid, _mm512_xor_si512(x, bias));
                        sum[c] = _mm512_add_epi64(sum[c], _mm512_sad_epu8(xu, _mm512_setzero_si512()));
                        lo[c] = _mm512_mask_min_epi8(lo[c], valid, lo[c], x);
                        hi[c] = _mm512_mask_max_epi8(hi[c], valid, hi[c], x);
                        r[i] = x;
                    } else {
                        r[i] = _mm512_setzero_si512();
                    }
                }
                transpose16(r);
                for (int g = 0; g < groups; g++)
                    _mm512_store_si512((void *)(panel + (size_t)(k0 / FQ_KG + g) * FQ_PANEL_GROUP_BYTES + q * 64),
                                       r[g]);
            }
        }
        for (int32_t c = 0; c < rows; c++) {
            int32_t i = p * FQ_NR + c;
            int64_t s = _mm512_reduce_add_epi64(sum[c]) - 128 * (int64_t)k;
            row_sum[i] = (int32_t)(uint32_t)(uint64_t)s;
            /* bytes -> dwords, then the 32-bit reductions */
            __m512i l0 = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(lo[c]));
            __m512i h0 = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(hi[c]));
            for (int part = 1; part < 4; part++) {
                __m128i lp = _mm512_extracti32x4_epi32(lo[c], 0), hp = lp;
                switch (part) {
                case 1: lp = _mm512_extracti32x4_epi32(lo[c], 1); hp = _mm512_extracti32x4_epi32(hi[c], 1); break;
                case 2: lp = _mm512_extracti32x4_epi32(lo[c], 2); hp = _mm512_extracti32x4_epi32(hi[c], 2); break;
                default: lp = _mm512_extracti32x4_epi32(lo[c], 3); hp = _mm512_extracti32x4_epi32(hi[c], 3); break;
                }
                l0 = _mm512_min_epi32(l0, _mm512_cvtepi8_epi32(lp));
                h0 = _mm512_max_epi32(h0, _mm512_cvtepi8_epi32(hp));
            }
            row_min[i] = _mm512_reduce_min_epi32(l0);
            row_max[i] = _mm512_reduce_max_epi32(h0);
        }
    }
}
#endif
