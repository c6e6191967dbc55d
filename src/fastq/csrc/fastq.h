/* fastq C API: the one header _kernels.pyx cimports.
 *
 * csrc/ has one folder per kernel family, each with its ISA files and headers beside it:
 *   gemm/         pack.c (+ pack_avx2.c): weights [N,K] int8 -> fq_packed_weights (panels,
 *                 column sums); ukernel_*.c: one tile of raw dot products sum_k x[m,k]*w[n,k]
 *                 per ISA, the M = 1 (GEMV) kernel and the row sums; epilogue_*.c: one tile's
 *                 zero-point corrections + requantization -> uint8 / int8 / int32 / float;
 *                 gemm.c: the driver (tiles over M and panels, threads, the epilogue per call)
 *   fixedpoint/   MultiplyByQuantizedMultiplier: the scalar steps (requant_fixedpoint.h), the
 *                 lane primitives (fixedpoint_avx2.h / _avx512.h, fixedpoint_lanes.h) the
 *                 SIMD epilogues are written over, and the array function
 *   convert/      float <-> uint8 / int8 conversions (torch semantics)
 *   elementwise/  quantized add / mul of the graph ops
 *   conv/         convolution: NHWC padding, im2col over the GEMM driver, direct depthwise tiles
 *   pool/         max / average pooling, plane sums
 *   runtime/      the CPU detector (cpu.c), the backend table (backends.c), the thread pool
 * A backend's fill function in runtime/backends.c lists which of these kernels it has.
 *
 * Arithmetic: docs/ARITHMETIC.md; fastq/reference.py is its numpy twin.
 */
#ifndef FASTQ_H
#define FASTQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- packed weights ---------------------------------------------------------------
 * Layout: the output columns are cut into panels of 64, except the last, whose width is N's
 * remainder rounded up to 16 (16, 32, 48 or 64): a GEMM with N = 16 computes 16 columns, not
 * 64 (ResNet-8's 16-channel 3x3 layers, MobileNet's narrow pointwise ones). Inside a panel of
 * width nr starting at column n0 = 64p, k-group g holds w[n, 4g..4g+3] for its nr columns,
 * 4 consecutive bytes per column (one vpdpbusd lane):
 *     data[n0 * 4 * k_groups + (g * nr + c) * 4 + j] = w[n0 + c, 4g + j]
 * (every panel before column n0 is 64 wide, so n0 * 4 * k_groups bytes precede it).
 * Worked example, N = 80, K = 6 (k_groups = 2, n_padded = 96): panel 0 is columns 0..63,
 * 2 groups of 256 bytes: bytes 0..255 hold w[0..63, 0..3] (w[c, j] at 4c + j), bytes 256..511
 * hold w[0..63, 4..5] and two zero bytes per column. Panel 1 (n0 = 64, nr = 16: 80 - 64
 * rounded up) starts at byte 64 * 4 * 2 = 512: bytes 512..575 hold w[64..79, 0..3], bytes
 * 576..639 w[64..79, 4..5] (then zeros). Columns >= N and k >= K are zero, so a kernel may
 * always compute full groups and panels. Kernels write a tile with row stride FQ_NR whatever
 * the panel width, so the epilogues read every tile alike.
 */
#define FQ_NR 64           /* output columns per panel (the last may be narrower) */
#define FQ_NR_STEP 16      /* the last panel's width is a multiple of this */
#define FQ_NR_WIDTHS (FQ_NR / FQ_NR_STEP)   /* panel widths 16, 32, 48, 64: index nr / 16 - 1 */
#define FQ_KG 4            /* consecutive k per group */
#define FQ_PANEL_GROUP_BYTES (FQ_NR * FQ_KG)   /* one k-group of a 64-wide panel */
#define FQ_MR_MAX 16       /* most rows per tile a microkernel may take (AMX tiles: 16) */

