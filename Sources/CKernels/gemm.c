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
// Rows of the B micro-panel (k steps) to prefetch ahead of the one being multiplied: 2 KB for the
// AVX-512 kernel, 1 KB for the AVX2 one (which prefetches only for its few-row variants). Measured on the Emerald Rapids-class Xeon (2 threads, Gemma o 2048 × 2048): none /
// 8 / 16 / 32 ahead gave 71 / 84 / 94 / 96 GFLOP/s at M = 8 and 189 / 218 / 224 / 217 at M = 64; the
// hardware prefetcher alone restarts on every 32 KB panel block. BF16 panels (64 B a step) prefetch
// 4 KB ahead: decode of 6 layers + LM head, bf16 weights, batch 8 went from 0.194–0.216 to
// 0.147–0.149 s a step (16 → 64 steps ahead), batch 1 from 0.136–0.159 to 0.122–0.132.
#ifndef B_PREFETCH
#define B_PREFETCH 16
#endif
#ifndef BF_PREFETCH
#define BF_PREFETCH 64
#endif
enum { F_ACCUM = 1, F_BIAS = 2 };

typedef void (*kern_fn)(int kc, const float *a, const void *b, float *c, int ldc, int ncols, int flags,
                        const float *bias);

typedef struct {
    int nr, mr;
    kern_fn k[9];   // k[r]: r rows, 1 ≤ r ≤ mr, F32 panels
    kern_fn kb[9];  // the same over BF16 panels, widened in registers (same sums, bit for bit)
} impl_t;

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// F32 → BF16, round to nearest even; NaN stays a (quiet) NaN.
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, u;
    if (e == 0x1F) u = sign | 0x7F800000u | (m << 13);
    else if (e != 0) u = sign | ((e + 112) << 23) | (m << 13);
    else {
        float v = (float)m * 0x1p-24f;
        memcpy(&u, &v, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

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

static inline __attribute__((always_inline)) void port_body(const int R, const int BF, int kc, const float *a,
                                                            const void *b, float *c, int ldc, int ncols, int flags,
                                                            const float *bias) {
    float acc[PORT_MR][PORT_NR];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < kc; p++) {
        float bv[PORT_NR];
        for (int j = 0; j < PORT_NR; j++)
            bv[j] = BF ? bf16_to_f32(((const uint16_t *)b)[p * PORT_NR + j]) : ((const float *)b)[p * PORT_NR + j];
        for (int i = 0; i < R; i++) {
            float av = a[p * PORT_MR + i];
            for (int j = 0; j < PORT_NR; j++) acc[i][j] = __builtin_fmaf(av, bv[j], acc[i][j]);
        }
    }
    store_tile_scalar(R, PORT_NR, &acc[0][0], c, ldc, ncols, flags, bias);
}

#define PORT_K(R)                                                                                              \
    static void port_k##R(int kc, const float *a, const void *b, float *c, int ldc, int ncols, int flags,      \
                          const float *bias) {                                                                 \
        port_body(R, 0, kc, a, b, c, ldc, ncols, flags, bias);                                                 \
    }                                                                                                          \
    static void port_kb##R(int kc, const float *a, const void *b, float *c, int ldc, int ncols, int flags,     \
                           const float *bias) {                                                                \
        port_body(R, 1, kc, a, b, c, ldc, ncols, flags, bias);                                                 \
    }
PORT_K(1) PORT_K(2) PORT_K(3) PORT_K(4)

static const impl_t port_impl = {PORT_NR, PORT_MR, {0, port_k1, port_k2, port_k3, port_k4},
                                 {0, port_kb1, port_kb2, port_kb3, port_kb4}};

#ifdef PG_X86

// MARK: AVX2 + FMA kernel: 6 × 16 (12 accumulators, 2 B loads and 6 broadcasts per 12 FMAs).

