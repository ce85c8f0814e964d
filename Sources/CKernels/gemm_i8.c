// Int8 weights on the packed-panel plan (see include/ckernels.h for the layout and the arithmetic).
//
// Two products over the same panels:
//   W8A8  (pg_gemm_i8):  activations quantized per row to int8, exact int32 dot products, then
//                        y = (float)isum · (scale_a · scale_w) (+ bias): the integer sum is exact in every
//                        variant and the float steps are the same, so all variants agree bit for bit.
//   W8A32 (pg_gemm_i8f): F32 activations times the int8 weights widened in registers, y = s · scale_w
//                        (+ bias) with s an F32 sum in an order fixed by K (batch invariant).
// Variants: portable C (any NR), AVX2 (vpmaddubsw over |a| and sign(a)·w: every pair ≤ 2·127·127 = 32,258,
// so its int16 saturation never happens), AVX-VNNI (256-bit vpdpbusd) and AVX512-VNNI (512-bit vpdpbusd).
// vpdpbusd multiplies unsigned by signed bytes: the VNNI variants take activations offset by +128 (u8) and
// subtract 128 · Σ_k w[k][n] (kept per column in the panel) from the int32 sum: exact, since
// |Σ| ≤ K · 255 · 127 < 2³¹ for K < 66,000.
#include "ckernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PG_X86 1
#endif

// Groups of 4 k steps to prefetch ahead in the B panel for few-row calls (decode streams the weights):
// 32 groups = 4 KB ahead for the AVX512-VNNI tile (2 KB for the 16-column ones). One thread, M = 1,
// 16384 × 2048 cold (an 800 MB rotation of copies, larger than L3), Xeon family 6 model 207, load 3–4:
// 8 ahead streamed 12.5–12.6 GB/s, 16–128 ahead 13.1–14.1, a plain read 14.0–14.6 GB/s.
#ifndef I8_PREFETCH
#define I8_PREFETCH 32
#endif

static inline int k4_of(int k) { return (k + 3) & ~3; }

static inline size_t panel_bytes(int nr, int k) { return (size_t)nr * 8 + (size_t)k4_of(k) * nr; }

size_t pg_i8_panel_bytes(int nr, int k) { return panel_bytes(nr, k); }

// MARK: Packing (quantizing rows of W)

static inline float src_at(int stype, const void *row, int q) {
    float f;
    if (stype == PG_F32) { memcpy(&f, (const char *)row + 4 * (size_t)q, 4); return f; }
    pg_convert_to_f32(stype, (const char *)row + 2 * (size_t)q, 1, &f);
    return f;
}

float pg_i8_quantize_one(float w, float scale) {
    if (scale == 0) return 0;
    float q = rintf(w / scale);
    return q > 127 ? 127 : q < -127 ? -127 : q;
}

void pg_i8_pack_rows(int nr, int stype, const void *src, size_t ldw, int k, int row_lo, int row_hi, void *packed) {
    const size_t esz = stype == PG_F32 ? 4 : 2, pb = panel_bytes(nr, k);
    const int k4 = k4_of(k);
    for (int r = row_lo; r < row_hi; r++) {
        const void *row = (const char *)src + (size_t)(r - row_lo) * ldw * esz;
        const int p = r / nr, c = r % nr;
        char *panel = (char *)packed + (size_t)p * pb;
        float amax = 0;
        for (int q = 0; q < k; q++) { float v = fabsf(src_at(stype, row, q)); if (v > amax) amax = v; }
        const float scale = amax / 127.0f;
        int32_t sum = 0;
        int8_t *dst = (int8_t *)(panel + (size_t)nr * 8) + (size_t)c * 4;
        for (int q = 0; q < k4; q++) {
            int8_t v = q < k ? (int8_t)pg_i8_quantize_one(src_at(stype, row, q), scale) : 0;
            dst[(size_t)(q >> 2) * nr * 4 + (q & 3)] = v;
            sum += v;
        }
        memcpy(panel + (size_t)c * 4, &scale, 4);
        memcpy(panel + (size_t)nr * 4 + (size_t)c * 4, &sum, 4);
    }
}

