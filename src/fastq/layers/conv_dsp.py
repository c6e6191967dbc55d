"""The ARM DSP (SMLAD) C of convolutions: CMSIS-NN's scheme for the non-depthwise ones, written for
fastq's layouts (conv_emit.py calls it; the portable loop is the twin under #else).

  - Two output pixels at a time: each receptive field is widened once to int16 (x - zx) in the
    scratch column (padding = zx, so it becomes an exact 0), the two fields interleaved by blocks
    of 4 k: col = [k / 4][pixel][(x0, x2), (x1, x3)] (UXTAB16 / SXTAB16 give these pairs of one
    loaded word directly: no repacking).
  - The weights are stored once more for this path, as int16 (w - zw) in the same pair order,
    rows padded to a multiple of 4 k and the output channels in pairs: [pair][k / 4][channel]
    [(w0, w2), (w1, w3)] (padding 0). One block of 4 k is then 2 x 2 word loads and 8 SMLAD for
    16 MACs (runtime.c.in fq_mm2x2_s16).
  - The odd last pixel is computed as a pair with itself; an odd channel count gets a zero row.
  - A channels-first input (the model's first layer) is read a word per kernel row (row_width).
  - The 2x2 tile's blocks run as straight-line assembly written out per layer from STRAIGHT_MIN to
    STRAIGHT_BLOCKS blocks (runtime.c.in FQ_MM2X2_STRAIGHT).
  - Depthwise layers with 3 taps per kernel row run the row kernel (depthwise_rows_body), exact or
    with FBGEMM's saturating pairs; others the 4-channels-per-word kernels (depthwise_body,
    depthwise_sat_body).
Integer sums are exact (the exporter's K * max|x - zx| * max|w - zw| < 2^31 bound), so the order
of the terms does not matter: the result is the portable loop's."""
from __future__ import annotations

import numpy as np

ORDER = (0, 2, 1, 3)          # the position of k % 4 in a block: (k0, k2), (k1, k3)