typedef struct {
    int32_t n, k;              /* logical shape of the weight matrix [N, K] */
    int32_t k_groups;          /* ceil(K / 4) */
    int32_t n_panels;          /* ceil(N / 64) */
    int32_t last_nr;           /* width of the last panel: 16, 32, 48 or 64 (0 when N = 0) */
    int32_t n_padded;          /* 64 * (n_panels - 1) + last_nr: the per-column arrays' length */
    int8_t *data;              /* n_padded * k_groups * 4 bytes, 64-byte aligned */
    int32_t *col_sums;         /* [n_padded]: sum_k w[n, k]; 0 in padding */
    int32_t *w_zero_point;     /* [n_padded]: zero point of column n; 0 in padding */
    int32_t w_zero_point_all_zero;  /* 1 when every w_zero_point is 0 (row sums not needed) */
    int32_t max_abs_w_dev;     /* max over n, k of |w[n,k] - w_zero_point[n]| (overflow bound) */
} fq_packed_weights;

/* Packs w (row n at w + n*ldw, K contiguous bytes) with per-column zero points
 * (w_zero_point[n], or one value when w_zero_point_per_column == 0).
 * Returns 0, or -1 when out of memory. Free with fq_packed_free. */
int fq_pack_weights(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k,
                    const int32_t *w_zero_point, int w_zero_point_per_column,
                    fq_packed_weights *out);
void fq_packed_free(fq_packed_weights *p);

/* col_offset[n] = K*za*zw[n] - za*col_sums[n] + (int_bias ? int_bias[n] : 0), wrapping int32.
 * Together with -row_sum[m]*zw[n] it turns the raw dot product into
 * acc[m,n] = sum_k (x - za)(w - zw[n]) (+ int_bias[n]).  out has n_padded entries. */
void fq_col_offsets(const fq_packed_weights *w, int32_t a_zero_point,
                    const int32_t *int_bias, int32_t *col_offset);

/* ---- epilogue: what happens to a tile of accumulators ------------------------------ */
typedef enum {
    FQ_EPI_INT32 = 0,      /* store acc as int32 (qgemm) */
    FQ_EPI_FBGEMM = 1,     /* docs/ARITHMETIC.md §6 (torch x86 / fbgemm) */
    FQ_EPI_QNNPACK = 2,    /* docs/ARITHMETIC.md §7 (torch qnnpack) */
    FQ_EPI_TFLITE = 3,     /* docs/ARITHMETIC.md §8 (fixed-point multiplier + shift) */
    FQ_EPI_FLOAT = 4,      /* dynamic quantization: float32 output (see epilogue_scalar.c) */
    FQ_EPI_ONEDNN = 5      /* torch x86 convolutions packed for oneDNN (requant.h fq_requant_onednn) */
} fq_epilogue_kind;

/* Fixed-point rounding variants (requant_fixedpoint.h, docs/ARITHMETIC.md §8). */
typedef enum {
    FQ_ROUNDING_DOUBLE = 0,      /* gemmlowp / TFLite reference: high mul, then shift ties away */
    FQ_ROUNDING_SINGLE = 1,      /* TFLITE_SINGLE_ROUNDING: one rounding, ties up */
    FQ_ROUNDING_DOUBLE_UP = 2    /* high mul, then shift ties up (NEON srshl; ruy, LiteRT optimized) */
} fq_rounding;

/* What one epilogue function computes: the (kind, rounding, float_fma) of an fq_epilogue,
 * decided once by fq_epilogue_prepare. Each ISA's table holds one function per variant and
 * output byte type; there is no mode switch inside any tile loop. */
typedef enum {
    FQ_EPV_INT32 = 0,
    FQ_EPV_FLOAT_FMA,            /* y = fmaf(f, scale[n], bias[n])                 (x86 / fbgemm) */
    FQ_EPV_FLOAT_TWO_ROUNDINGS,  /* y = f32(f32(f * scale[n]) + bias[n])           (qnnpack) */
    FQ_EPV_FBGEMM,
    FQ_EPV_QNNPACK,
    FQ_EPV_FIXED_DOUBLE,
    FQ_EPV_FIXED_DOUBLE_RIGHT,   /* FIXED_DOUBLE when every shift <= 0 and no multiplier is
                                    INT32_MIN: no left shift, no saturation (SIMD may skip them) */
    FQ_EPV_FIXED_SINGLE,
    FQ_EPV_FIXED_DOUBLE_UP,
    FQ_EPV_ONEDNN,               /* oneDNN's post-op order in float32 (fq_requant_onednn) */
    FQ_EPV_COUNT
} fq_epilogue_variant;