enum { AVX2_MR = 6, AVX2_NR = 16 };

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) void
avx2_body(const int R, const int BF, int kc, const float *a, const void *b, float *c, int ldc, int ncols, int flags,
          const float *bias) {
    __m256 c0[AVX2_MR], c1[AVX2_MR];
    for (int i = 0; i < R; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
    for (int p = 0; p < kc; p++) {
        __m256 b0, b1;
        if (BF) {  // 16 BF16 values: zero-extend to 32 bits and shift into the high half (exact)
            const uint16_t *bh = (const uint16_t *)b + AVX2_NR * p;
            if (R < AVX2_MR) _mm_prefetch((const char *)(bh + AVX2_NR * B_PREFETCH), _MM_HINT_T0);
            b0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)bh)), 16));
            b1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(bh + 8))), 16));
        } else {
            const float *bp = (const float *)b + AVX2_NR * p;
            // Few rows only: with all 6 the extra instruction cost more than it saved (M = 256: 78 → 64 GFLOP/s).
            if (R < AVX2_MR) _mm_prefetch((const char *)(bp + AVX2_NR * B_PREFETCH), _MM_HINT_T0);
            b0 = _mm256_loadu_ps(bp);
            b1 = _mm256_loadu_ps(bp + 8);
        }
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
    __attribute__((target("avx2,fma"))) static void avx2_k##R(int kc, const float *a, const void *b, float *c,  \
                                                              int ldc, int ncols, int flags, const float *bias) { \
        avx2_body(R, 0, kc, a, b, c, ldc, ncols, flags, bias);                                                 \
    }                                                                                                          \
    __attribute__((target("avx2,fma"))) static void avx2_kb##R(int kc, const float *a, const void *b, float *c, \
                                                               int ldc, int ncols, int flags, const float *bias) { \
        avx2_body(R, 1, kc, a, b, c, ldc, ncols, flags, bias);                                                 \
    }
AVX2_K(1) AVX2_K(2) AVX2_K(3) AVX2_K(4) AVX2_K(5) AVX2_K(6)

static const impl_t avx2_impl = {AVX2_NR, AVX2_MR, {0, avx2_k1, avx2_k2, avx2_k3, avx2_k4, avx2_k5, avx2_k6},
                                 {0, avx2_kb1, avx2_kb2, avx2_kb3, avx2_kb4, avx2_kb5, avx2_kb6}};

// MARK: AVX-512F kernel: 8 × 32 (16 accumulators; B in 2 zmm, A broadcast from memory into each FMA).

enum { AVX512_MR = 8, AVX512_NR = 32 };

__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
avx512_body(const int R, const int BF, int kc, const float *a, const void *b, float *c, int ldc, int ncols,
            int flags, const float *bias) {
    __m512 c0[AVX512_MR], c1[AVX512_MR];
    for (int i = 0; i < R; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (int p = 0; p < kc; p++) {
        __m512 b0, b1;
        if (BF) {  // 32 BF16 values: zero-extend to 32 bits and shift into the high half (exact)
            const uint16_t *bh = (const uint16_t *)b + AVX512_NR * p;
            _mm_prefetch((const char *)(bh + AVX512_NR * BF_PREFETCH), _MM_HINT_T0);
            b0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)bh)), 16));
            b1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(bh + 16))), 16));
        } else {
            const float *bp = (const float *)b + AVX512_NR * p;
            _mm_prefetch((const char *)(bp + AVX512_NR * B_PREFETCH), _MM_HINT_T0);
            _mm_prefetch((const char *)(bp + AVX512_NR * B_PREFETCH + 16), _MM_HINT_T0);
            b0 = _mm512_loadu_ps(bp);
            b1 = _mm512_loadu_ps(bp + 16);
        }
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
    __attribute__((target("avx512f"))) static void avx512_k##R(int kc, const float *a, const void *b, float *c,  \
                                                               int ldc, int ncols, int flags, const float *bias) { \
        avx512_body(R, 0, kc, a, b, c, ldc, ncols, flags, bias);                                               \
    }                                                                                                          \
    __attribute__((target("avx512f"))) static void avx512_kb##R(int kc, const float *a, const void *b, float *c, \
                                                                int ldc, int ncols, int flags, const float *bias) { \
        avx512_body(R, 1, kc, a, b, c, ldc, ncols, flags, bias);                                               \
    }
