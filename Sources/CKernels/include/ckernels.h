// Packed-weight single-precision GEMM: C[M, N] = A[M, K] · W + bias, with W packed once at load.
//
// Layout of a packed weight (kernel `kind`, panel width NR = pg_gemm_nr(kind)):
//   panels of NR output columns; panel p holds, for k = 0..<K, the NR values W[k][p·NR ..< p·NR+NR]
//   contiguously (zero beyond N): packed[(p·K + k)·NR + c] = W(k, p·NR + c).
// Every output element is accumulated in an order that depends on K and the kernel only, never on
// M or on which rows share a call: a row's result is the same whatever it is batched with.
#ifndef PALIGEMMA_CKERNELS_H
#define PALIGEMMA_CKERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Kernels: 0 portable C (NR 16), 1 AVX2+FMA (NR 16, 6 rows), 2 AVX-512F (NR 32, 8 rows);
/// 3 the rows layout: W kept as its [N, K] rows (NR 1) for a BLAS library's sgemm, which the caller
/// runs (`pg_gemm_packed_w` must not be called with it; packing, rows and padding work as for the others);
/// 4 oneDNN's matmul (a `pg_onednn_weight`, see below; available when libdnnl.so.2 loads).
enum { PG_GEMM_PORTABLE = 0, PG_GEMM_AVX2 = 1, PG_GEMM_AVX512 = 2, PG_GEMM_ROWS = 3, PG_GEMM_ONEDNN = 4 };

/// Element types: of a packed weight (F32 or BF16) and of the source rows it is packed from.
/// A BF16 packed weight holds the high halves of F32 values: each is widened (exactly) to F32 in
/// registers and the products are summed in the same order as for F32 panels holding the same values,
/// so the results equal bit for bit those of an F32 weight widened from the same BF16 values.
enum { PG_F32 = 0, PG_BF16 = 1, PG_F16 = 2, PG_I8 = 3 };

/// 1 when this CPU (and OS) can run `kind`.
int pg_gemm_available(int kind);
/// The fastest available kind, or the one named by PALIGEMMA_GEMM=portable|avx2|avx512 if available.
int pg_gemm_best(void);
/// Panel width of `kind`.
int pg_gemm_nr(int kind);
/// Floats in a packed [N, K] weight for `kind`.
size_t pg_gemm_packed_count(int kind, int n, int k);
/// Packs panels [panel_lo, panel_hi) of W given as [K, N].
void pg_gemm_pack_kn(int kind, const float *w, int k, int n, float *packed, int panel_lo, int panel_hi);
/// Packs panels [panel_lo, panel_hi) of W [N, K] (F32) whose rows are `ldw` floats apart (a head's keys or values inside a KV cache).
void pg_gemm_pack_nk_strided(int kind, const float *w, int ldw, int n, int k, float *packed, int panel_lo, int panel_hi);
void pg_gemm_pack_kn_strided(int kind, const float *w, int ldw, int k, int n, float *packed, int panel_lo, int panel_hi);
/// Bytes of a packed [N, K] weight of element type `wtype` (PG_F32 or PG_BF16) for `kind`.
size_t pg_gemm_packed_bytes(int kind, int wtype, int n, int k);
/// Writes rows [row_lo, row_hi) of W [N, K] into a packed weight of element type `wtype`, reading
/// row r from `src` + (r − row_lo)·ldw elements of type `stype` (PG_F32, PG_BF16 or PG_F16; any
/// alignment). F32 → BF16 rounds to nearest even (NaN stays NaN); every other pair is exact.
/// Rows of one panel may come from separate calls (a fused q|k|v matrix from three tensors); calls
/// that run at the same time should cover whole panels (no two threads on one cache line).
void pg_gemm_pack_rows(int kind, int wtype, int stype, const void *src, size_t ldw, int k, int row_lo,
                       int row_hi, void *packed);