typedef struct {
    /* inputs, set by the caller */
    fq_epilogue_kind kind;
    const int32_t *col_offset;   /* [n_padded], see fq_col_offsets (includes int bias) */
    const int32_t *w_zero_point; /* [n_padded], or NULL when all zero */
    /* float modes */
    const float *bias;           /* fbgemm: per-column b of fmaf(b, bias_mult, (float)acc);
                                    float: per-column float bias (zeros for none; required) */
    float bias_mult;             /* fbgemm: f32(1/(double)atws) per tensor, 1 per channel */
    const float *scale;          /* fbgemm: mult[n]; qnnpack: req[n]; float: sx*sw[n] */
    /* fixed-point mode */
    const int32_t *multiplier;   /* [n_padded] Q31 multipliers */
    const int32_t *shift;        /* [n_padded] exponents, > 0 = left shift */
    int32_t rounding;            /* fq_rounding: how MultiplyByQuantizedMultiplier rounds */
    /* uint8 / int8 output: q = clamp(r + out_zero_point, out_min, out_max) in uint8 terms;
     * out_signed = 1 stores q ^ 0x80 (int8 y = uint8 y - 128, exactly, in every mode) */
    int32_t out_zero_point;
    int32_t out_min, out_max;    /* clamp bounds, e.g. 0/255, or zero point/255 with ReLU */
    int32_t out_signed;
    /* float output (FQ_EPI_FLOAT, dynamic quantization), y from f = (float)acc:
     *   float_fma = 1 (torch x86/fbgemm): y = fmaf(f, scale[n], bias[n])  one rounding
     *   float_fma = 0 (torch qnnpack):    y = f32(f32(f * scale[n]) + bias[n])
     *   (fmaf(f, s, 0) = f32(f * s) and f32(f * s) + 0 = f32(f * s) for the zero bias)
     *   float_relu = 1: y = max(y, 0) */
    int32_t float_fma;
    int32_t float_relu;
    /* oneDNN (FQ_EPI_ONEDNN), per column n, in float32 steps (fq_requant_onednn):
     *   y = f32(f32(f32((float)acc * src_scale) * scale[n]) + bias[n])     (bias: zeros for none)
     *   t = f32(f32(y * out_scale_inv) + zy), zy the output zero point in the output's own terms
     *   q = rne(clamp(t, lo, hi)), lo / hi = out_min / out_max in the output's own terms
     * (fused ReLU = out_min at the zero point: max(y, 0) before the scale gives the same q) */
    float src_scale;             /* f32(1 / f32(1 / (double)sx)): oneDNN inverts torch's 1/sx */
    float out_scale_inv;         /* f32(1 / d), d = f32(1 / f32(1 / (double)sy)): oneDNN inverts
                                    torch's reciprocal of sy, then multiplies by the inverse */
    /* set by fq_epilogue_prepare */
    int32_t variant;             /* fq_epilogue_variant */
    int32_t scalar_only;         /* 1: shifts outside [-31, 30], which only the scalar code defines */
} fq_epilogue;

/* Checks the inputs of ep (pointers the kind needs, rounding, bounds) for n_padded columns and
 * sets variant / scalar_only. Returns 0, or -1 when ep is unusable. */
int fq_epilogue_prepare(fq_epilogue *ep, int32_t n_padded);

/* ---- the backend table (runtime/backends.c) -----------------------------------------
 * A backend is one entry of the table: a name, the CPU features it needs (runtime/cpu.h, OS
 * enablement included), the parent whose kernels it inherits, and a fill function that
 * overrides the kernels it has. Every kernel family is looked up in the current backend's
 * resolved kernels, so FASTQ_BACKEND / fq_set_backend govern all of them. Entries are ordered
 * so that each is preferred over those before it; a parent comes before its children. */