AVX512_K(1) AVX512_K(2) AVX512_K(3) AVX512_K(4) AVX512_K(5) AVX512_K(6) AVX512_K(7) AVX512_K(8)

static const impl_t avx512_impl = {AVX512_NR, AVX512_MR,
                                   {0, avx512_k1, avx512_k2, avx512_k3, avx512_k4, avx512_k5, avx512_k6,
                                    avx512_k7, avx512_k8},
                                   {0, avx512_kb1, avx512_kb2, avx512_kb3, avx512_kb4, avx512_kb5, avx512_kb6,
                                    avx512_kb7, avx512_kb8}};

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

// The rows layout (kind PG_GEMM_ROWS): W kept as its [N, K] rows (panels of one column), for a BLAS
// library's sgemm; the products are not run here (the caller calls the library), so no kernels.
static const impl_t rows_impl = {1, 1, {0}, {0}};

static const impl_t *impl_of(int kind) {
    if (kind == PG_GEMM_ROWS || kind == PG_GEMM_ONEDNN) return &rows_impl;
#ifdef PG_X86
    if (kind == PG_GEMM_AVX512) return &avx512_impl;
    if (kind == PG_GEMM_AVX2) return &avx2_impl;
#endif
    return &port_impl;
}

int pg_gemm_available(int kind) {
    if (kind == PG_GEMM_PORTABLE || kind == PG_GEMM_ROWS) return 1;
    if (kind == PG_GEMM_ONEDNN) return pg_onednn_available();
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

size_t pg_gemm_packed_bytes(int kind, int wtype, int n, int k) {
    if (wtype == PG_I8) {
        const int nr = impl_of(kind)->nr;
        return (size_t)((n + nr - 1) / nr) * pg_i8_panel_bytes(nr, k);
    }
    return pg_gemm_packed_count(kind, n, k) * (wtype == PG_BF16 ? 2 : 4);
}

// Reads element q of a source row of type stype as F32.
static inline float src_f32(int stype, const void *row, int q) {
    uint16_t h;
    switch (stype) {
    case PG_BF16: memcpy(&h, (const char *)row + 2 * (size_t)q, 2); return bf16_to_f32(h);
    case PG_F16: memcpy(&h, (const char *)row + 2 * (size_t)q, 2); return f16_to_f32(h);
    default: { float f; memcpy(&f, (const char *)row + 4 * (size_t)q, 4); return f; }
    }
}

void pg_gemm_pack_rows(int kind, int wtype, int stype, const void *src, size_t ldw, int k, int row_lo, int row_hi,
                       void *packed) {
    const int nr = impl_of(kind)->nr;
    if (wtype == PG_I8) { pg_i8_pack_rows(nr, stype, src, ldw, k, row_lo, row_hi, packed); return; }
    const size_t esz = stype == PG_F32 ? 4 : 2;
    enum { KB = 64 };  // k block: the panel's KB × NR destination block stays in L1
    for (int r0 = row_lo; r0 < row_hi;) {
        const int p = r0 / nr, r1 = (p + 1) * nr < row_hi ? (p + 1) * nr : row_hi;
        for (int q0 = 0; q0 < k; q0 += KB) {
            const int q1 = q0 + KB < k ? q0 + KB : k;
            for (int r = r0; r < r1; r++) {
                const void *row = (const char *)src + (size_t)(r - row_lo) * ldw * esz;
                const size_t base = (size_t)p * k * nr + (size_t)(r - p * nr);
                if (wtype == PG_BF16) {
                    uint16_t *dst = (uint16_t *)packed + base;
                    if (stype == PG_BF16) {
                        for (int q = q0; q < q1; q++) memcpy(dst + (size_t)q * nr, (const char *)row + 2 * (size_t)q, 2);
                    } else {
                        for (int q = q0; q < q1; q++) dst[(size_t)q * nr] = f32_to_bf16(src_f32(stype, row, q));
                    }
                } else {
                    float *dst = (float *)packed + base;
                    for (int q = q0; q < q1; q++) dst[(size_t)q * nr] = src_f32(stype, row, q);
                }
            }
        }
        r0 = r1;
    }
}

void pg_convert_to_f32(int stype, const void *src, size_t n, float *dst) {
    switch (stype) {  // one loop per type, so each is a plain vectorisable loop
    case PG_BF16: for (size_t i = 0; i < n; i++) dst[i] = src_f32(PG_BF16, (const char *)src + 2 * i, 0); break;
    case PG_F16: for (size_t i = 0; i < n; i++) dst[i] = src_f32(PG_F16, (const char *)src + 2 * i, 0); break;
    default: memcpy(dst, src, 4 * n); break;
    }
}

void pg_gemm_pack_pad(int kind, int wtype, int n, int k, void *packed) {
    const int nr = impl_of(kind)->nr;
    if (wtype == PG_I8) { pg_i8_pack_pad(nr, n, k, packed); return; }
    const int p = n / nr, first = n % nr;
    if (first == 0) return;
    const size_t esz = wtype == PG_BF16 ? 2 : 4;
    for (int q = 0; q < k; q++)
        memset((char *)packed + (((size_t)p * k + q) * nr + first) * esz, 0, (size_t)(nr - first) * esz);
}

void pg_gemm_packed_row(int kind, int wtype, int n, int k, const void *packed, int j, float scale, float *dst) {
    (void)n;
    const int nr = impl_of(kind)->nr;
    if (wtype == PG_I8) { pg_i8_row(nr, k, packed, j, scale, dst); return; }
    const size_t base = (size_t)(j / nr) * k * nr + (size_t)(j % nr);
    if (wtype == PG_BF16) {
        const uint16_t *s = (const uint16_t *)packed + base;
        for (int q = 0; q < k; q++) dst[q] = bf16_to_f32(s[(size_t)q * nr]) * scale;
    } else {
        const float *s = (const float *)packed + base;
        for (int q = 0; q < k; q++) dst[q] = s[(size_t)q * nr] * scale;
    }
}

// One F32 copy of a BF16 micro-panel per thread, when several row panels reuse it.
static _Thread_local float tl_bpanel[KC_MAX * 32];

void pg_gemm_packed(int kind, int m, int n, int k, const float *a, int lda, const float *packed,
                    const float *bias, float *c, int ldc, int panel_lo, int panel_hi) {
    pg_gemm_packed_w(kind, PG_F32, m, n, k, a, lda, packed, bias, c, ldc, panel_lo, panel_hi);
}

void pg_gemm_packed_w(int kind, int wtype, int m, int n, int k, const float *a, int lda, const void *packed,
                      const float *bias, float *c, int ldc, int panel_lo, int panel_hi) {
    const impl_t *im = impl_of(kind);
    const int nr = im->nr, mr = im->mr;
    const int bf = wtype == PG_BF16;
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
    if (m <= mr) {
        // Few rows (decode): one row panel, so no B micro-panel is reused across row panels. Pack A for
        // every K block at once and walk each output panel's K blocks back to back: the weights stream
        // in address order (panel after panel) instead of jumping 2·K·NR bytes between K blocks, and the
        // prefetch run past a K block's end lands on data used next. Each element's sums and their
        // order ((s₀ + s₁) + s₂ …) + bias are those of the loop below.
        const int k_pad = (k + KC_MAX - 1) / KC_MAX * KC_MAX;
        float *abuf = a_buffer((size_t)mr * k_pad);
        if (!abuf) abort();
        for (int pc = 0; pc < k; pc += KC_MAX) {
            const int kc = k - pc < KC_MAX ? k - pc : KC_MAX;
            float *dst = abuf + (size_t)pc * mr;
            for (int i = 0; i < m; i++) {
                const float *src = a + (size_t)i * lda + pc;
                for (int p = 0; p < kc; p++) dst[p * mr + i] = src[p];
            }
        }
        const kern_fn kern = bf ? im->kb[m] : im->k[m];
        for (int jp = panel_lo; jp < panel_hi; jp++) {
            const int j0 = jp * nr, cols = n - j0 < nr ? n - j0 : nr;
            const float *bb = bias ? bias + j0 : NULL;
            for (int pc = 0; pc < k; pc += KC_MAX) {
                const int kc = k - pc < KC_MAX ? k - pc : KC_MAX;
                const int flags = (pc > 0 ? F_ACCUM : 0) | (pc + kc >= k && bias ? F_BIAS : 0);
                const size_t off = ((size_t)jp * k + pc) * nr;
                const void *bp = bf ? (const void *)((const uint16_t *)packed + off) : (const void *)((const float *)packed + off);
                kern(kc, abuf + (size_t)pc * mr, bp, c + j0, ldc, cols, flags, bb);
            }
        }
        return;
    }
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
                    const size_t off = ((size_t)jp * k + pc) * nr;
                    const void *bp = bf ? (const void *)((const uint16_t *)packed + off) : (const void *)((const float *)packed + off);
                    const kern_fn *kern = im->k;
                    if (bf && mc > mr) {
                        // Several row panels share this micro-panel: widen it once (exact), then the F32 kernel.
                        const uint16_t *h = (const uint16_t *)bp;
                        for (size_t q = 0; q < (size_t)kc * nr; q++) tl_bpanel[q] = bf16_to_f32(h[q]);
                        bp = tl_bpanel;
                    } else if (bf) {
                        kern = im->kb;
                    }
                    const int j0 = jp * nr, cols = n - j0 < nr ? n - j0 : nr;
                    const float *bb = bias ? bias + j0 : NULL;
                    for (int ir = 0; ir < mc; ir += mr) {
                        const int r = mc - ir < mr ? mc - ir : mr;
                        kern[r](kc, abuf + (size_t)ir * kc, bp, c + (size_t)(ic + ir) * ldc + j0, ldc, cols, flags, bb);
                    }
                }
            }
        }
    }
}