void pg_i8_pack_quantized_rows(int nr, const void *src, const float *scales, size_t ldw, int k, int row_lo,
                               int row_hi, void *packed) {
    const size_t pb = panel_bytes(nr, k);
    const int k4 = k4_of(k);
    for (int r = row_lo; r < row_hi; r++) {
        const int8_t *row = (const int8_t *)src + (size_t)(r - row_lo) * ldw;
        const int p = r / nr, c = r % nr;
        char *panel = (char *)packed + (size_t)p * pb;
        int32_t sum = 0;
        int8_t *dst = (int8_t *)(panel + (size_t)nr * 8) + (size_t)c * 4;
        for (int q = 0; q < k4; q++) {
            int8_t v = q < k ? (row[q] < -127 ? -127 : row[q]) : 0;
            dst[(size_t)(q >> 2) * nr * 4 + (q & 3)] = v;
            sum += v;
        }
        memcpy(panel + (size_t)c * 4, &scales[r - row_lo], 4);
        memcpy(panel + (size_t)nr * 4 + (size_t)c * 4, &sum, 4);
    }
}

void pg_i8_pack_pad(int nr, int n, int k, void *packed) {
    const int p = n / nr, first = n % nr;
    if (first == 0) return;
    char *panel = (char *)packed + (size_t)p * panel_bytes(nr, k);
    memset(panel + (size_t)first * 4, 0, (size_t)(nr - first) * 4);
    memset(panel + (size_t)nr * 4 + (size_t)first * 4, 0, (size_t)(nr - first) * 4);
    int8_t *q = (int8_t *)(panel + (size_t)nr * 8);
    for (int g = 0; g < k4_of(k) / 4; g++) memset(q + ((size_t)g * nr + first) * 4, 0, (size_t)(nr - first) * 4);
}

void pg_i8_row(int nr, int k, const void *packed, int j, float scale, float *dst) {
    const char *panel = (const char *)packed + (size_t)(j / nr) * panel_bytes(nr, k);
    const int c = j % nr;
    float s;
    memcpy(&s, panel + (size_t)c * 4, 4);
    const int8_t *q = (const int8_t *)(panel + (size_t)nr * 8) + (size_t)c * 4;
    for (int t = 0; t < k; t++) dst[t] = (float)q[(size_t)(t >> 2) * nr * 4 + (t & 3)] * s * scale;
}

void pg_i8_column(int nr, int k, const void *packed, int j, float *scale, int8_t *q_out, int32_t *sum) {
    const char *panel = (const char *)packed + (size_t)(j / nr) * panel_bytes(nr, k);
    const int c = j % nr;
    memcpy(scale, panel + (size_t)c * 4, 4);
    memcpy(sum, panel + (size_t)nr * 4 + (size_t)c * 4, 4);
    const int8_t *q = (const int8_t *)(panel + (size_t)nr * 8) + (size_t)c * 4;
    for (int t = 0; t < k; t++) q_out[t] = q[(size_t)(t >> 2) * nr * 4 + (t & 3)];
}

// MARK: Activation quantization (per row)

int pg_i8_offset(int variant) { return variant == PG_I8_AVXVNNI || variant == PG_I8_AVX512VNNI ? 128 : 0; }