def weight_words(w_rows, groups):
    """w_rows: int64 [O][K] (w - zw, channels-last k). Returns the uint32 words of the DSP layout
    [group][pair][K4 / 4][2 channels][4 int16] and (OG2, K4)."""
    o, k = w_rows.shape
    og = o // groups
    og2, k4 = og + og % 2, (k + 3) // 4 * 4
    padded = np.zeros((groups, og2, k4), np.int64)
    padded[:, :og, :k] = w_rows.reshape(groups, og, k)
    blocks = padded.reshape(groups, og2 // 2, 2, k4 // 4, 4)[..., list(ORDER)]
    halves = blocks.transpose(0, 1, 3, 2, 4).reshape(-1).astype(np.int16).view(np.uint16).astype(np.uint32)
    return halves[0::2] | (halves[1::2] << 16), og2, k4


def row_width(geo, nhwc):
    """KWP, the kernel width padded to whole words, where a channels-first input is read a kernel
    row per word (k ordered [c][kh][kw], kw padded with zero weights to KWP); else 0. Taken
    where the padding wastes at most a quarter of the products (KW % 4 of 0 or 3) and a kernel
    row is contiguous (dilation 1 along W)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = geo
    if nhwc or DW != 1 or KW % 4 not in (0, 3):
        return 0
    return (KW + 3) // 4 * 4


def row_weights(w_taps, kwp):
    """w_taps: int64 [O][CG][KH][KW] (w - zw). The rows of the row-per-word order:
    [O][CG * KH * KWP], the padded taps 0."""
    o, cg, kh, kw = w_taps.shape
    out = np.zeros((o, cg, kh, kwp), np.int64)
    out[..., :kw] = w_taps
    return out.reshape(o, cg * kh * kwp)


def words_array(name, words, comment):
    body = ",\n    ".join(", ".join("0x%08xu" % int(v) for v in words[i:i + 8]) for i in range(0, len(words), 8))
    return "/* %s */\nstatic const uint32_t %s[%d] = {\n    %s\n};" % (comment, name, len(words), body)


def conv_body(g, out_fn):
    """The C body of the DSP path. g: dict of the geometry and names (see conv_emit.emit_conv)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = g["geo"]
    G, O, OG, OG2, K, K4, OH, OW = g["G"], g["O"], g["OG"], g["OG2"], g["K"], g["K4"], g["OH"], g["OW"]
    CG, xt, zx, wname, nhwc = C // G, g["xt"], g["zx"], g["wname"], g["nhwc"]
    ext = "fq_uxtab16" if xt == "uint8_t" else "fq_sxtab16"
    npix = OH * OW
    # a field straight from x, 4 channels per word: channels-last and whole words of channels
    runs = nhwc and CG % 4 == 0
    kwp = g.get("KWP", 0)
    lines = ["uint32_t *col = (uint32_t *)(void *)scratch;      /* two fields: [k / 4][pixel][2 words] */",
             "const uint32_t nzx = fq_pair(%d);" % zx,
             "int32_t p, gr, op;"]
    if kwp:
        lines += ["%s *raw = (%s *)(void *)(col + %d);      /* one kernel row as bytes (border windows) */" % (xt, xt, K4)]
    elif not runs:
        lines += ["%s *raw = (%s *)(void *)(col + %d);      /* one field as bytes, padding zx */" % (xt, xt, K4),
                  "for (p = %d; p < %d; p++) raw[p] = (%s)%d;     /* k >= K: widened to 0 */" % (K, K4, xt, zx)]
    lines += ["for (p = 0; p < %d; p += 2) {" % npix,
              "    const int32_t pix[2] = {p, p + 1 < %d ? p + 1 : p};     /* an odd last pixel: paired with itself */" % npix,
              "    %s *y0 = y + p * %d, *y1 = y + pix[1] * %d;" % (g["yt"], O, O),
              "    for (gr = 0; gr < %d; gr++) {" % G,
              "        int32_t s;",
              "        for (s = 0; s < 2; s++) {"]
    if not kwp:
        lines += ["            const int32_t oh = pix[s] / %d, ow = pix[s] %% %d;" % (OW, OW),
                  "            int32_t kh, kw, j;",
                  "            for (kh = 0; kh < %d; kh++) {" % KH,
                  "                const int32_t ih = oh * %d - %d + kh * %d;" % (SH, PH, DH),
                  "                for (kw = 0; kw < %d; kw++) {" % KW,
                  "                    const int32_t iw = ow * %d - %d + kw * %d;" % (SW, PW, DW),
                  "                    const int inside = ih >= 0 && ih < %d && iw >= 0 && iw < %d;" % (H, W)]
    if kwp:
        lines += _row_fill(g, ext)
    elif runs:
        lines += ["                    uint32_t *d = col + (kh * %d + kw) * %d + 2 * s;" % (KW, CG),
                  "                    if (inside) {",
                  "                        const %s *xp = x + (ih * %d + iw) * %d + gr * %d;" % (xt, W, C, CG),
                  "                        for (j = 0; j < %d; j++) {" % (CG // 4),
                  "                            uint32_t v;",
                  "                            memcpy(&v, xp + 4 * j, 4);",
                  "                            d[4 * j] = %s(nzx, v);" % ext,
                  "                            d[4 * j + 1] = %s_ror8(nzx, v);" % ext,
                  "                        }",
                  "                    } else {",
                  "                        for (j = 0; j < %d; j++) d[4 * j] = d[4 * j + 1] = 0;     /* padding: x - zx = 0 */" % (CG // 4),
                  "                    }",
                  "                }", "            }"]
        if K4 != K:                               # cannot happen: K = KH * KW * CG, CG % 4 == 0
            raise AssertionError("K %d" % K)
    else:
        base, cs = ("(ih * %d + iw) * %d + gr * %d" % (W, C, CG), 1) if nhwc else \
            ("gr * %d + ih * %d + iw" % (CG * H * W, W), H * W)
        lines += ["                    %s *d = raw + (kh * %d + kw) * %d;" % (xt, KW, CG),
                  "                    if (inside) {",
                  "                        const %s *xq = x + %s;" % (xt, base),
                  "                        for (j = 0; j < %d; j++) d[j] = xq[j * %d];" % (CG, cs),
                  "                    } else {",
                  "                        for (j = 0; j < %d; j++) d[j] = (%s)%d;" % (CG, xt, zx),
                  "                    }",
                  "                }", "            }",
                  "            for (j = 0; j < %d; j++) {      /* widen the field's bytes */" % (K4 // 4),
                  "                uint32_t v;",
                  "                memcpy(&v, raw + 4 * j, 4);",
                  "                col[4 * j + 2 * s] = %s(nzx, v);" % ext,
                  "                col[4 * j + 2 * s + 1] = %s_ror8(nzx, v);" % ext,
                  "            }"]
    lines += ["        }",
              "        for (op = 0; op < %d; op++) {" % (OG2 // 2),
              "            const int32_t o = gr * %d + 2 * op;" % OG,
              "            int32_t acc[4];",
              ("            FQ_MM2X2_STRAIGHT(col, %s + (gr * %d + op) * %d, acc, %d," % (wname, OG2 // 2, K4, K4 // 4)
               + " ".join(["FQ_MM2X2_ASM_BLOCK"] * (K4 // 4)) + ");" if STRAIGHT_MIN <= K4 // 4 <= STRAIGHT_BLOCKS else
               "            fq_mm2x2_s16(col, %s + (gr * %d + op) * %d, %d, acc);" % (wname, OG2 // 2, K4, K4 // 4)),
              "            %s(acc[0], o, y0);" % out_fn,
              "            %s(acc[1], o, y1);" % out_fn]
    if OG % 2:
        lines += ["            if (2 * op + 1 < %d) {" % OG,
                  "                %s(acc[2], o + 1, y0);" % out_fn,
                  "                %s(acc[3], o + 1, y1);" % out_fn,
                  "            }"]
    else:
        lines += ["            %s(acc[2], o + 1, y0);" % out_fn,
                  "            %s(acc[3], o + 1, y1);" % out_fn]
    lines += ["        }", "    }", "}"]
    scratch = 4 * K4 + (kwp if kwp else (0 if runs else K4))
    return lines, scratch


# a 2x2 tile's blocks of 4 k as straight-line assembly from STRAIGHT_MIN to STRAIGHT_BLOCKS blocks (at
# 1 or 2 GCC's own unrolled C needs fewer registers around it; beyond, the assembly loop keeps the
# code small)
STRAIGHT_MIN, STRAIGHT_BLOCKS = 3, 64
UNROLL_BLOCKS = 48        # row words of one field written straight-line up to this count


def _row_fill(g, ext):
    """The field of pixel s in the row-per-word order (row_width): block b = (c * KH + kh) * KWP / 4
    + j holds bytes 4j .. 4j + 3 of kernel row (c, kh), read as one unaligned word. Inside
    windows read whole words (the bytes past KW meet zero weights; the condition keeps the last
    word inside x); border windows build each row in `raw` (padding zx, widened to 0)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = g["geo"]
    G, xt, zx, kwp = g["G"], g["xt"], g["zx"], g["KWP"]
    CG = C // G
    per = kwp // 4
    blocks = CG * KH * per
    lines = ["            const int32_t oh = pix[s] / %d, ow = pix[s] %% %d;" % (g["OW"], g["OW"]),
             "            const int32_t ih0 = oh * %d - %d, iw0 = ow * %d - %d;" % (SH, PH, SW, PW),
             "            const %s *xg = x + gr * %d;" % (xt, CG * H * W),
             "            uint32_t *d = col + 2 * s;",
             "            if (ih0 >= 0 && ih0 + %d < %d && iw0 >= 0 && iw0 + %d <= %d && (ih0 + %d) * %d + iw0 + %d <= %d) {"
             % ((KH - 1) * DH, H, KW, W, (KH - 1) * DH, W, kwp, H * W),
             "                const %s *xp = xg + ih0 * %d + iw0;      /* every tap inside: a word per kernel row */" % (xt, W),
             "                uint32_t v;"]
    if blocks <= UNROLL_BLOCKS:
        for c in range(CG):
            for kh in range(KH):
                for j in range(per):
                    b = (c * KH + kh) * per + j
                    lines += ["                memcpy(&v, xp + %d, 4);" % (c * H * W + kh * DH * W + 4 * j),
                              "                d[%d] = %s(nzx, v); d[%d] = %s_ror8(nzx, v);" % (4 * b, ext, 4 * b + 1, ext)]
    else:
        lines += ["                int32_t c, kh, j;",
                  "                for (c = 0; c < %d; c++) {" % CG,
                  "                    for (kh = 0; kh < %d; kh++) {" % KH,
                  "                        for (j = 0; j < %d; j++) {" % per,
                  "                            const int32_t b = (c * %d + kh) * %d + j;" % (KH, per),
                  "                            memcpy(&v, xp + c * %d + kh * %d + 4 * j, 4);" % (H * W, DH * W),
                  "                            d[4 * b] = %s(nzx, v); d[4 * b + 1] = %s_ror8(nzx, v);" % (ext, ext),
                  "                        }", "                    }", "                }"]
    lines += ["            } else {                  /* a window over the padding or the end of x */",
              "                int32_t c, kh, j;",
              "                for (c = 0; c < %d; c++) {" % CG,
              "                    for (kh = 0; kh < %d; kh++) {" % KH,
              "                        const int32_t ih = ih0 + kh * %d;" % DH,
              "                        uint32_t *db = d + 4 * ((c * %d + kh) * %d);" % (KH, per),
              "                        for (j = 0; j < %d; j++) {      /* padding and the bytes past KW: zx */" % kwp,
              "                            const int32_t iw = iw0 + j;",
              "                            raw[j] = (ih >= 0 && ih < %d && j < %d && iw >= 0 && iw < %d) ? xg[(c * %d + ih) * %d + iw] : (%s)%d;"
              % (H, KW, W, H, W, xt, zx),
              "                        }",
              "                        for (j = 0; j < %d; j++) {" % per,
              "                            uint32_t v;",
              "                            memcpy(&v, raw + 4 * j, 4);",
              "                            db[4 * j] = %s(nzx, v); db[4 * j + 1] = %s_ror8(nzx, v);" % (ext, ext),
              "                        }",
              "                    }",
              "                }",
              "            }"]
    return lines


def depthwise_words(w_taps):
    """w_taps: int64 [C][KK] (w - zw). Returns the uint32 words of the DSP layout [C / 4][tap]
    [(c0, c2), (c1, c3)] (the pairs UXTAB16 / SXTAB16 give of one word of 4 channels)."""
    c, kk = w_taps.shape
    blocks = w_taps.reshape(c // 4, 4, kk).transpose(0, 2, 1)[..., list(ORDER)]
    halves = blocks.reshape(-1).astype(np.int16).view(np.uint16).astype(np.uint32)
    return halves[0::2] | (halves[1::2] << 16)


def depthwise_body(g, out_fn):
    """The DSP path of a depthwise layer (one input channel per output, channels-last input,
    C % 4 == 0): 4 channels per loaded word, UXTAB16 / SXTAB16 give (x - zx) of channels (0, 2)
    and (1, 3), SMLABB / SMLATT add each lane's product to its channel's acc. Windows over the
    padding visit their inside taps only ((x - zx) is 0 at the padding)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = g["geo"]
    OH, OW, xt, zx, wname = g["OH"], g["OW"], g["xt"], g["zx"], g["wname"]
    ext = "fq_uxtab16" if xt == "uint8_t" else "fq_sxtab16"
    kk = KH * KW

    def tap(off, wexpr):
        return ["    memcpy(&v, %s, 4);" % off,
                "    FQ_LDRD(w02, w13, %s);" % wexpr if wexpr == "wc" else
                "    w02 = %s[0]; w13 = %s[1];" % (wexpr, wexpr),
                "    e02 = %s(nzx, v); e13 = %s_ror8(nzx, v);" % (ext, ext),
                "    a0 = __smlabb(e02, w02, a0); a2 = __smlatt(e02, w02, a2);",
                "    a1 = __smlabb(e13, w13, a1); a3 = __smlatt(e13, w13, a3);",
                "    FQ_TAP_BARRIER();"]

    def group(taps_code):
        return (["const uint32_t *wc = %s;" % wname,
                 "for (c = 0; c < %d; c += 4) {" % C,
                 "    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;",
                 "    uint32_t v, w02, w13;",
                 "    int32_t e02, e13;"] + ["    " + t for t in taps_code] +
                ["    %s(a0, c, y);" % out_fn, "    %s(a1, c + 1, y);" % out_fn,
                 "    %s(a2, c + 2, y);" % out_fn, "    %s(a3, c + 3, y);" % out_fn, "}"])

    inner = []
    for kh in range(KH):
        for kw in range(KW):
            inner += tap("xp + c + %d" % ((kh * DH * W + kw * DW) * C), "wc")
    border = ["int32_t kh, kw;",
              "for (kh = kh0; kh < kh1; kh++) {",
              "    for (kw = kw0; kw < kw1; kw++) {",
              "        const uint32_t *wt = wc + 2 * (kh * %d + kw);" % KW] + \
             ["    " + t for t in tap("x + ((ih0 + kh * %d) * %d + iw0 + kw * %d) * %d + c" % (DH, W, DW, C), "wt")] + \
             ["    }", "}", "wc += %d;" % (2 * kk)]
    lines = ["const uint32_t nzx = fq_pair(%d);" % zx,
             "int32_t oh, ow, c;",
             "for (oh = 0; oh < %d; oh++) {" % OH,
             "    const int32_t ih0 = oh * %d - %d;" % (SH, PH),
             "    /* the inside taps: kh0 <= kh < kh1 (0 <= ih0 + kh * DH < H) */",
             "    const int32_t kh0 = ih0 >= 0 ? 0 : (-ih0 + %d) / %d;" % (DH - 1, DH),
             "    const int32_t kh1 = ih0 + %d <= %d ? %d : (%d - ih0 + %d) / %d;" % ((KH - 1) * DH, H - 1, KH, H, DH - 1, DH),
             "    for (ow = 0; ow < %d; ow++) {" % OW,
             "        const int32_t iw0 = ow * %d - %d;" % (SW, PW),
             "        const int32_t kw0 = iw0 >= 0 ? 0 : (-iw0 + %d) / %d;" % (DW - 1, DW),
             "        const int32_t kw1 = iw0 + %d <= %d ? %d : (%d - iw0 + %d) / %d;" % ((KW - 1) * DW, W - 1, KW, W, DW - 1, DW),
             "        if (kh0 == 0 && kh1 == %d && kw0 == 0 && kw1 == %d) {      /* every tap inside: unrolled */" % (KH, KW),
             "            const %s *xp = x + (ih0 * %d + iw0) * %d;" % (xt, W, C)]
    lines += ["            " + t for t in group(inner)]
    lines += ["        } else {                  /* a window over the padding: its inside taps */"]
    lines += ["            " + t for t in group(border)]
    lines += ["        }", "        y += %d;" % C, "    }", "}"]
    return lines


def depthwise_sat_words(w_taps):
    """w_taps: int64 [C][KK] raw int8 weights. FBGEMM's pairs of taps (t, t + 1) as int16 lanes:
    [C / 4][pair][channel c0, c2, c1, c3][(w_t, w_t+1)], then the lone last tap of an odd KK as
    [C / 4][(c0, c2), (c1, c3)] (the lane order of depthwise_words)."""
    c, kk = w_taps.shape
    g = w_taps.reshape(c // 4, 4, kk)[:, list(ORDER), :]           # [C / 4][c0, c2, c1, c3][tap]
    pairs = g[:, :, :kk - kk % 2].reshape(c // 4, 4, kk // 2, 2).transpose(0, 2, 1, 3)
    halves = [pairs.reshape(c // 4, -1)]
    if kk % 2:
        halves.append(g[:, :, kk - 1])                              # (c0, c2), (c1, c3)
    h = np.concatenate(halves, axis=1).reshape(-1).astype(np.int16).view(np.uint16).astype(np.uint32)
    return h[0::2] | (h[1::2] << 16)


def depthwise_sat_body(g, out_fn):
    """The DSP path of FBGEMM's saturating depthwise kernel (zw = 0): per 4 channels and pair of
    taps, the raw (x + flip) bytes of both taps widened (UXTB16), packed into one (tap t, tap
    t + 1) pair per channel (PKHBT / PKHTB), SMUAD gives x_t w_t + x_t+1 w_t+1 exactly and SSAT
    saturates it to int16 as FBGEMM's 16-bit lanes do; the lone last tap adds unsaturated.
    acc = s - (zx + flip) * sum w. Taps over the padding read a row of raw zx bytes (FBGEMM pads
    with the zero point, and a pair mixes a padded tap with a real one)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = g["geo"]
    OH, OW, xt, zx, wname, flip, offname = g["OH"], g["OW"], g["xt"], g["zx"], g["wname"], g["flip"], g["offname"]
    kk = KH * KW
    ld = "memcpy(&v, %s, 4);"
    ext = "fq_uxtab16" if xt == "uint8_t" else "fq_sxtab16"      # + flip: the uint8 FBGEMM sees

    def taps(addr):
        out = []
        for t in range(0, kk - 1, 2):
            out += ["{",
                    "    uint32_t v, e0, e1, f0, f1, w0, w1;",
                    "    " + ld % addr(t),
                    "    e0 = %s(kp, v); e1 = %s_ror8(kp, v);" % (ext, ext),
                    "    " + ld % addr(t + 1),
                    "    f0 = %s(kp, v); f1 = %s_ror8(kp, v);" % (ext, ext),
                    "    FQ_LDRD(w0, w1, wc);",
                    "    s0 += __ssat(__smuad(fq_pack_lo(e0, f0), w0), 16);",
                    "    s2 += __ssat(__smuad(fq_pack_hi(e0, f0), w1), 16);",
                    "    FQ_LDRD(w0, w1, wc);",
                    "    s1 += __ssat(__smuad(fq_pack_lo(e1, f1), w0), 16);",
                    "    s3 += __ssat(__smuad(fq_pack_hi(e1, f1), w1), 16);",
                    "    FQ_TAP_BARRIER();",
                    "}"]
        if kk % 2:
            out += ["{",
                    "    uint32_t v, e0, e1, w0, w1;",
                    "    " + ld % addr(kk - 1),
                    "    e0 = %s(kp, v); e1 = %s_ror8(kp, v);" % (ext, ext),
                    "    FQ_LDRD(w0, w1, wc);",
                    "    s0 = __smlabb(e0, w0, s0); s2 = __smlatt(e0, w0, s2);",
                    "    s1 = __smlabb(e1, w1, s1); s3 = __smlatt(e1, w1, s3);",
                    "}"]
        return out

    def group(code):
        return (["const uint32_t *wc = %s;" % wname,
                 "for (c = 0; c < %d; c += 4) {" % C,
                 "    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;"] + ["    " + t for t in code] +
                ["    %s(s0 - %s[c], c, y);" % (out_fn, offname), "    %s(s1 - %s[c + 1], c + 1, y);" % (out_fn, offname),
                 "    %s(s2 - %s[c + 2], c + 2, y);" % (out_fn, offname), "    %s(s3 - %s[c + 3], c + 3, y);" % (out_fn, offname),
                 "}"])

    offs = [(kh * DH * W + kw * DW) * C for kh in range(KH) for kw in range(KW)]
    lines = ["static const %s pad[%d] = {%s};      /* FBGEMM's padding: the zero point */" % (xt, C, ", ".join([str(zx)] * C)),
             "const uint32_t kp = fq_pair(%d);      /* lanes + flip */" % -flip,
             "int32_t oh, ow, c;",
             "for (oh = 0; oh < %d; oh++) {" % OH,
             "    const int32_t ih0 = oh * %d - %d;" % (SH, PH),
             "    const int rows_in = ih0 >= 0 && ih0 + %d < %d;" % ((KH - 1) * DH, H),
             "    for (ow = 0; ow < %d; ow++) {" % OW,
             "        const int32_t iw0 = ow * %d - %d;" % (SW, PW),
             "        if (rows_in && iw0 >= 0 && iw0 + %d < %d) {      /* every tap inside: unrolled */" % ((KW - 1) * DW, W),
             "            const %s *xp = x + (ih0 * %d + iw0) * %d;" % (xt, W, C)]
    lines += ["            " + t for t in group(taps(lambda t: "xp + c + %d" % offs[t]))]
    lines += ["        } else {                  /* a window over the padding: its taps through pointers */",
              "            const %s *tp[%d];" % (xt, kk),
              "            int32_t t;",
              "            for (t = 0; t < %d; t++) {" % kk,
              "                const int32_t ih = ih0 + t / %d * %d, iw = iw0 + t %% %d * %d;" % (KW, DH, KW, DW),
              "                tp[t] = (ih >= 0 && ih < %d && iw >= 0 && iw < %d) ? x + (ih * %d + iw) * %d : pad;" % (H, W, W, C),
              "            }"]
    lines += ["            " + t for t in group(taps(lambda t: "tp[%d] + c" % t))]
    lines += ["        }", "        y += %d;" % C, "    }", "}"]
    return lines


def depthwise_rows_ok(geo):
    """Whether depthwise_rows_body applies: 3 taps per kernel row, dilation 1 along W, stride 1 or 2
    along W (any KH, stride, dilation and padding along H, any padding along W)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = geo
    return KW == 3 and DW == 1 and SW in (1, 2)


def depthwise_row_words(w_taps, kh):
    """w_taps: int64 [C][KH * 3] (w - zw). The uint32 words [C][kh][(w0, w1), (w1, w2)] of the row
    kernel (low half first)."""
    w = w_taps.reshape(-1, kh, 3).astype(np.int16).view(np.uint16).astype(np.uint32)
    pairs = np.stack([w[..., 0] | (w[..., 1] << 16), w[..., 1] | (w[..., 2] << 16)], axis=-1)
    return pairs.reshape(-1)


def _rows_geometry(geo, OW):
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = geo
    npair = (OW + 1) // 2
    need = 2 * npair + 2 if SW == 1 else 4 * npair + 2       # the last pair's words end below need
    wp = max(need, PW + W)
    wp += wp % 2
    span = (KH - 1) * DH + 1                                  # input rows under one window
    return wp // 2, span


def depthwise_rows_scratch(geo, OW):
    C = geo[0]
    wh, span = _rows_geometry(geo, OW)
    return 4 * (span + 1) * C * wh


def depthwise_sat_row_words(w_raw):
    """w_raw: int64 [C][KK] raw int8 weights. FBGEMM's pairs of taps (t, t + 1) as int16 lanes
    (w_t low, w_t+1 high), then the lone last tap of an odd KK (low half): [C][pair (+ 1)]."""
    c, kk = w_raw.shape
    h = np.zeros((c, (kk + 1) // 2, 2), np.int64)
    h.reshape(c, -1)[:, :kk] = w_raw
    h = h.astype(np.int16).view(np.uint16).astype(np.uint32)
    return (h[..., 0] | (h[..., 1] << 16)).reshape(-1)


def depthwise_rows_body(g, out_fn, sat=False):
    """The DSP path of a depthwise layer with 3 taps per kernel row (depthwise_rows_ok): SMLAD on
    pairs of taps of one channel. Each input row is widened once to int16 in the scratch,
    channel-major: R[c][jw] with jw = iw + PW, so that one word holds two horizontally adjacent
    taps of one channel. Per channel, kernel row and pair of outputs (ow, ow + 1): one LDRD (and
    one LDR at stride 2) and 4 multiplies:
      stride 1: words P0 = (x[ow], x[ow+1]), P1 = (x[ow+2], x[ow+3]) of R, weights
                W01 = (w0, w1), W12 = (w1, w2):
                acc0 += SMLAD(P0, W01) + SMLABT(P1, W12); acc1 += SMLATB(P0, W01) + SMLAD(P1, W12)
      stride 2: P0, P1, P2 from jw = 2 ow: acc0 += SMLAD(P0, W01) + SMLABT(P1, W12);
                acc1 += SMLAD(P1, W01) + SMLABT(P2, W12)
    R holds x - zx (the padding 0). With sat (FBGEMM's saturating kernel, zw = 0), R holds the raw
    x + flip (the padding zx + flip) and each of FBGEMM's pairs of taps (t, t + 1), t = kh * 3 + kw,
    is one SMUAD (or SMUADX where the two taps lie swapped in the word) of a word of R, or of two
    halves of two words joined by one PKHBT / PKHTB (a pair across two kernel rows, or straddling
    two words), saturated to int16 by SSAT; the lone last tap adds unsaturated;
    acc = sum - (zx + flip) * sum w.
    The channel loop is outside the pixel loop, so each channel's weights and requantization
    constants stay in registers along the row. Rows out of the input read the padding row; the
    scratch holds span = (KH - 1) * DH + 1 widened rows (row ih in slot ih % span, each widened
    once when first needed) and the padding row. Integer sums are exact (the exporter's bound)."""
    C, H, W, KH, KW, SH, SW, PH, PW, DH, DW = g["geo"]
    OH, OW, xt, zx, wname = g["OH"], g["OW"], g["xt"], g["zx"], g["wname"]
    flip = g.get("flip", 0)
    ext = "fq_uxtab16" if xt == "uint8_t" else "fq_sxtab16"
    wh, span = _rows_geometry(g["geo"], OW)
    row = C * wh                                  # words per widened row
    q_lo = (PW + 1) // 2                          # the first pair with both pixels inside
    q_hi = (W - 2 + PW) // 2                      # the last
    edges = [q for q in range(wh) if (q < q_lo or q > q_hi) and 0 <= 2 * q - PW + 1 and 2 * q - PW <= W - 1]
    written = set(range(q_lo, q_hi + 1)) | set(edges)
    unwritten = [q for q in range(wh) if q not in written]
    padv = zx + flip if sat else 0
    fill = "0x%08xu" % ((padv & 0xffff) * 0x10001)
    lines = ["uint32_t *slots = (uint32_t *)(void *)scratch;      /* [slot][c][jw / 2]: widened rows, then the padding row */",
             "uint32_t *const pad_row = slots + %d;" % (span * row),
             "const uint32_t nzx = fq_pair(%d);      /* %s */" % ((-flip, "lanes + flip") if sat else (zx, "lanes - zx")),
             "int32_t held[%d];      /* the input row each slot holds */" % span,
             "int32_t oh, kh, c, q;",
             "for (q = 0; q < %d; q++) pad_row[q] = %s;      /* the padding row: %s */" % (row, fill, padv)]
    if unwritten:
        lines += ["for (q = 0; q < %d; q++) {      /* the columns past the input, the same in every row */" % (span * C)] + \
                 ["    slots[q * %d + %d] = %s;" % (wh, u, fill) for u in unwritten] + ["}"]
    lines += ["for (q = 0; q < %d; q++) held[q] = -1;" % span,
              "for (oh = 0; oh < %d; oh++) {" % OH,
              "    const uint32_t *rows[%d];" % KH,
              "    %s *yr = y + oh * %d;" % (g["yt"], OW * C),
              "    for (kh = 0; kh < %d; kh++) {" % KH,
              "        const int32_t ih = oh * %d - %d + kh * %d;" % (SH, PH, DH),
              "        uint32_t *r;",
              "        if (ih < 0 || ih >= %d) {      /* a padding row */" % H,
              "            rows[kh] = pad_row;",
              "            continue;",
              "        }",
              "        r = slots + (ih %% %d) * %d;" % (span, row),
              "        rows[kh] = r;",
              "        if (held[ih %% %d] == ih) continue;" % span,
              "        held[ih %% %d] = ih;" % span,
              "        {      /* widen input row ih: pairs of pixels (2q - PW, 2q - PW + 1), 4 channels per word */",
              "            const %s *xr = x + ih * %d;" % (xt, W * C),
              "            int32_t c4;"]
    if q_hi >= q_lo:
        lines += ["            for (c4 = 0; c4 < %d; c4 += 4) {" % C,
                  "                uint32_t *d = r + c4 * %d;" % wh,
                  "                const %s *xa = xr + %d + c4;" % (xt, (2 * q_lo - PW) * C),
                  "                for (q = %d; q <= %d; q++) {" % (q_lo, q_hi),
                  "                    uint32_t va, vb;",
                  "                    int32_t ea, eb;",
                  "                    memcpy(&va, xa, 4);",
                  "                    memcpy(&vb, xa + %d, 4);" % C,
                  "                    xa += %d;" % (2 * C),
                  "                    ea = %s(nzx, va); eb = %s(nzx, vb);" % (ext, ext),
                  "                    d[q] = fq_pack_lo(ea, eb); d[q + %d] = fq_pack_hi(ea, eb);" % (2 * wh),
                  "                    ea = %s_ror8(nzx, va); eb = %s_ror8(nzx, vb);" % (ext, ext),
                  "                    d[q + %d] = fq_pack_lo(ea, eb); d[q + %d] = fq_pack_hi(ea, eb);" % (wh, 3 * wh),
                  "                }",
                  "            }"]
    for q in edges:
        a = 2 * q - PW
        val = ("(uint32_t)((int32_t)xr[%d + c4] + %d) & 0xffffu" if sat else "(uint32_t)((int32_t)xr[%d + c4] - %d) & 0xffffu")
        lo = val % (a * C, flip if sat else zx) if 0 <= a < W else "%du" % padv
        hi = "(%s) << 16" % (val % ((a + 1) * C, flip if sat else zx)) if 0 <= a + 1 < W else "%du << 16" % padv
        lines += ["            for (c4 = 0; c4 < %d; c4++) r[c4 * %d + %d] = (%s) | (%s);      /* a pair half padding */"
                  % (C, wh, q, lo, hi)]
    lines += ["        }", "    }"]
    # the channel loop: weights in registers, the pairs of outputs along the row
    step = 4 if SW == 1 else 8
    nw = (KH * 3 + 1) // 2 if sat else 2 * KH            # weight words per channel
    lines += ["    for (c = 0; c < %d; c++) {" % C,
              "        const uint32_t *wc = %s + c * %d;" % (wname, nw),
              "        %s *yp = yr;" % g["yt"]]
    cols = g["cols"]
    lines += ["        const %s k%d = %s[c];" % (t, i, nm) for i, (nm, t) in enumerate(cols)]
    if sat:
        lines.append("        const int32_t off = %s[c];      /* (zx + flip) * sum w */" % g["offname"])
    kargs = "".join(", k%d" % i for i in range(len(cols)))
    for k in range(KH):
        lines.append("        const uint32_t *r%d = rows[%d] + c * %d;" % (k, k, wh))
    lines.append("        const uint32_t %s;" % ", ".join("w%d = wc[%d]" % (i, i) for i in range(nw)))

    def pair(both):
        nout = 2 if both else 1
        words = (SW + 2 if both else 2) // 2 + 1          # words of R per kernel row: the last tap's + 1
        out = ["int32_t a0 = 0%s;" % (", a1 = 0" if both else ""),
               "uint32_t %s;" % ", ".join("p%d_%d" % (k, i) for k in range(KH) for i in range(words))]
        for k in range(KH):
            out.append("FQ_LDRD_STEP(p%d_0, p%d_1, r%d, %d);" % (k, k, k, step))
            if words == 3:
                out.append("p%d_2 = r%d[0];" % (k, k))
        if not sat:
            for k in range(KH):
                p0, p1 = "p%d_0" % k, "p%d_1" % k
                out.append("a0 = (int32_t)__smlad(%s, w%d, (uint32_t)a0); a0 = __smlabt((int32_t)%s, (int32_t)w%d, a0);"
                           % (p0, 2 * k, p1, 2 * k + 1))
                if both and SW == 1:
                    out.append("a1 = __smlatb((int32_t)%s, (int32_t)w%d, a1); a1 = (int32_t)__smlad(%s, w%d, (uint32_t)a1);"
                               % (p0, 2 * k, p1, 2 * k + 1))
                elif both:
                    out.append("a1 = (int32_t)__smlad(%s, w%d, (uint32_t)a1); a1 = __smlabt((int32_t)p%d_2, (int32_t)w%d, a1);"
                               % (p1, 2 * k, k, 2 * k + 1))
        else:
            kk = KH * 3
            for j in range(nout):
                def at(t):
                    r = j * SW + t % 3
                    return "p%d_%d" % (t // 3, r // 2), r % 2
                acc = "a%d" % j
                for pi in range(kk // 2):
                    (wa, ha), (wb, hb) = at(2 * pi), at(2 * pi + 1)
                    if wa == wb:                                 # one word, taps in order
                        op, fn = wa, "__smuad"
                    elif (ha, hb) == (0, 0):
                        op, fn = "fq_pack_lo(%s, %s)" % (wa, wb), "__smuad"
                    elif (ha, hb) == (1, 1):
                        op, fn = "fq_pack_hi(%s, %s)" % (wa, wb), "__smuad"
                    elif (ha, hb) == (0, 1):
                        op, fn = "fq_pack_bt(%s, %s)" % (wa, wb), "__smuad"
                    else:                                        # (b low, a high): the swapped product
                        op, fn = "fq_pack_bt(%s, %s)" % (wb, wa), "__smuadx"
                    out.append("%s += __ssat(%s((int16x2_t)%s, (int16x2_t)w%d), 16);" % (acc, fn, op, pi))
                if kk % 2:
                    wl, hl = at(kk - 1)
                    out.append("%s = __sml%sb((int32_t)%s, (int32_t)w%d, %s);" % (acc, "ab" if hl == 0 else "at", wl,
                                                                                  kk // 2, acc))
                out.append("%s -= off;" % acc)
        out.append("%s(a0, c, yp%s);" % (out_fn, kargs))
        if both:
            out.append("%s(a1, c, yp + %d%s);" % (out_fn, C, kargs))
        out.append("yp += %d;" % (2 * C))
        return out

    lines += ["        for (q = 0; q < %d; q++) {" % (OW // 2)] + ["            " + t for t in pair(True)] + ["        }"]
    if OW % 2:
        lines += ["        {      /* the odd last output */"] + ["            " + t for t in pair(False)] + ["        }"]
    lines += ["    }", "}"]
    return lines