// MARK: Machine facts for `paligemma bench`

const char *pg_cpu_features(void) {
    static char text[256];
#ifdef PG_X86
    if (text[0]) return text;
    unsigned r[4], maxLeaf;
    cpuid(0, 0, r);
    maxLeaf = r[0];
    cpuid(1, 0, r);
    const int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    unsigned lo = 0, hi = 0;
    if (osxsave) __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const int ymm = osxsave && avx && (lo & 0x6) == 0x6, zmm = ymm && (lo & 0xE6) == 0xE6;
    const int tiles = osxsave && (lo & 0x60000) == 0x60000;
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (maxLeaf >= 7) {
        cpuid(7, 0, r); b7 = r[1]; c7 = r[2]; d7 = r[3];
        cpuid(7, 1, r); a71 = r[0];
    }
    struct { const char *name; int on; } f[] = {
        {"avx2", ymm && ((b7 >> 5) & 1)}, {"fma", ymm && fma},
        {"avx512f", zmm && ((b7 >> 16) & 1)}, {"avx512bw", zmm && ((b7 >> 30) & 1)},
        {"avx512vl", zmm && ((b7 >> 31) & 1)}, {"avx512_vnni", zmm && ((c7 >> 11) & 1)},
        {"avx512_bf16", zmm && ((a71 >> 5) & 1)}, {"avx512_fp16", zmm && ((d7 >> 23) & 1)},
        {"avx_vnni", ymm && ((a71 >> 4) & 1)},
        {"amx_bf16", tiles && ((d7 >> 22) & 1)}, {"amx_int8", tiles && ((d7 >> 25) & 1)},
    };
    size_t len = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!f[i].on) continue;
        size_t n = strlen(f[i].name);
        if (len + n + 2 >= sizeof text) break;
        if (len) text[len++] = ' ';
        memcpy(text + len, f[i].name, n);
        len += n;
    }
    text[len] = 0;