#ifdef PG_X86
// The same arithmetic as the scalar loop below, 16 (8) values at a time: the maximum is order-free, the
// division and the round-to-nearest-even are exact IEEE operations, the clamp keeps a NaN as the scalar
// comparisons do, and the int32 → byte store truncates as the scalar cast: the bytes are identical.
__attribute__((target("avx512f,avx512bw"))) static void avx512_quantize_row(int k, const float *row, uint8_t *dst,
                                                                           float *scale, int off) {
    __m512 mx = _mm512_setzero_ps();
    int t = 0;
    for (; t + 16 <= k; t += 16) mx = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(row + t)), mx);
    if (t < k) mx = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (k - t)) - 1), row + t)), mx);
    const float s = _mm512_reduce_max_ps(mx) / 127.0f;
    *scale = s;
    if (s == 0) { memset(dst, off, (size_t)k4_of(k)); return; }
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127), hi = _mm512_set1_ps(127);
    const __m512i vo = _mm512_set1_epi32(off);
    for (t = 0; t < k; t += 16) {
        const __mmask16 mk = k - t >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - t)) - 1);
        __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(mk, row + t), vs),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));
        _mm512_mask_cvtepi32_storeu_epi8(dst + t, mk, _mm512_add_epi32(_mm512_cvtps_epi32(v), vo));
    }
    for (t = k; t < k4_of(k); t++) dst[t] = (uint8_t)off;
}

__attribute__((target("avx2"))) static void avx2_quantize_row(int k, const float *row, uint8_t *dst, float *scale,
                                                              int off) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mx = _mm256_setzero_ps();
    int t = 0;
    for (; t + 8 <= k; t += 8) mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(row + t), absmask), mx);
    float amax = 0, lanes[8];
    _mm256_storeu_ps(lanes, mx);
    for (int j = 0; j < 8; j++) amax = lanes[j] > amax ? lanes[j] : amax;
    for (; t < k; t++) { float v = fabsf(row[t]); amax = v > amax ? v : amax; }
    const float s = amax / 127.0f;
    *scale = s;
    if (s == 0) { memset(dst, off, (size_t)k4_of(k)); return; }
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127), hi = _mm256_set1_ps(127);
    const __m256i vo = _mm256_set1_epi32(off);
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i gather = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
    for (t = 0; t + 8 <= k; t += 8) {
        __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(row + t), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
        const __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_add_epi32(_mm256_cvtps_epi32(v), vo), pick), gather);
        _mm_storel_epi64((__m128i *)(dst + t), _mm256_castsi256_si128(b));
    }
    for (; t < k; t++) {
        float v = rintf(row[t] / s);
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        dst[t] = (uint8_t)((int)v + off);
    }
    for (t = k; t < k4_of(k); t++) dst[t] = (uint8_t)off;
}
#endif

void pg_i8_quantize_rows(int variant, int m, int k, const float *a, int lda, void *q, int ldq, float *scales) {
    const int off = pg_i8_offset(variant), k4 = k4_of(k);
#ifdef PG_X86
    if (variant == PG_I8_AVX512VNNI || variant == PG_I8_AVXVNNI || variant == PG_I8_AVX2) {
        for (int i = 0; i < m; i++) {
            uint8_t *dst = (uint8_t *)q + (size_t)i * ldq;
            if (variant == PG_I8_AVX512VNNI) avx512_quantize_row(k, a + (size_t)i * lda, dst, scales + i, off);
            else avx2_quantize_row(k, a + (size_t)i * lda, dst, scales + i, off);
        }
        return;
    }
#endif
    for (int i = 0; i < m; i++) {
        const float *row = a + (size_t)i * lda;
        float amax = 0;
        for (int t = 0; t < k; t++) { float v = fabsf(row[t]); amax = v > amax ? v : amax; }
        const float s = amax / 127.0f;
        scales[i] = s;
        uint8_t *dst = (uint8_t *)q + (size_t)i * ldq;
        if (s == 0) { memset(dst, off, (size_t)k4); continue; }
        for (int t = 0; t < k; t++) {
            float v = rintf(row[t] / s);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            dst[t] = (uint8_t)((int)v + off);
        }
        for (int t = k; t < k4; t++) dst[t] = (uint8_t)off;
    }
}

// The shared epilogue of W8A8: isum exact; the float steps identical in every variant.
static inline float w8a8_value(int32_t isum, float sa, float sw) {
    float f = (float)isum;
    float s = sa * sw;
    float v = f * s;
    return v;
}

