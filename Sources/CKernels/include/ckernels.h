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

/// Kernels: 0 portable C (NR 16), 1 AVX2+FMA (NR 16, 6 rows), 2 AVX-512F (NR 32, 8 rows).
enum { PG_GEMM_PORTABLE = 0, PG_GEMM_AVX2 = 1, PG_GEMM_AVX512 = 2 };

/// 1 when this CPU (and OS) can run `kind`.
int pg_gemm_available(int kind);
/// The fastest available kind, or the one named by PALIGEMMA_GEMM=portable|avx2|avx512 if available.
int pg_gemm_best(void);
/// Panel width of `kind`.
int pg_gemm_nr(int kind);
/// Floats in a packed [N, K] weight for `kind`.
size_t pg_gemm_packed_count(int kind, int n, int k);
/// Packs panels [panel_lo, panel_hi) of W given as [N, K] (PyTorch Linear weight, y = x·Wᵀ).
void pg_gemm_pack_nk(int kind, const float *w, int n, int k, float *packed, int panel_lo, int panel_hi);
/// Packs panels [panel_lo, panel_hi) of W given as [K, N].
void pg_gemm_pack_kn(int kind, const float *w, int k, int n, float *packed, int panel_lo, int panel_hi);
/// The same with the source's rows `ldw` floats apart (a head's keys or values inside a KV cache).
void pg_gemm_pack_nk_strided(int kind, const float *w, int ldw, int n, int k, float *packed, int panel_lo, int panel_hi);
void pg_gemm_pack_kn_strided(int kind, const float *w, int ldw, int k, int n, float *packed, int panel_lo, int panel_hi);
/// C[M, N] (row stride ldc) = A[M, K] (row stride lda) · W (+ bias[N]), for output panels
/// [panel_lo, panel_hi) only (threads split the panels). C need not be initialised.
void pg_gemm_packed(int kind, int m, int n, int k, const float *a, int lda, const float *packed,
                    const float *bias, float *c, int ldc, int panel_lo, int panel_hi);

#ifdef __cplusplus
}
#endif
#endif