typedef enum {
    FQ_BACKEND_SCALAR = 0,
    FQ_BACKEND_AVX2 = 1,
    FQ_BACKEND_AVX512VNNI = 2,
    /* FQ_BACKEND_AMX = 3 will go here (parent avx512vnni; needs FQ_FEAT_AMX_TILE | AMX_INT8 |
     * OS_AMX | AMX_PERMITTED, the detection runtime/cpu.c already has) */
    FQ_BACKEND_COUNT = 3
} fq_backend;

/* The kernel families; each fq_kernels field belongs to one, and run counters are per family. */
typedef enum {
    FQ_FAMILY_GEMM = 0,          /* microkernel, GEMV kernel, row sums, tile rows */
    FQ_FAMILY_EPILOGUE,          /* the requantizing epilogues of a tile */
    FQ_FAMILY_PACK,              /* weight packing */
    FQ_FAMILY_CONVERT,           /* quantize / dequantize / min-max of float arrays */
    FQ_FAMILY_ELEMENTWISE,       /* quantized add / mul */
    FQ_FAMILY_FIXEDPOINT,        /* MultiplyByQuantizedMultiplier over arrays */
    FQ_FAMILY_CONV,              /* depthwise tiles, exact and saturating (GEMM convolution runs
                                    the gemm family) */
    FQ_FAMILY_POOL,              /* max pooling (NHWC), plane sums */
    FQ_FAMILY_GEMM_FUSED,        /* microkernel + byte epilogue in one call per tile */
    FQ_FAMILY_COUNT
} fq_family;

const char *fq_backend_name(int backend);       /* "unknown" outside the table */
const char *fq_family_name(int family);
int fq_backend_parent(int backend);             /* -1 for the root (scalar) */
uint32_t fq_backend_features(int backend);      /* FQ_FEAT_* mask (runtime/cpu.h) */
int fq_backend_compiled(int backend);           /* this build has its fill function */
int fq_backend_supported(int backend);          /* compiled, its features present, parent supported */
int fq_best_backend(void);
int fq_get_backend(void);                       /* FASTQ_BACKEND, else the best, on first use */
int fq_set_backend(int backend);                /* 0, or -1 when not supported */
/* The backend whose kernels backend uses for family (itself, or the ancestor it inherits
 * them from); -1 when backend is not compiled. */
int fq_family_owner(int backend, int family);
/* Backend's own kernels of family can run here: they may need less than the whole backend
 * (the AVX-512 conversions need no VNNI). Tests and benches force an ISA with it. */
int fq_family_supported(int backend, int family);
/* Calls that ran family's kernels of backend (the owner of what ran, not the selected one)
 * since the library loaded: the test suite's covered-paths check (ruy's test.h). Approximate
 * under concurrent calls (a relaxed load + store, no locked add); never 0 once a call ran. */
long long fq_family_runs(int family, int backend);

/* Per-ISA kernels. A tile is mr rows (mr <= kernels->mr[w]) by one panel of nr columns
 * (w = nr / 16 - 1: one kernel per panel width, each with its own rows per tile).
 * ukernel: tile[i*64 + c] = sum_k (a[i*lda + k] ^ a_xor) * panel_w[k][c], c < nr (raw, no zero
 *   points; row stride 64 for every width); a_xor is 0 for uint8 activations, 0x80 for int8
 *   ones (int8 x = uint8 (x ^ 0x80) - 128)
 * epilogue: out rows/cols of the tile, valid columns nc (<= 64), starting at column n0. */
typedef void (*fq_ukernel_fn)(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                              const int8_t *panel, int32_t k_groups, int32_t nr, int32_t *tile);
typedef void (*fq_epilogue_fn)(int32_t mr, int32_t nc, const int32_t *tile,
                               const int32_t *row_sums, int32_t n0, const fq_epilogue *ep,
                               void *out, ptrdiff_t ldo);
/* fused: a ukernel tile and the byte epilogue of ep->variant / ep->out_signed on it, in one call:
 * the same bytes as ukernel then epilogue[variant][out_signed] (mr, nr as ukernel; nc, n0,
 * row_sums, out, ldo as epilogue). */
typedef void (*fq_fused_fn)(int32_t mr, int32_t k, const uint8_t *a, ptrdiff_t lda, uint8_t a_xor,
                            const int8_t *panel, int32_t k_groups, int32_t nr, int32_t nc,
                            const int32_t *row_sums, int32_t n0, const fq_epilogue *ep, void *out,
                            ptrdiff_t ldo);
