"""The ARM DSP (SMLAD) C of a static Linear layer (emit.py calls it; the FQ_ROWS loop of the
portable kernels is its twin under #else): the input row widened once to int16 (x - zx) in
SMLAD pair order, then four output rows at a time against int16 (w - zw) weights stored for this
path (runtime.c.in fq_mm4x1_s16: 16 MACs per 5 double-word loads and 8 SMLAD). Rows padded to a
multiple of 4 k with 0 weights, the row count to a multiple of 4 with zero rows (not written)."""
from __future__ import annotations

import numpy as np

ORDER = (0, 2, 1, 3)          # the position of k % 4 in a block: (k0, k2), (k1, k3)


def weight_words(w_rows):
    """w_rows: int64 [N][K] (w - zw). The uint32 words of [N4 / 4][K4 / 4][row][4 int16]."""
    n, k = w_rows.shape
    n4, k4 = (n + 3) // 4 * 4, (k + 3) // 4 * 4
    padded = np.zeros((n4, k4), np.int64)
    padded[:n, :k] = w_rows
    blocks = padded.reshape(n4 // 4, 4, k4 // 4, 4)[..., list(ORDER)].transpose(0, 2, 1, 3)
    h = blocks.reshape(-1).astype(np.int16).view(np.uint16).astype(np.uint32)
    return h[0::2] | (h[1::2] << 16), n4, k4


def words_array(name, words, comment):
    body = ",\n    ".join(", ".join("0x%08xu" % int(v) for v in words[i:i + 8]) for i in range(0, len(words), 8))
    return "/* %s */\nstatic const uint32_t %s[%d] = {\n    %s\n};" % (comment, name, len(words), body)


def body(x_dtype, zx, k, n, n4, k4, wname, epilogue):
    """The DSP path's C lines; epilogue: the lines computing y[n] from acc."""
    xt = "uint8_t" if x_dtype == "uint8" else "int8_t"
    ext = "fq_uxtab16" if x_dtype == "uint8" else "fq_sxtab16"
    lines = ["uint32_t *col = (uint32_t *)(void *)scratch;      /* x - zx as int16, [k / 4][(k0, k2), (k1, k3)] */",
             "const uint32_t nzx = fq_pair(%s);" % zx,
             "int32_t j, n0, r;",
             "for (j = 0; j < %d; j++) {" % (k // 4),
             "    uint32_t v;",
             "    memcpy(&v, x + 4 * j, 4);",
             "    col[2 * j] = %s(nzx, v);" % ext,
             "    col[2 * j + 1] = %s_ror8(nzx, v);" % ext,
             "}"]
    if k % 4:
        lines += ["{      /* the last k: padded with zx, widened to 0 */",
                  "    %s t[4] = {%s};" % (xt, ", ".join(["(%s)%s" % (xt, zx)] * 4)),
                  "    uint32_t v;",
                  "    for (j = 0; j < %d; j++) t[j] = x[%d + j];" % (k % 4, k - k % 4),
                  "    memcpy(&v, t, 4);",
                  "    col[%d] = %s(nzx, v);" % (2 * (k // 4), ext),
                  "    col[%d] = %s_ror8(nzx, v);" % (2 * (k // 4) + 1, ext),
                  "}"]
    lines += ["for (n0 = 0; n0 < %d; n0 += 4) {" % n4,
              "    int32_t accs[4];",
              "    fq_mm4x1_s16(col, %s + n0 * %d, %d, accs);" % (wname, k4 // 2, k4 // 4),
              "    for (r = 0; r < 4%s; r++) {" % ("" if n == n4 else " && n0 + r < %d" % n),
              "        const int32_t n = n0 + r;",
              "        int32_t acc = accs[r];"]
    lines += ["    " + b for b in epilogue]
    lines += ["    }", "}"]
    return lines, 2 * k4