#ifdef PG_X86
__attribute__((target("avx512f"))) static void avx512_finish_row(int n, const int32_t *s, int offset,
                                                               const int32_t *sums, const float *wscale, float sa,
                                                               const float *bias, float *c) {
    const __m512 va = _mm512_set1_ps(sa);
    const __m512i off = _mm512_set1_epi32(offset);
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i acc = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(s + j)),
                                             _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(sums + j)), off));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(va, _mm512_loadu_ps(wscale + j)));
        if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + j));
        _mm512_storeu_ps(c + j, v);
    }
    for (; j < n; j++) {
        float v = w8a8_value((int32_t)((uint32_t)s[j] - (uint32_t)sums[j] * (uint32_t)offset), sa, wscale[j]);
        if (bias) v = v + bias[j];
        c[j] = v;
    }
}
#endif

void pg_i8_finish(int m, int n, int32_t *s, int offset, const int32_t *sums, const float *wscale,
                  const float *ascale, const float *bias, float *c) {
#ifdef PG_X86
    const int wide = pg_i8_variant_available(PG_I8_AVX512VNNI);
#endif
    for (int i = 0; i < m; i++) {
        int32_t *si = s + (size_t)i * n;
        float *ci = c + (size_t)i * n;
#ifdef PG_X86
        if (wide) {
            avx512_finish_row(n, si, offset, sums, wscale, ascale[i], bias, ci);
            continue;
        }
#endif
        for (int j = 0; j < n; j++) {
            float v = w8a8_value((int32_t)((uint32_t)si[j] - (uint32_t)sums[j] * (uint32_t)offset), ascale[i], wscale[j]);
            if (bias) v = v + bias[j];
            ci[j] = v;
        }
    }
}

// MARK: Portable W8A8 and W8A32 (any NR)

static void port_i8_tile(int r, int nr, int g4, const int8_t *a, int ldq, const char *panel, const float *sa,
                         float *c, int ldc, int ncols, const float *bias) {
    const int8_t *b = (const int8_t *)(panel + (size_t)nr * 8);
    for (int i = 0; i < r; i++) {
        for (int j = 0; j < ncols; j++) {
            int32_t acc = 0;
            for (int g = 0; g < g4; g++)
                for (int t = 0; t < 4; t++) acc += (int32_t)a[(size_t)i * ldq + 4 * g + t] * b[((size_t)g * nr + j) * 4 + t];
            float sw;
            memcpy(&sw, panel + (size_t)j * 4, 4);
            float v = w8a8_value(acc, sa[i], sw);
            if (bias) v = v + bias[j];
            c[(size_t)i * ldc + j] = v;
        }
    }
}

static void port_i8f_tile(int r, int nr, int k, const float *a, int lda, const char *panel, float *c, int ldc,
                          int ncols, const float *bias) {
    const int8_t *b = (const int8_t *)(panel + (size_t)nr * 8);
    for (int i = 0; i < r; i++) {
        for (int j = 0; j < ncols; j++) {
            float lane[4] = {0, 0, 0, 0};   // the same four partial sums (k mod 4) as the SIMD variants
            for (int t = 0; t < k; t++)
                lane[t & 3] = __builtin_fmaf(a[(size_t)i * lda + t], (float)b[((size_t)(t >> 2) * nr + j) * 4 + (t & 3)], lane[t & 3]);
            float s = (lane[0] + lane[1]) + (lane[2] + lane[3]);
            float sw;
            memcpy(&sw, panel + (size_t)j * 4, 4);
            float v = s * sw;
            if (bias) v = v + bias[j];
            c[(size_t)i * ldc + j] = v;
        }
    }
}

#ifdef PG_X86

// MARK: AVX2 W8A8: 4 rows × 16 columns (8 int32 accumulators); sign trick keeps vpmaddubsw exact.

