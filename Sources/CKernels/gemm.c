// Packed-weight SGEMM (see include/ckernels.h for the layout and the promise on summation order).
//
// Loop nest (BLIS-style, with B packed once at load instead of per call):
//   for each block of MC rows of A
//     for each block of KC_MAX along K (blocks depend on K only: same sums for every M)
//       pack that A block into row panels [kc][MR]          (L2-resident)
//       for each output panel of NR columns of this thread  (B micro-panel, kc × NR, L1-resident)
//         for each row panel: micro-kernel R×NR, R ≤ MR     (C tile in registers)
// The first K block stores its partial sums, later ones add theirs to C, the last adds the bias:
// per element, C = ((s₀ + s₁) + s₂ …) + bias with each sᵢ one FMA chain over its K block, in k order.
#include "ckernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PG_X86 1
#endif

#ifndef C_BUDGET
#define C_BUDGET (1u << 20)
#endif
#ifndef KC_MAX
#define KC_MAX 256
#endif
enum { MC_MAX = 384 };
enum { F_ACCUM = 1, F_BIAS = 2 };

typedef void (*kern_fn)(int kc, const float *a, const float *b, float *c, int ldc, int ncols, int flags,
                        const float *bias);

typedef struct {
    int nr, mr;
    kern_fn k[9];   // k[r]: r rows, 1 ≤ r ≤ mr
} impl_t;

// Writes an r × nr tile t (row stride nr) to C: columns < ncols, with the flags.
static inline void store_tile_scalar(int r, int nr, const float *t, float *c, int ldc, int ncols, int flags,
                                     const float *bias) {
    for (int i = 0; i < r; i++) {
        for (int j = 0; j < ncols; j++) {
            float v = t[i * nr + j];
            if (flags & F_ACCUM) v = c[(size_t)i * ldc + j] + v;
            if (flags & F_BIAS) v = v + bias[j];
            c[(size_t)i * ldc + j] = v;
        }
    }
}

// MARK: Portable kernel (any CPU): 4 × 16, plain C.

enum { PORT_MR = 4, PORT_NR = 16 };

static inline __attribute__((always_inline)) void port_body(const int R, int kc, const float *a, const float *b,
                                                            float *c, int ldc, int ncols, int flags,
                                                            const float *bias) {
    float acc[PORT_MR][PORT_NR];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        for (int i = 0; i < R; i++) {
            float av = a[p * PORT_MR + i];
            for (int j = 0; j < PORT_NR; j++) acc[i][j] = __builtin_fmaf(av, b[p * PORT_NR + j], acc[i][j]);
        }
    }
    store_tile_scalar(R, PORT_NR, &acc[0][0], c, ldc, ncols, flags, bias);
}

#define PORT_K(R)                                                                                              \
    static void port_k##R(int kc, const float *a, const float *b, float *c, int ldc, int ncols, int flags,     \
                          const float *bias) {                                                                 \
        port_body(R, kc, a, b, c, ldc, ncols, flags, bias);                                                    \
    }
PORT_K(1) PORT_K(2) PORT_K(3) PORT_K(4)

static const impl_t port_impl = {PORT_NR, PORT_MR, {0, port_k1, port_k2, port_k3, port_k4}};

#ifdef PG_X86

// MARK: AVX2 + FMA kernel: 6 × 16 (12 accumulators, 2 B loads and 6 broadcasts per 12 FMAs).

enum { AVX2_MR = 6, AVX2_NR = 16 };

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
avx2_body(const int R, int kc, const float *a, const float *b, float *c, int ldc, int ncols, int flags,
          const float *bias) {
    __m256 c0[AVX2_MR], c1[AVX2_MR];
    for (int i = 0; i < R; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (int p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(b + AVX2_NR * p), b1 = _mm256_loadu_ps(b + AVX2_NR * p + 8);
        for (int i = 0; i < R; i++) {
            __m256 av = _mm256_broadcast_ss(a + AVX2_MR * p + i);
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
    }
    if (ncols == AVX2_NR) {
        for (int i = 0; i < R; i++) {
            float *ci = c + (size_t)i * ldc;
            __m256 v0 = c0[i], v1 = c1[i];
            if (flags & F_ACCUM) { v0 = _mm256_add_ps(_mm256_loadu_ps(ci), v0); v1 = _mm256_add_ps(_mm256_loadu_ps(ci + 8), v1); }
            if (flags & F_BIAS) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8)); }
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        }
    } else {
        float t[AVX2_MR * AVX2_NR];
        for (int i = 0; i < R; i++) { _mm256_storeu_ps(t + i * AVX2_NR, c0[i]); _mm256_storeu_ps(t + i * AVX2_NR + 8, c1[i]); }
        store_tile_scalar(R, AVX2_NR, t, c, ldc, ncols, flags, bias);
    }
}

#define AVX2_K(R)                                                                                              \
    __attribute__((target("avx2,fma"))) static void avx2_k##R(int kc, const float *a, const float *b, float *c, \
                                                              int ldc, int ncols, int flags, const float *bias) { \
        avx2_body(R, kc, a, b, c, ldc, ncols, flags, bias);                                                    \
    }