#endif
    return text;
}

float pg_stream_sum(const float *p, size_t n) {
#if defined(PG_X86) && defined(__AVX2__)
    {   // the package is built for AVX2 (Package.swift): plain 256-bit loads
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        size_t i = 0;
        for (; i + 32 <= n; i += 32) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(p + i));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(p + i + 8));
            s2 = _mm256_add_ps(s2, _mm256_loadu_ps(p + i + 16));
            s3 = _mm256_add_ps(s3, _mm256_loadu_ps(p + i + 24));
        }
        float t[8], sum = 0;
        _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        for (int j = 0; j < 8; j++) sum += t[j];
        for (; i < n; i++) sum += p[i];
        return sum;
    }
#endif
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += p[i];
    return sum;
}

// MARK: FMA peak (registers only): the ceiling any product can reach on this machine

#define FMA_CHAINS(V, FMA, SET1)                                                                              \
    V x0 = SET1(1.0f), x1 = SET1(1.1f), x2 = SET1(1.2f), x3 = SET1(1.3f), x4 = SET1(1.4f), x5 = SET1(1.5f); \
    V x6 = SET1(1.6f), x7 = SET1(1.7f), x8 = SET1(1.8f), x9 = SET1(1.9f), x10 = SET1(2.0f), x11 = SET1(2.1f); \
    const V m = SET1(0.999999f), a = SET1(1e-7f);                                                              \
    for (long r = 0; r < rounds; r++) {                                                                        \
        x0 = FMA(x0, m, a); x1 = FMA(x1, m, a); x2 = FMA(x2, m, a); x3 = FMA(x3, m, a);                       \
        x4 = FMA(x4, m, a); x5 = FMA(x5, m, a); x6 = FMA(x6, m, a); x7 = FMA(x7, m, a);                       \
        x8 = FMA(x8, m, a); x9 = FMA(x9, m, a); x10 = FMA(x10, m, a); x11 = FMA(x11, m, a);                   \
    }