/// Widens `n` elements of type `stype` (PG_F32, PG_BF16 or PG_F16; any alignment, little-endian) to
/// F32, exactly (NaN payloads kept): the one conversion both packing and safetensors reading use.
void pg_convert_to_f32(int stype, const void *src, size_t n, float *dst);
/// Zeroes the padding columns of the last panel (rows N ..< panels·NR) of a packed [N, K] weight.
void pg_gemm_pack_pad(int kind, int wtype, int n, int k, void *packed);
/// Row j of a packed [N, K] weight, times `scale`, as F32 (an embedding lookup in a tied matrix).
void pg_gemm_packed_row(int kind, int wtype, int n, int k, const void *packed, int j, float scale, float *dst);
/// `pg_gemm_packed` for a weight of element type `wtype` (PG_F32 or PG_BF16).
void pg_gemm_packed_w(int kind, int wtype, int m, int n, int k, const float *a, int lda, const void *packed,
                      const float *bias, float *c, int ldc, int panel_lo, int panel_hi);
/// C[M, N] (row stride ldc) = A[M, K] (row stride lda) · W (+ bias[N]), for output panels
/// [panel_lo, panel_hi) only (threads split the panels). C need not be initialised.
void pg_gemm_packed(int kind, int m, int n, int k, const float *a, int lda, const float *packed,
                    const float *bias, float *c, int ldc, int panel_lo, int panel_hi);

/// Int8 weights (Sources/CKernels/gemm_i8.c), on panels of NR = pg_gemm_nr(kind) output columns.
/// Quantization per output column n (a row of W [N, K]): scale_n = max_k |w| / 127 (F32), q = rint(w / scale_n)
/// (ties to even) clamped to [−127, 127]; a row of zeros gets scale 0 and q = 0. K is padded to K4 (a
/// multiple of 4) with zeros. Panel p is `pg_i8_panel_bytes(NR, K)` bytes: NR F32 scales, NR int32 column
/// sums Σ_k q, then K4/4 groups of [NR columns][4 consecutive k] int8 values.
/// Variants of the int8 products (all multiply the same panels):
enum { PG_I8_PORTABLE = 0, PG_I8_AVX2 = 1, PG_I8_AVXVNNI = 2, PG_I8_AVX512VNNI = 3 };
size_t pg_i8_panel_bytes(int nr, int k);
/// The quantization of one value (what packing does): rint(w / scale) clamped to ±127; 0 when scale is 0.
float pg_i8_quantize_one(float w, float scale);
/// Quantizes rows [row_lo, row_hi) of W [N, K] (source rows as for `pg_gemm_pack_rows`) into their columns.
void pg_i8_pack_rows(int nr, int stype, const void *src, size_t ldw, int k, int row_lo, int row_hi, void *packed);
/// Rows [row_lo, row_hi) already quantized (a `paligemma quantize`d checkpoint): int8 values at src + (r − row_lo)·ldw
/// (−128 read as −127: the kernels' sign tricks need the symmetric range) and scales[r − row_lo].
void pg_i8_pack_quantized_rows(int nr, const void *src, const float *scales, size_t ldw, int k, int row_lo,
                               int row_hi, void *packed);
/// Zeroes the padding columns (N ..< panels·NR) of the last panel: scale 0, sum 0, q 0.
void pg_i8_pack_pad(int nr, int n, int k, void *packed);
/// Row j of W dequantized (q · scale_j), times `scale`.
void pg_i8_row(int nr, int k, const void *packed, int j, float scale, float *dst);
/// Row j of W as stored: its scale, K int8 values and their sum (tests, the reference).
void pg_i8_column(int nr, int k, const void *packed, int j, float *scale, signed char *q, int *sum);
int pg_i8_variant_available(int variant);
/// Panel width a variant's fast kernel needs (32 for AVX512-VNNI, 16 otherwise); the portable one takes any.
int pg_i8_variant_nr(int variant);
/// The fastest variant for panels of `kind` on this CPU.
int pg_i8_best_variant(int kind);
/// 128 when the variant takes activations as u8 (q + 128: the VNNI ones), else 0 (int8 q).
int pg_i8_offset(int variant);
/// Per row i of A [M, K]: scale_i = max |a| / 127, q = rint(a / scale_i) clamped to ±127 (0 for a row of
/// zeros, scale 0), plus the variant's offset, written as K4 bytes at q + i·ldq (padding = the offset).
void pg_i8_quantize_rows(int variant, int m, int k, const float *a, int lda, void *q, int ldq, float *scales);
/// W8A8: C[M, N] = (Σ_k qa·qw) · (scale_a · scale_w) (+ bias) for output panels [panel_lo, panel_hi): the
/// integer sums exact, the float steps the same in every variant (results equal bit for bit).
void pg_gemm_i8(int variant, int nr, int m, int n, int k, const void *qa, int ldq, const float *ascale,
                const void *packed, const float *bias, float *c, int ldc, int panel_lo, int panel_hi);
