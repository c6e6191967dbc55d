/* AVX2 pooling: max across 32 channels per vpmaxub (NHWC), plane sums with vpsadbw. */
#include <string.h>
#include "pool/pool.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2")
#include <immintrin.h>

static void max_pool_nhwc_avx2(const fq_pool_geometry *g, const uint8_t *x, uint8_t *y) {
    int32_t c = g->channels;
    for (int32_t n = 0; n < g->batch; n++)
        for (int32_t oh = 0; oh < g->out_h; oh++)
            for (int32_t ow = 0; ow < g->out_w; ow++) {
                uint8_t *o = y + (((size_t)n * g->out_h + oh) * g->out_w + ow) * c;
                int32_t k0 = 0;
                for (; k0 + 32 <= c; k0 += 32) {
                    __m256i m = _mm256_setzero_si256();
                    for (int32_t i = 0; i < g->k_h; i++) {
                        int32_t h = oh * g->stride_h - g->pad_h + i * g->dil_h;
                        if (h < 0 || h >= g->in_h) continue;
                        const uint8_t *row = x + ((size_t)n * g->in_h + h) * g->in_w * c + k0;
                        for (int32_t j = 0; j < g->k_w; j++) {
                            int32_t w = ow * g->stride_w - g->pad_w + j * g->dil_w;
                            if (w < 0 || w >= g->in_w) continue;
                            m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)(row + (size_t)w * c)));
                        }
                    }
                    _mm256_storeu_si256((__m256i *)(o + k0), m);
                }
                if (k0 == c) continue;
                /* the channel tail through a 32-byte staging buffer */
                uint8_t buf[32], acc[32];
                memset(acc, 0, sizeof acc);
                __m256i m = _mm256_setzero_si256();
                for (int32_t i = 0; i < g->k_h; i++) {
                    int32_t h = oh * g->stride_h - g->pad_h + i * g->dil_h;
                    if (h < 0 || h >= g->in_h) continue;
                    for (int32_t j = 0; j < g->k_w; j++) {
                        int32_t w = ow * g->stride_w - g->pad_w + j * g->dil_w;
                        if (w < 0 || w >= g->in_w) continue;
                        memcpy(buf, x + (((size_t)n * g->in_h + h) * g->in_w + w) * c + k0, (size_t)(c - k0));
                        m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)buf));
                    }
                }
                _mm256_storeu_si256((__m256i *)acc, m);
                memcpy(o + k0, acc, (size_t)(c - k0));
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