static volatile float fma_sink;

#ifdef PG_X86
__attribute__((target("avx512f"))) static double fma_loop_avx512(long rounds) {
    FMA_CHAINS(__m512, _mm512_fmadd_ps, _mm512_set1_ps)
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)),
                             _mm512_add_ps(_mm512_add_ps(x4, x5), _mm512_add_ps(x6, x7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(x8, x9), _mm512_add_ps(x10, x11)));
    fma_sink = _mm512_reduce_add_ps(s);
    return (double)rounds * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long rounds) {
    FMA_CHAINS(__m256, _mm256_fmadd_ps, _mm256_set1_ps)
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float t[8];
    _mm256_storeu_ps(t, s);
    fma_sink = t[0] + t[7];
    return (double)rounds * 12 * 8 * 2;
}
#endif

static inline float fma_scalar(float x, float m, float a) { return __builtin_fmaf(x, m, a); }
#define SCALAR_SET1(v) (v)

double pg_fma_peak_loop(long rounds) {
#ifdef PG_X86
    if (pg_gemm_available(PG_GEMM_AVX512)) return fma_loop_avx512(rounds);
    if (pg_gemm_available(PG_GEMM_AVX2)) return fma_loop_avx2(rounds);
#endif
    FMA_CHAINS(float, fma_scalar, SCALAR_SET1)
    fma_sink = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11;
    return (double)rounds * 12 * 2;
}