/// W8A32: C[M, N] = (Σ_k a·qw) · scale_w (+ bias), F32 activations; per (column, k mod 4) FMA chains in k
/// order, added as (s0 + s1) + (s2 + s3): every variant gives the same bits.
/// The W8A8 epilogue on exact int32 sums S [M, N] (row stride N) of u8/s8 activations (q + offset) and int8
/// weights: C = (float)(S − offset·sums_n) · (ascale_i · wscale_n) (+ bias_n), the very float steps of
/// `pg_gemm_i8`. C may be S itself (in place).
void pg_i8_finish(int m, int n, int *s, int offset, const int *sums, const float *wscale, const float *ascale,
                  const float *bias, float *c);
void pg_gemm_i8f(int variant, int nr, int m, int n, int k, const float *a, int lda, const void *packed,
                 const float *bias, float *c, int ldc, int panel_lo, int panel_hi);

/// oneDNN (Sources/CKernels/onednn.c): loaded with dlopen on first use; 0 where it is not installed
/// (or PALIGEMMA_NO_ONEDNN is set).
int pg_onednn_available(void);
/// "oneDNN X.Y.Z", or "" when not available.
const char *pg_onednn_version(void);
typedef struct pg_onednn_weight pg_onednn_weight;
/// W [N, K] given as F32 rows, reordered into oneDNN's layout for its matmul; NULL on failure.
pg_onednn_weight *pg_onednn_weight_create(int n, int k, const float *rows);
size_t pg_onednn_weight_bytes(const pg_onednn_weight *w);
void pg_onednn_weight_destroy(pg_onednn_weight *w);
/// Writes W back as F32 rows [N, K]; 0 on failure.
int pg_onednn_weight_unpack(const pg_onednn_weight *w, float *rows);
/// C[M, N] = A[M, K] · W (+ bias[N]) on `threads` OpenMP threads (rows dense: lda = K, ldc = N); 0 on failure.
int pg_onednn_matmul(pg_onednn_weight *w, int m, const float *a, const float *bias, float *c, int threads);
/// 1 where oneDNN multiplies int8 with VNNI or AMX instructions (exact int32 sums), else 0.
int pg_onednn_i8_available(void);
/// An int8 weight from N rows of K int8 values (row n at rows + n·ld), with each row's F32 scale and Σ q
/// (kept for `pg_onednn_i8_finish`); activations will be u8 (q + 128) when `u8`, else s8. NULL on failure.
pg_onednn_weight *pg_onednn_i8_weight_create(int n, int k, const void *rows, size_t ld, const float *scales,
                                             const int *sums, int u8);
/// The int8 rows [N, K] (contiguous), scales and sums back (tests and tools).
int pg_onednn_i8_weight_unpack(const pg_onednn_weight *w, signed char *rows, float *scales, int *sums);
/// S [M, N] = exact int32 Σ_k qa·q over quantized activation rows qa (ldq bytes apart). 0 on failure.
int pg_onednn_i8_matmul(pg_onednn_weight *w, int m, const void *qa, int ldq, int *sums, int threads);
/// `pg_i8_finish` with the weight's offset, sums and scales, for M rows of S (in place into C allowed).
void pg_onednn_i8_finish(const pg_onednn_weight *w, int m, int *sums, const float *ascale, const float *bias,
                         float *c);

/// The x86 ISA extensions this CPU (and OS) offers that matter to our kernels, space-separated
/// ("avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_int8"…); "" elsewhere.
const char *pg_cpu_features(void);
/// Reads `n` floats once, streaming, and returns their sum (so the reads cannot be optimised away):
/// the machine's read bandwidth when threads call it on disjoint parts of a buffer far larger than cache.
float pg_stream_sum(const float *p, size_t n);
/// Runs `rounds` rounds of 12 independent FMA chains (registers only, no memory traffic) on the widest
/// vectors our kernels use on this CPU (AVX-512, else AVX2 + FMA, else scalar) and returns the
/// floating-point operations done: timed on every thread at once, the machine's multiply-add peak.
double pg_fma_peak_loop(long rounds);

#ifdef __cplusplus
}
#endif
#endif
