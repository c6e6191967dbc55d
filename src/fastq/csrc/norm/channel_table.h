/* Per-channel lookup tables on 8-bit values: an op whose output element is a function of its
 * channel and its one input byte (quantized batch norm) runs as y = table[c][x], exact by
 * construction, whatever arithmetic built the table (fastq.reference builds it).
 *   x, y:   [batch, channels, pixels] bytes (NCHW; int8 values as their bytes)
 *   table:  [channels][256] output bytes, indexed by the input byte */
#ifndef FASTQ_CHANNEL_TABLE_H
#define FASTQ_CHANNEL_TABLE_H
#include <stdint.h>

void fq_channel_table_nchw(const uint8_t *x, int64_t batch, int64_t channels, int64_t pixels,
                           const uint8_t *table, uint8_t *y);
#endif