AVX2_K(1) AVX2_K(2) AVX2_K(3) AVX2_K(4) AVX2_K(5) AVX2_K(6)

static const impl_t avx2_impl = {AVX2_NR, AVX2_MR, {0, avx2_k1, avx2_k2, avx2_k3, avx2_k4, avx2_k5, avx2_k6}};

// MARK: AVX-512F kernel: 8 × 32 (16 accumulators; B in 2 zmm, A broadcast from memory into each FMA).

enum { AVX512_MR = 8, AVX512_NR = 32 };

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
avx512_body(const int R, int kc, const float *a, const float *b, float *c, int ldc, int ncols, int flags,
            const float *bias) {
    __m512 c0[AVX512_MR], c1[AVX512_MR];
    for (int i = 0; i < R; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(b + AVX512_NR * p), b1 = _mm512_loadu_ps(b + AVX512_NR * p + 16);
        for (int i = 0; i < R; i++) {
            __m512 av = _mm512_set1_ps(a[AVX512_MR * p + i]);
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
    }
    if (ncols == AVX512_NR) {
        for (int i = 0; i < R; i++) {
            float *ci = c + (size_t)i * ldc;
            __m512 v0 = c0[i], v1 = c1[i];
            if (flags & F_ACCUM) { v0 = _mm512_add_ps(_mm512_loadu_ps(ci), v0); v1 = _mm512_add_ps(_mm512_loadu_ps(ci + 16), v1); }
            if (flags & F_BIAS) { v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias)); v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + 16)); }
            _mm512_storeu_ps(ci, v0);
            _mm512_storeu_ps(ci + 16, v1);
        }
    } else {
        float t[AVX512_MR * AVX512_NR];
        for (int i = 0; i < R; i++) { _mm512_storeu_ps(t + i * AVX512_NR, c0[i]); _mm512_storeu_ps(t + i * AVX512_NR + 16, c1[i]); }
        store_tile_scalar(R, AVX512_NR, t, c, ldc, ncols, flags, bias);
    }
}

#define AVX512_K(R)                                                                                            \
    __attribute__((target("avx512f"))) static void avx512_k##R(int kc, const float *a, const float *b, float *c, \
                                                               int ldc, int ncols, int flags, const float *bias) { \
        avx512_body(R, kc, a, b, c, ldc, ncols, flags, bias);                                                  \
    }
AVX512_K(1) AVX512_K(2) AVX512_K(3) AVX512_K(4) AVX512_K(5) AVX512_K(6) AVX512_K(7) AVX512_K(8)

static const impl_t avx512_impl = {AVX512_NR, AVX512_MR,
                                   {0, avx512_k1, avx512_k2, avx512_k3, avx512_k4, avx512_k5, avx512_k6,
                                    avx512_k7, avx512_k8}};

// CPUID / XGETBV: the CPU has the instructions and the OS saves their registers.
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static int x86_has(int kind) {
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned maxLeaf = r[0];
    cpuid(1, 0, r);
    int osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx || maxLeaf < 7) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    cpuid(7, 0, r);
    int avx2 = (r[1] >> 5) & 1, avx512f = (r[1] >> 16) & 1;
    if (kind == PG_GEMM_AVX2) return avx2 && fma && (lo & 0x6) == 0x6;
    if (kind == PG_GEMM_AVX512) return avx512f && (lo & 0xE6) == 0xE6;
    return 0;
}
#endif

static const impl_t *impl_of(int kind) {
#ifdef PG_X86
    if (kind == PG_GEMM_AVX512) return &avx512_impl;
    if (kind == PG_GEMM_AVX2) return &avx2_impl;
#endif
    return &port_impl;
}

int pg_gemm_available(int kind) {
    if (kind == PG_GEMM_PORTABLE) return 1;
#ifdef PG_X86
    if (kind == PG_GEMM_AVX2 || kind == PG_GEMM_AVX512) return x86_has(kind);
#endif
    return 0;
}

int pg_gemm_best(void) {
    const char *want = getenv("PALIGEMMA_GEMM");
    if (want) {
        int k = !strcmp(want, "avx512") ? PG_GEMM_AVX512 : !strcmp(want, "avx2") ? PG_GEMM_AVX2
              : !strcmp(want, "portable") ? PG_GEMM_PORTABLE : -1;
        if (k >= 0 && pg_gemm_available(k)) return k;
    }
    if (pg_gemm_available(PG_GEMM_AVX512)) return PG_GEMM_AVX512;
    if (pg_gemm_available(PG_GEMM_AVX2)) return PG_GEMM_AVX2;
    return PG_GEMM_PORTABLE;
}

int pg_gemm_nr(int kind) { return impl_of(kind)->nr; }

size_t pg_gemm_packed_count(int kind, int n, int k) {
    size_t nr = (size_t)impl_of(kind)->nr;
    return ((size_t)n + nr - 1) / nr * nr * (size_t)k;
}

