/* The fused GEMM entries of a backend without a fused kernel of its own (scalar, AVX2): its
 * microkernel into a tile on the stack, then its byte epilogue on that tile (the two steps the
 * driver ran before; the AVX-512 kernels keep the tile in registers). They give every backend the
 * same gemm_fused family and are the twins the AVX-512 fused kernels are tested against.
 *
 * Included at the end of an epilogue file that defines epi_{fbgemm,qnnpack,onednn}_{u8,s8}, with
 * FUSED_UKERNEL naming that ISA's microkernel and FUSED_TABLE the table filler to define. */
#define DEFINE_FUSED(NAME)                                                                        \
    static void fused_##NAME(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor, \
                             const int8_t *panel, int32_t k_groups, int32_t nr, int32_t nc,        \
                             const int32_t *row_sums, int32_t n0, const fq_epilogue *ep, void *out, \
                             ptrdiff_t ldo) {                                                      \
        int32_t tile[FQ_MR_MAX * FQ_NR] __attribute__((aligned(64)));                             \
        FUSED_UKERNEL(mr, k, a, lda, a_xor, panel, k_groups, nr, tile);                           \
        (ep->out_signed ? NAME##_s8 : NAME##_u8)(mr, nc, tile, row_sums, n0, ep, out, ldo);       \
    }
DEFINE_FUSED(epi_fbgemm)
DEFINE_FUSED(epi_qnnpack)
DEFINE_FUSED(epi_onednn)
#undef DEFINE_FUSED

void FUSED_TABLE(fq_fused_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]) {
    for (int w = 0; w < FQ_NR_WIDTHS; w++) {
        table[w][FQ_EPV_FBGEMM] = fused_epi_fbgemm;
        table[w][FQ_EPV_QNNPACK] = fused_epi_qnnpack;
        table[w][FQ_EPV_ONEDNN] = fused_epi_onednn;
    }
}
