/* y[n, c, p] = table[c][x[n, c, p]]: one 256-byte row per plane, read from L1. */
#include "norm/channel_table.h"

void fq_channel_table_nchw(const uint8_t *x, int64_t batch, int64_t channels, int64_t pixels,
                           const uint8_t *table, uint8_t *y) {
    int64_t n, c, p;
    for (n = 0; n < batch; n++) {
        for (c = 0; c < channels; c++) {
            const uint8_t *t = table + c * 256;
            const uint8_t *xp = x + (n * channels + c) * pixels;
            uint8_t *yp = y + (n * channels + c) * pixels;
            for (p = 0; p < pixels; p++)
                yp[p] = t[xp[p]];
        }
    }
}
