/* AVX2 pooling: max across 32 channels per vpmaxub (NHWC), plane sums with vpsadbw. */
#include <string.h>
#include "pool/pool.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2")
#include <immintrin.h>

/* The in-bounds taps of output index o along one axis: i in [*lo, *hi) (padding never wins). */
static inline void tap_range(int32_t o, int32_t stride, int32_t pad, int32_t dil, int32_t k, int32_t size,
                             int32_t *lo, int32_t *hi) {
    int32_t start = o * stride - pad, i0 = 0, i1 = k;
    while (i0 < k && start + i0 * dil < 0) i0++;
    while (i1 > i0 && start + (i1 - 1) * dil >= size) i1--;
    *lo = i0;
    *hi = i1;
}

/* NV vectors (NV * 32 channels) of one pixel's window: NV a constant at each call, so the
 * accumulators stay in registers; each tap costs its loads and maxes only. */
#define WINDOW_MAX(NV)                                                                               \
    static inline void window_max_##NV(const uint8_t *px, int32_t i0, int32_t i1, int32_t j0, int32_t j1, \
                                       ptrdiff_t step_i, ptrdiff_t step_j, uint8_t *o) {            \
        __m256i m[NV];                                                                               \
        for (int v = 0; v < NV; v++) m[v] = _mm256_setzero_si256();                                  \
        for (int32_t i = i0; i < i1; i++) {                                                          \
            const uint8_t *row = px + i * step_i;                                                    \
            for (int32_t j = j0; j < j1; j++) {                                                      \
                const uint8_t *t = row + j * step_j;                                                 \
                for (int v = 0; v < NV; v++)                                                         \
                    m[v] = _mm256_max_epu8(m[v], _mm256_loadu_si256((const __m256i *)(t + 32 * v)));  \
            }                                                                                        \
        }                                                                                            \
        for (int v = 0; v < NV; v++) _mm256_storeu_si256((__m256i *)(o + 32 * v), m[v]);            \
    }
WINDOW_MAX(1)
WINDOW_MAX(2)
WINDOW_MAX(4)

/* The taps' ranges are clipped once per output row / column; the channels go 128, then 64,
 * then 32 at a time, then the tail. */
static void max_pool_nhwc_avx2(const fq_pool_geometry *g, const uint8_t *x, uint8_t *y) {
    const int32_t c = g->channels, full = c / 32;
    const ptrdiff_t row_stride = (ptrdiff_t)g->in_w * c;
    const ptrdiff_t step_i = (ptrdiff_t)g->dil_h * row_stride, step_j = (ptrdiff_t)g->dil_w * c;
    for (int32_t n = 0; n < g->batch; n++)
        for (int32_t oh = 0; oh < g->out_h; oh++) {
            int32_t i0, i1;
            tap_range(oh, g->stride_h, g->pad_h, g->dil_h, g->k_h, g->in_h, &i0, &i1);
            const uint8_t *base = x + ((ptrdiff_t)n * g->in_h + (oh * g->stride_h - g->pad_h)) * row_stride;
            for (int32_t ow = 0; ow < g->out_w; ow++) {
                uint8_t *o = y + (((size_t)n * g->out_h + oh) * g->out_w + ow) * c;
                int32_t j0, j1;
                tap_range(ow, g->stride_w, g->pad_w, g->dil_w, g->k_w, g->in_w, &j0, &j1);
                const uint8_t *px = base + (ptrdiff_t)(ow * g->stride_w - g->pad_w) * c;
                int32_t v = 0;
                for (; v + 4 <= full; v += 4) window_max_4(px + 32 * v, i0, i1, j0, j1, step_i, step_j, o + 32 * v);
                if (v + 2 <= full) {
                    window_max_2(px + 32 * v, i0, i1, j0, j1, step_i, step_j, o + 32 * v);
                    v += 2;
                }
                if (v < full) window_max_1(px + 32 * v, i0, i1, j0, j1, step_i, step_j, o + 32 * v);
                const int32_t k0 = full * 32;
                if (k0 == c) continue;
                /* the channel tail through a 32-byte staging buffer */
                uint8_t buf[32], acc[32];
                __m256i m = _mm256_setzero_si256();
                for (int32_t i = i0; i < i1; i++)
                    for (int32_t j = j0; j < j1; j++) {
                        memcpy(buf, px + (ptrdiff_t)i * g->dil_h * (ptrdiff_t)row_stride + (ptrdiff_t)j * g->dil_w * c
                                    + k0, (size_t)(c - k0));
                        m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)buf));
                    }
                _mm256_storeu_si256((__m256i *)acc, m);
                memcpy(o + k0, acc, (size_t)(c - k0));
            }
        }
}

static void plane_sums_avx2(const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums) {
    const __m256i zero = _mm256_setzero_si256();
    for (int64_t p = 0; p < planes; p++) {
        const uint8_t *s = x + p * hw;
        __m256i acc = zero;
        int64_t i = 0;
        for (; i + 32 <= hw; i += 32)
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(s + i)), zero));
        uint64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, acc);
        uint64_t total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
        for (; i < hw; i++) total += s[i];
        sums[p] = (int32_t)(uint32_t)total;
    }
}

static const fq_pool_kernels avx2_kernels = {"avx2", max_pool_nhwc_avx2, plane_sums_avx2};
const fq_pool_kernels *fq_pool_kernels_avx2(void) { return &avx2_kernels; }
#endif