/* A part of the packed K: `count` runs of whole k-groups of the packed weights, run s being
 * groups first[s] .. first[s] + groups[s] - 1, in increasing order. The A matrix of such a
 * GEMM holds the runs' k values back to back (K' = 4 * sum groups[s] bytes a row). A
 * convolution whose window overlaps the padding multiplies only its taps inside the input:
 * with k ordered (kh, kw, c) each kept kernel row is one run. */
#define FQ_K_RUNS_MAX 16
typedef struct {
    int32_t count;
    int32_t first[FQ_K_RUNS_MAX];
    int32_t groups[FQ_K_RUNS_MAX];
} fq_k_runs;
/* The fused kernel over runs of K (uint8 A): the panel part of run s starts at group first[s]. */
typedef void (*fq_fused_runs_fn)(int32_t mr, const fq_k_runs *runs, const uint8_t *a, ptrdiff_t lda,
                                 const int8_t *panel, int32_t nr, int32_t nc, const int32_t *row_sums,
                                 int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo);

/* sums[i] = sum_k (a[i*lda + k] ^ a_xor) modulo 2^32 (needed when some weight zero point is not 0;
 * the accumulator arithmetic wraps, and the overflow check guarantees the final acc fits) */
typedef void (*fq_row_sums_fn)(const uint8_t *a, ptrdiff_t lda, int32_t m, int32_t k, uint8_t a_xor,
                               int32_t *sums);
/* Packs n rows of k int8 weights into data (every byte of it, padding zeroed) and gives each
 * row's sum, min and max. */
typedef void (*fq_pack_fn)(const int8_t *w, ptrdiff_t ldw, int32_t n, int32_t k, int8_t *data,
                           int32_t *row_sum, int32_t *row_min, int32_t *row_max);
typedef void (*fq_mbqm_array_fn)(const int32_t *x, int64_t n, const int32_t *multiplier,
                                 const int32_t *shift, int64_t n_channels, int rounding, int32_t *out);
struct fq_convert_kernels;       /* convert/convert.h */
struct fq_elementwise_kernels;   /* elementwise/elementwise.h */
struct fq_conv_kernels;          /* conv/conv.h */
struct fq_pool_kernels;          /* pool/pool.h */
typedef struct {
    const char *name;
    /* FQ_FAMILY_GEMM */
    int32_t mr[FQ_NR_WIDTHS];    /* rows per tile, 1..FQ_MR_MAX, per panel width 16(w + 1) */
    fq_ukernel_fn ukernel[FQ_NR_WIDTHS];
    fq_ukernel_fn gemv;          /* mr == 1 kernel of a 64-wide panel; may equal ukernel[3] */
    fq_row_sums_fn row_sums;
    /* FQ_FAMILY_EPILOGUE */
    fq_epilogue_fn epilogue[FQ_EPV_COUNT][2];   /* [variant][out_signed]; inherited entries
                                                   where an ISA has no SIMD one */
    /* FQ_FAMILY_PACK */
    fq_pack_fn pack;
    /* FQ_FAMILY_CONVERT */
    const struct fq_convert_kernels *convert;
    /* FQ_FAMILY_ELEMENTWISE */
    const struct fq_elementwise_kernels *elementwise;
    /* FQ_FAMILY_FIXEDPOINT */
    fq_mbqm_array_fn multiply_by_quantized_multiplier;
    /* FQ_FAMILY_CONV */
    const struct fq_conv_kernels *conv;
    /* FQ_FAMILY_POOL */
    const struct fq_pool_kernels *pool;
    /* FQ_FAMILY_GEMM_FUSED: [panel width][variant], NULL for the variants with no fused kernel
     * (int32, float and fixed-point outputs run ukernel then epilogue) */
    fq_fused_fn fused[FQ_NR_WIDTHS][FQ_EPV_COUNT];
    /* the same over runs of K (fq_k_runs, uint8 A only), or NULL: the driver then runs the
     * microkernel per run and the tile epilogue (the twin these are tested against) */
    fq_fused_runs_fn fused_runs[FQ_NR_WIDTHS][FQ_EPV_COUNT];
    /* set by the table: which backend supplied each family (per entry for the epilogues) */
    int8_t owner[FQ_FAMILY_COUNT];
    int8_t epilogue_owner[FQ_EPV_COUNT][2];
} fq_kernels;