__attribute__((target("avx2"))) static void avx2_i8_tile(int r, int nr, int g4, const int8_t *a, int ldq,
                                                         const char *panel, const float *sa, float *c, int ldc,
                                                         int ncols, const float *bias) {
    (void)nr;  // 16
    __m256i acc0[4], acc1[4];
    for (int i = 0; i < 4; i++) { acc0[i] = _mm256_setzero_si256(); acc1[i] = _mm256_setzero_si256(); }
    const int8_t *b = (const int8_t *)(panel + 16 * 8);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int g = 0; g < g4; g++) {
        if (r < 4) _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 64), _MM_HINT_T0);
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + (size_t)g * 64));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + (size_t)g * 64 + 32));
        for (int i = 0; i < r; i++) {
            int32_t a4;
            memcpy(&a4, a + (size_t)i * ldq + 4 * g, 4);
            const __m256i av = _mm256_set1_epi32(a4), aa = _mm256_sign_epi8(av, av);
            acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, av)), ones));
            acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, av)), ones));
        }
    }
    const __m256 sw0 = _mm256_loadu_ps((const float *)panel), sw1 = _mm256_loadu_ps((const float *)panel + 8);
    for (int i = 0; i < r; i++) {
        const __m256 s = _mm256_set1_ps(sa[i]);
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc0[i]), _mm256_mul_ps(s, sw0));
        __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(acc1[i]), _mm256_mul_ps(s, sw1));
        float t[16];
        _mm256_storeu_ps(t, v0);
        _mm256_storeu_ps(t + 8, v1);
        for (int j = 0; j < ncols; j++) c[(size_t)i * ldc + j] = bias ? t[j] + bias[j] : t[j];
    }
}

// MARK: AVX-VNNI W8A8: 6 rows × 16 columns, u8 (a + 128) · s8 with the column-sum correction.

__attribute__((target("avx2,avxvnni"))) static void avxvnni_i8_tile(int r, int nr, int g4, const int8_t *a, int ldq,
                                                                   const char *panel, const float *sa, float *c,
                                                                   int ldc, int ncols, const float *bias) {
    (void)nr;  // 16
    __m256i acc0[6], acc1[6];
    for (int i = 0; i < 6; i++) { acc0[i] = _mm256_setzero_si256(); acc1[i] = _mm256_setzero_si256(); }
    const int8_t *b = (const int8_t *)(panel + 16 * 8);
    for (int g = 0; g < g4; g++) {
        if (r < 6) _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 64), _MM_HINT_T0);
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + (size_t)g * 64));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + (size_t)g * 64 + 32));
        for (int i = 0; i < r; i++) {
            int32_t a4;
            memcpy(&a4, a + (size_t)i * ldq + 4 * g, 4);
            const __m256i av = _mm256_set1_epi32(a4);
            acc0[i] = _mm256_dpbusd_avx_epi32(acc0[i], av, b0);
            acc1[i] = _mm256_dpbusd_avx_epi32(acc1[i], av, b1);
        }
    }
    const __m256 sw0 = _mm256_loadu_ps((const float *)panel), sw1 = _mm256_loadu_ps((const float *)panel + 8);
    const __m256i k0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(panel + 64)), 7);
    const __m256i k1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(panel + 96)), 7);
    for (int i = 0; i < r; i++) {
        const __m256 s = _mm256_set1_ps(sa[i]);
        __m256 v0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc0[i], k0)), _mm256_mul_ps(s, sw0));
        __m256 v1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc1[i], k1)), _mm256_mul_ps(s, sw1));
        float *ci = c + (size_t)i * ldc;
        if (ncols == 16) {
            if (bias) { v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias)); v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8)); }
            _mm256_storeu_ps(ci, v0);
            _mm256_storeu_ps(ci + 8, v1);
        } else {
            float t[16];
            _mm256_storeu_ps(t, v0);
            _mm256_storeu_ps(t + 8, v1);
            for (int j = 0; j < ncols; j++) ci[j] = bias ? t[j] + bias[j] : t[j];
        }
    }
}