void pg_gemm_pack_nk(int kind, const float *w, int n, int k, float *packed, int panel_lo, int panel_hi) {
    pg_gemm_pack_nk_strided(kind, w, k, n, k, packed, panel_lo, panel_hi);
}

void pg_gemm_pack_nk_strided(int kind, const float *w, int ldw, int n, int k, float *packed, int panel_lo,
                             int panel_hi) {
    const int nr = impl_of(kind)->nr;
    for (int p = panel_lo; p < panel_hi; p++) {
        float *dst = packed + (size_t)p * k * nr;
        for (int col = 0; col < nr; col++) {
            int j = p * nr + col;
            if (j < n) {
                const float *src = w + (size_t)j * ldw;
                for (int q = 0; q < k; q++) dst[(size_t)q * nr + col] = src[q];
            } else {
                for (int q = 0; q < k; q++) dst[(size_t)q * nr + col] = 0;
            }
        }
    }
}

void pg_gemm_pack_kn(int kind, const float *w, int k, int n, float *packed, int panel_lo, int panel_hi) {
    pg_gemm_pack_kn_strided(kind, w, n, k, n, packed, panel_lo, panel_hi);
}

void pg_gemm_pack_kn_strided(int kind, const float *w, int ldw, int k, int n, float *packed, int panel_lo,
                             int panel_hi) {
    const int nr = impl_of(kind)->nr;
    for (int p = panel_lo; p < panel_hi; p++) {
        float *dst = packed + (size_t)p * k * nr;
        int j0 = p * nr, cols = n - j0 < nr ? n - j0 : nr;
        for (int q = 0; q < k; q++) {
            memcpy(dst + (size_t)q * nr, w + (size_t)q * ldw + j0, sizeof(float) * (size_t)cols);
            for (int col = cols; col < nr; col++) dst[(size_t)q * nr + col] = 0;
        }
    }
}

// One A-packing buffer per thread, kept between calls (callers' threads are long-lived pool threads).
static _Thread_local float *tl_buffer;
static _Thread_local size_t tl_capacity;

static float *a_buffer(size_t count) {
    if (count > tl_capacity) {
        free(tl_buffer);
        size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
        tl_buffer = aligned_alloc(64, bytes);
        tl_capacity = tl_buffer ? count : 0;
    }
    return tl_buffer;
}

void pg_gemm_packed(int kind, int m, int n, int k, const float *a, int lda, const float *packed,
                    const float *bias, float *c, int ldc, int panel_lo, int panel_hi) {
    const impl_t *im = impl_of(kind);
    const int nr = im->nr, mr = im->mr;
    if (m <= 0 || panel_lo >= panel_hi) return;
    if (k == 0) {
        for (int p = panel_lo; p < panel_hi; p++) {
            int j0 = p * nr, cols = n - j0 < nr ? n - j0 : nr;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < cols; j++) c[(size_t)i * ldc + j0 + j] = bias ? bias[j0 + j] : 0;
        }
        return;
    }
    const int mcMax = MC_MAX / mr * mr;
    const int kcMax = k < KC_MAX ? k : KC_MAX;
    float *abuf = a_buffer((size_t)mcMax * kcMax);
    if (!abuf) abort();
    for (int ic = 0; ic < m; ic += mcMax) {
        const int mc = m - ic < mcMax ? m - ic : mcMax;
        // Output panels in chunks whose C block (mc × chunk) stays in L2 across the K blocks.
        int chunk = (int)(C_BUDGET / ((size_t)mc * nr * sizeof(float)));
        if (chunk < 1) chunk = 1;
        for (int jc = panel_lo; jc < panel_hi; jc += chunk) {
            const int jcEnd = jc + chunk < panel_hi ? jc + chunk : panel_hi;
            for (int pc = 0; pc < k; pc += KC_MAX) {
                const int kc = k - pc < KC_MAX ? k - pc : KC_MAX;
                const int flags = (pc > 0 ? F_ACCUM : 0) | (pc + kc >= k && bias ? F_BIAS : 0);
                // Row panels [kc][mr]; rows past the end of a short panel are never read.
                for (int ir = 0; ir < mc; ir += mr) {
                    const int r = mc - ir < mr ? mc - ir : mr;
                    float *dst = abuf + (size_t)ir * kc;
                    for (int i = 0; i < r; i++) {
                        const float *src = a + (size_t)(ic + ir + i) * lda + pc;
                        for (int p = 0; p < kc; p++) dst[p * mr + i] = src[p];
                    }
                }
                for (int jp = jc; jp < jcEnd; jp++) {
                    const float *bp = packed + ((size_t)jp * k + pc) * nr;
                    const int j0 = jp * nr, cols = n - j0 < nr ? n - j0 : nr;
                    const float *bb = bias ? bias + j0 : NULL;
                    for (int ir = 0; ir < mc; ir += mr) {
                        const int r = mc - ir < mr ? mc - ir : mr;
                        im->k[r](kc, abuf + (size_t)ir * kc, bp, c + (size_t)(ic + ir) * ldc + j0, ldc, cols, flags, bb);
                    }
                }
            }
        }
    }
}