/* Which ISA paths this build compiles (each ISA file compiles its own target). */
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX2)
#define FQ_COMPILE_AVX2 1
#endif
#if defined(__x86_64__) && !defined(FASTQ_NO_AVX512)
#define FQ_COMPILE_AVX512 1
#endif

const fq_kernels *fq_kernels_for(int backend);   /* resolved kernels; NULL when not compiled in */
const fq_kernels *fq_current_kernels(void);      /* fq_kernels_for(fq_get_backend()) */
/* The kernels a call of family runs: the current backend's (isa < 0), or isa's when its own
 * kernels of family can run here, else scalar's. Counts the run under the owner. */
const fq_kernels *fq_kernels_run(int family, int isa);
void fq_note_run(int family, int owner);
/* Tests only: the scalar backend's rows per tile for every panel width (its kernels take any
 * count), to drive the GEMM driver with tiles of up to FQ_MR_MAX rows. Returns the previous count, or -1 outside
 * 1..FQ_MR_MAX (nothing changed). */
int fq_scalar_set_mr(int32_t mr);

/* ---- the GEMM driver ----------------------------------------------------------------
 * out[m, n] = epilogue(acc[m, n]) for m < M, n < N; a is [M, K] bytes with row stride lda,
 * uint8 (a_signed = 0) or int8 (a_signed = 1: the kernels read x ^ 0x80, and the epilogue's
 * col_offset is built for the zero point + 128); out row stride ldo in elements (int32, float
 * or bytes per ep->kind). ep must have passed fq_epilogue_prepare. Runs on the current backend
 * with num_threads threads (<= 0: the default). Returns 0, or -1 when out of memory. */
/* Tests and benchmarks only: enabled = 0 makes fq_gemm run ukernel then epilogue for every
 * variant (no fused kernel); returns the previous setting. */
int fq_gemm_set_fused(int enabled);
int fq_gemm(const fq_packed_weights *w, const uint8_t *a, ptrdiff_t lda, int32_t m, int a_signed,
            const fq_epilogue *ep, void *out, ptrdiff_t ldo, int num_threads);

/* Several GEMMs with the same packed weights in one call: part i is out_i[m, n] =
 * epilogue_i(acc_i[m, n]) for its m rows of A over its runs of K (fq_k_runs; NULL: the whole K).
 * One run takes the fused kernels (its panel part starts at group first[0]); several take the
 * backend's fused_runs kernels, or where it has none the microkernel per run into int32 tiles,
 * summed (wrapping, as the kernels add), then the epilogue. The parts' epilogues must be one
 * arithmetic (variant, output type, weight zero points or not) and differ at most in their
 * column offsets, which must be the ones for their runs (only the caller knows what the
 * left-out k contribute). The tiles run panel by panel across the parts, so each panel of
 * weights is read into the caches once per call. At most FQ_GEMM_PARTS_MAX parts (the 8 x 8
 * windows of a clipped convolution); -1 for parts that break these rules, or when out of memory. */
#define FQ_GEMM_PARTS_MAX 64
typedef struct {
    const fq_k_runs *runs;
    const uint8_t *a;
    ptrdiff_t lda;
    int32_t m;
    const fq_epilogue *ep;
    void *out;
    ptrdiff_t ldo;
} fq_gemm_part;
int fq_gemm_parts(const fq_packed_weights *w, const fq_gemm_part *parts, int32_t n_parts, int a_signed,
                  int num_threads);


/* ---- threads ------------------------------------------------------------------------ */
int fq_get_num_threads(void);
void fq_set_num_threads(int n);
typedef void (*fq_task_fn)(void *ctx, int64_t task);
void fq_parallel_for(int64_t n_tasks, fq_task_fn fn, void *ctx, int num_threads);