// MARK: AVX512-VNNI W8A8: 8 rows × 32 columns (16 zmm accumulators).

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
avx512vnni_i8_tile(int r, int nr, int g4, const int8_t *a, int ldq, const char *panel, const float *sa, float *c,
                   int ldc, int ncols, const float *bias) {
    (void)nr;  // 32
    __m512i acc0[8], acc1[8];
    for (int i = 0; i < 8; i++) { acc0[i] = _mm512_setzero_si512(); acc1[i] = _mm512_setzero_si512(); }
    const int8_t *b = (const int8_t *)(panel + 32 * 8);
    for (int g = 0; g < g4; g++) {
        _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 128 + 64), _MM_HINT_T0);
        const __m512i b0 = _mm512_loadu_si512((const void *)(b + (size_t)g * 128));
        const __m512i b1 = _mm512_loadu_si512((const void *)(b + (size_t)g * 128 + 64));
        for (int i = 0; i < r; i++) {
            int32_t a4;
            memcpy(&a4, a + (size_t)i * ldq + 4 * g, 4);
            const __m512i av = _mm512_set1_epi32(a4);
            acc0[i] = _mm512_dpbusd_epi32(acc0[i], av, b0);
            acc1[i] = _mm512_dpbusd_epi32(acc1[i], av, b1);
        }
    }
    const __m512 sw0 = _mm512_loadu_ps((const float *)panel), sw1 = _mm512_loadu_ps((const float *)panel + 16);
    const __m512i k0 = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(panel + 128)), 7);
    const __m512i k1 = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(panel + 192)), 7);
    for (int i = 0; i < r; i++) {
        const __m512 s = _mm512_set1_ps(sa[i]);
        __m512 v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc0[i], k0)), _mm512_mul_ps(s, sw0));
        __m512 v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc1[i], k1)), _mm512_mul_ps(s, sw1));
        float *ci = c + (size_t)i * ldc;
        if (ncols == 32) {
            if (bias) { v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias)); v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + 16)); }
            _mm512_storeu_ps(ci, v0);
            _mm512_storeu_ps(ci + 16, v1);
        } else {
            float t[32];
            _mm512_storeu_ps(t, v0);
            _mm512_storeu_ps(t + 16, v1);
            for (int j = 0; j < ncols; j++) ci[j] = bias ? t[j] + bias[j] : t[j];
        }
    }
}

// MARK: W8A32, AVX2 (16 columns) and AVX-512 (32 columns): a group of 4 k steps of 4 columns is 16 bytes;
// widened to F32 it multiplies [a_k … a_k+3] repeated, so each lane keeps the partial sum of one
// (column, k mod 4); the four are added at the end as (l0 + l1) + (l2 + l3), as the portable one does.

__attribute__((target("avx2,fma"))) static void avx2_i8f_tile(int r, int nr, int k, const float *a, int lda,
                                                              const char *panel, float *c, int ldc, int ncols,
                                                              const float *bias) {
    (void)nr;  // 16: 64 bytes a group, 8 chunks of 8 bytes (2 columns × 4 k each)
    __m256 acc[2][8];
    for (int i = 0; i < 2; i++) for (int j = 0; j < 8; j++) acc[i][j] = _mm256_setzero_ps();
    const int8_t *b = (const int8_t *)(panel + 16 * 8);
    const int g4 = k4_of(k) / 4;
    for (int g = 0; g < g4; g++) {
        if (r < 2) _mm_prefetch((const char *)(b + (size_t)(g + 2 * I8_PREFETCH) * 64), _MM_HINT_T0);
        __m256 av[2];
        for (int i = 0; i < r; i++) {
            float t4[4] = {0, 0, 0, 0};
            const float *ap = a + (size_t)i * lda + 4 * g;
            if (4 * g + 4 <= k) memcpy(t4, ap, 16); else for (int t = 0; t < k - 4 * g; t++) t4[t] = ap[t];
            av[i] = _mm256_broadcast_ps((const __m128 *)t4);
        }
        for (int j = 0; j < 8; j++) {
            const __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + (size_t)g * 64 + 8 * j))));
            for (int i = 0; i < r; i++) acc[i][j] = _mm256_fmadd_ps(av[i], w, acc[i][j]);
        }
    }
    for (int i = 0; i < r; i++) {
        float lanes[64];
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(lanes + 8 * j, acc[i][j]);
        for (int j = 0; j < ncols; j++) {
            const float *l = lanes + 4 * j;
            float s = (l[0] + l[1]) + (l[2] + l[3]);
            float sw;
            memcpy(&sw, panel + (size_t)j * 4, 4);
            float v = s * sw;
            if (bias) v = v + bias[j];
            c[(size_t)i * ldc + j] = v;
        }
    }
}

__attribute__((target("avx512f,avx512bw"))) static void avx512_i8f_tile(int r, int nr, int k, const float *a, int lda,
                                                                       const char *panel, float *c, int ldc,
                                                                       int ncols, const float *bias) {
    (void)nr;  // 32: 128 bytes a group, 8 chunks of 16 bytes (4 columns × 4 k each)
    __m512 acc[3][8];
    for (int i = 0; i < 3; i++) for (int j = 0; j < 8; j++) acc[i][j] = _mm512_setzero_ps();
    const int8_t *b = (const int8_t *)(panel + 32 * 8);
    const int g4 = k4_of(k) / 4;
    for (int g = 0; g < g4; g++) {
        _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + (size_t)(g + I8_PREFETCH) * 128 + 64), _MM_HINT_T0);
        __m512 av[3];
        for (int i = 0; i < r; i++) {
            float t4[4] = {0, 0, 0, 0};
            const float *ap = a + (size_t)i * lda + 4 * g;
            if (4 * g + 4 <= k) memcpy(t4, ap, 16); else for (int t = 0; t < k - 4 * g; t++) t4[t] = ap[t];
            av[i] = _mm512_broadcast_f32x4(_mm_loadu_ps(t4));
        }
        for (int j = 0; j < 8; j++) {
            const __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + (size_t)g * 128 + 16 * j))));
            for (int i = 0; i < r; i++) acc[i][j] = _mm512_fmadd_ps(av[i], w, acc[i][j]);
        }
    }
    for (int i = 0; i < r; i++) {
        float lanes[128];
        for (int j = 0; j < 8; j++) _mm512_storeu_ps(lanes + 16 * j, acc[i][j]);
        for (int j = 0; j < ncols; j++) {
            const float *l = lanes + 4 * j;
            float s = (l[0] + l[1]) + (l[2] + l[3]);
            float sw;
            memcpy(&sw, panel + (size_t)j * 4, 4);
            float v = s * sw;
            if (bias) v = v + bias[j];
            c[(size_t)i * ldc + j] = v;
        }
    }
}