/* ---- fixed point (requant_fixedpoint.h, docs/ARITHMETIC.md §8) ---------------------
 * out[i] = MultiplyByQuantizedMultiplier(x[i], multiplier[c], shift[c]), c = i % n_channels
 * (n must be a multiple of n_channels), rounding an fq_rounding. Shifts must lie in [-31, 30]. */
void fq_multiply_by_quantized_multiplier_array(const int32_t *x, int64_t n, const int32_t *multiplier,
                                               const int32_t *shift, int64_t n_channels,
                                               int rounding, int32_t *out);

/* ---- elementwise add / mul (elementwise/elementwise.h, reference.py) ------------------
 * isa as for the conversions below: -1 the current backend, or a backend id to force its
 * kernels (scalar when they cannot run here). Values are uint8, or int8 when is_signed. */
/* torch qadd_kernel (x86 / fbgemm engines): the first n_vec elements as its vectorized body
 * (dequantize fmaf(s, q, s * -zp), quantize zp + cvtps2dq(min(c * inv_s, 2^31 - 128)) in wrapping
 * int32), the rest as its scalar tail (dequantize (q - zp) * s, quantize rne(zp + c * inv_s),
 * saturating). */
void fq_qadd_fbgemm(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                    float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                    float inv_scale, int32_t zero_point, int relu, int is_signed);
/* QNNPACK q8 add (uint8): y = clamp(zp + rshift_round_away(zpp + a * am + b * bm, shift)),
 * in wrapping int32 as the C code does; 0 < shift < 36. Shifts 32..35 (scale ratios below
 * 2^-10, which QNNPACK does not guard) go as torch runs them: constants from shifts of count
 * mod 32, acc shifted with sign fill except in a last 4096-element tile of 1..7 elements
 * (count mod 32; reference.qadd_qnnpack, fq_qnnpack_long_end). */
void fq_qadd_qnnpack(int isa, const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                     int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                     uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max);
/* torch qmul_kernel: y = clamp(zp + rne((float)((a - za) * (b - zb)) * m)), relu: max(y, zp);
 * the first n_vec elements as its vectorized body (cvtps2dq, zero point added in wrapping
 * int32), the rest as its scalar tail (lrintf into int64): they differ once the product
 * exceeds 2^31 output steps (reference.qmul). */
/* y = min(max(x, lo), hi) per element (quantized ReLU / ReLU6 / Hardtanh), lo <= hi in the
 * dtype's range. */
void fq_qclamp(int isa, const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed);
void fq_qmul(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
             int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed);

/* ---- quantize / dequantize (torch semantics, docs/ARITHMETIC.md §10) --------------- */
/* The conversions run the current backend's ISA (avx512vnni -> AVX-512, avx2 -> AVX2+FMA,
 * else scalar); the functions below take isa = an fq_backend to force one (tests, benches;
 * scalar when it cannot run here) or -1 for the current backend. Results never depend on it. */
int fq_convert_supported(int isa);       /* fq_family_supported(isa, FQ_FAMILY_CONVERT) */
/* q = clamp(rne(min(fmaf(x, inv_scale, zp), 2147483520)), qmin, qmax), NaN -> qmax, on a chosen
 * ISA; q holds int8 bytes when qmin < 0 (qmin, qmax in the range of the byte type) */
void fq_quantize_u8_isa(int isa, const float *x, int64_t n, float inv_scale, float zero_point,
                        int32_t qmin, int32_t qmax, uint8_t *q);
/* x = f32((float)(q - zero_point) * scale)   (torch per-tensor dequantize) */
void fq_dequantize_u8(int isa, const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x);
void fq_dequantize_s8(int isa, const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x);
/* min and max of x[0..n) in one pass; returns 1 when every x is finite, 0 when some x is
 * NaN or inf (min / max then unspecified). n == 0 gives 0, 0 and 1. */
int fq_minmax_f32(int isa, const float *x, int64_t n, float *min_out, float *max_out);
/* out[i] = fmaf(x[i], y[i], z[i]) as the scalar kernels compute it (no libm call where the
 * compiler has no FMA instruction); for tests */
void fq_fmaf_portable(const float *x, const float *y, const float *z, int64_t n, float *out);

#ifdef __cplusplus
}
#endif
#endif