static void cpuid_i8(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
#endif

static int variant_available(int variant) {
    if (variant == PG_I8_PORTABLE) return 1;
#ifdef PG_X86
    unsigned r[4];
    cpuid_i8(0, 0, r);
    if (r[0] < 7) return 0;
    cpuid_i8(1, 0, r);
    const int osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const int ymm = (lo & 0x6) == 0x6, zmm = (lo & 0xE6) == 0xE6;
    cpuid_i8(7, 0, r);
    const unsigned b7 = r[1], c7 = r[2];
    cpuid_i8(7, 1, r);
    const unsigned a71 = r[0];
    const int avx2 = ymm && fma && ((b7 >> 5) & 1);
    switch (variant) {
    case PG_I8_AVX2: return avx2;
    case PG_I8_AVXVNNI: return avx2 && ((a71 >> 4) & 1);
    case PG_I8_AVX512VNNI: return avx2 && zmm && ((b7 >> 16) & 1) && ((b7 >> 30) & 1) && ((c7 >> 11) & 1);
    }
#endif
    return 0;
}

int pg_i8_variant_nr(int variant) { return variant == PG_I8_AVX512VNNI ? 32 : 16; }

// Asked once per variant: cpuid traps to the hypervisor in a virtual machine, and every int8 product asks.
int pg_i8_variant_available(int variant) {
    static int known[4] = {-1, -1, -1, -1};
    if (variant < 0 || variant > 3) return 0;
    if (known[variant] < 0) known[variant] = variant_available(variant);
    return known[variant];
}

int pg_i8_best_variant(int kind) {
    const int nr = pg_gemm_nr(kind);
    if (nr == 32) return pg_i8_variant_available(PG_I8_AVX512VNNI) ? PG_I8_AVX512VNNI : PG_I8_PORTABLE;
    if (nr == 16 && kind != PG_GEMM_PORTABLE) {
        if (pg_i8_variant_available(PG_I8_AVXVNNI)) return PG_I8_AVXVNNI;
        if (pg_i8_variant_available(PG_I8_AVX2)) return PG_I8_AVX2;
    }
    return PG_I8_PORTABLE;
}

// MARK: Drivers

typedef void (*i8_tile_fn)(int r, int nr, int g4, const int8_t *a, int ldq, const char *panel, const float *sa,
                           float *c, int ldc, int ncols, const float *bias);

void pg_gemm_i8(int variant, int nr, int m, int n, int k, const void *qa, int ldq, const float *ascale,
                const void *packed, const float *bias, float *c, int ldc, int panel_lo, int panel_hi) {
    if (m <= 0 || panel_lo >= panel_hi) return;
    i8_tile_fn tile = port_i8_tile;
    int mr = 4;
#ifdef PG_X86
    if (variant == PG_I8_AVX512VNNI && nr == 32) { tile = avx512vnni_i8_tile; mr = 8; }
    else if (variant == PG_I8_AVXVNNI && nr == 16) { tile = avxvnni_i8_tile; mr = 6; }
    else if (variant == PG_I8_AVX2 && nr == 16) { tile = avx2_i8_tile; mr = 4; }
#endif
    const size_t pb = panel_bytes(nr, k);
    const int g4 = k4_of(k) / 4;
    // Row blocks whose quantized rows stay in L2 (~512 KB) while every panel of this thread passes over them.
    int mb = (int)((512u << 10) / (size_t)(k4_of(k) > 0 ? k4_of(k) : 1)) / mr * mr;
    if (mb < mr) mb = mr;
    for (int ib = 0; ib < m; ib += mb) {
        const int me = ib + mb < m ? ib + mb : m;
        for (int jp = panel_lo; jp < panel_hi; jp++) {
            const char *panel = (const char *)packed + (size_t)jp * pb;
            const int j0 = jp * nr, cols = n - j0 < nr ? n - j0 : nr;
            for (int i = ib; i < me; i += mr) {
                const int r = me - i < mr ? me - i : mr;
                tile(r, nr, g4, (const int8_t *)qa + (size_t)i * ldq, ldq, panel, ascale + i, c + (size_t)i * ldc + j0,
                     ldc, cols, bias ? bias + j0 : NULL);
            }
        }
    }
}

typedef void (*i8f_tile_fn)(int r, int nr, int k, const float *a, int lda, const char *panel, float *c, int ldc,
                            int ncols, const float *bias);

void pg_gemm_i8f(int variant, int nr, int m, int n, int k, const float *a, int lda, const void *packed,
                 const float *bias, float *c, int ldc, int panel_lo, int panel_hi) {
    if (m <= 0 || panel_lo >= panel_hi) return;
    i8f_tile_fn tile = port_i8f_tile;
    int mr = 4;
#ifdef PG_X86
    if (variant == PG_I8_AVX512VNNI && nr == 32) { tile = avx512_i8f_tile; mr = 3; }
    else if ((variant == PG_I8_AVXVNNI || variant == PG_I8_AVX2) && nr == 16) { tile = avx2_i8f_tile; mr = 2; }
#endif
    const size_t pb = panel_bytes(nr, k);
    for (int jp = panel_lo; jp < panel_hi; jp++) {
        const char *panel = (const char *)packed + (size_t)jp * pb;
        const int j0 = jp * nr, cols = n - j0 < nr ? n - j0 : nr;
        for (int i = 0; i < m; i += mr) {
            const int r = m - i < mr ? m - i : mr;
            tile(r, nr, k, a + (size_t)i * lda, lda, panel, c + (size_t)i * ldc + j0, ldc, cols, bias ? bias + j0 : NULL);
        }
    }
}
