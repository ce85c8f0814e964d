// The model's matrix products through each GEMM library this machine has, side by side:
// our packed-weight kernels (Sources/CKernels/gemm.c), OpenBLAS's sgemm and oneDNN's f32 matmul
// (weights reordered once into the layout oneDNN asks for, as a prepacked engine would keep them).
// GEMM_BF16=1 packs our weights as BF16 (the rates are then of half the bytes).
// Built and run by Launch/gemm-libraries.sh; prints one JSON object per (shape, M, library).
//
// Each product is C[M, N] = A[M, K] · Wᵀ with W [N, K] (PyTorch's Linear layout). Weights are
// cycled over copies adding up to at least 768 MB, so small-M products read them from memory as
// decoding does, not from the last-level cache.
#include "ckernels.h"

#include <cblas.h>
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = ((seed >> 9) * (1.0f / 8388608.0f)) - 0.5f;
    }
}

#define CHECK(x)                                                                                            \
    do {                                                                                                    \
        dnnl_status_t s_ = (x);                                                                             \
        if (s_ != dnnl_success) { fprintf(stderr, "%s: status %d\n", #x, (int)s_); exit(1); }              \
    } while (0)

typedef struct { const char *name; int n, k; } shape_t;

static int threads;
static int wtype = PG_F32;   // our weights' element type: PG_BF16 with GEMM_BF16=1 (the libraries stay F32)
static dnnl_engine_t engine;
static dnnl_stream_t stream;

// Fastest of `reps` timed runs after a warm-up; `run(i)` does the i-th call (i picks the weight copy).
#define BEST(reps, call)                                                                                   \
    ({                                                                                                      \
        double best_ = 1e30;                                                                                \
        for (int r_ = -1; r_ < (reps); r_++) {                                                              \
            double t0_ = now();                                                                             \
            call;                                                                                           \
            double t_ = now() - t0_;                                                                        \
            if (r_ >= 0 && t_ < best_) best_ = t_;                                                          \
        }                                                                                                   \
        best_;                                                                                              \
    })

// Our kernel, the output panels split evenly over the threads (as Parallel.forEachChunk does).
static void ours_product(int kind, int m, int n, int k, const float *a, const void *w, float *c, int panels) {
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        pg_gemm_packed_w(kind, wtype, m, n, k, a, k, w, NULL, c, n, panels * t / nt, panels * (t + 1) / nt);
    }
}

int main(int argc, char **argv) {
    threads = argc > 1 ? atoi(argv[1]) : 2;
    const char *only = argc > 2 ? argv[2] : NULL;
    if (getenv("GEMM_BF16")) wtype = PG_BF16;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    const dnnl_version_t *v = dnnl_version();
    fprintf(stderr, "oneDNN %d.%d.%d (cpu runtime %u), %s, threads %d, ours: kind %d\n", v->major, v->minor,
            v->patch, v->cpu_runtime, openblas_get_config(), threads, pg_gemm_best());

    const shape_t shapes[] = {
        {"siglip.qkv", 3456, 1152}, {"siglip.out", 1152, 1152}, {"siglip.fc1", 4304, 1152},
        {"siglip.fc2", 1152, 4304}, {"gemma.qkv", 2560, 2048},  {"gemma.o", 2048, 2048},
        {"gemma.gate_up", 32768, 2048}, {"gemma.down", 2048, 16384},
    };
    const int ms[] = {1, 8, 64, 256};
    const int kind = pg_gemm_best();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s].n, k = shapes[s].k;
        if (only && !strstr(shapes[s].name, only)) continue;
        const size_t wcount = (size_t)n * k;
        int copies = (int)((768ull << 20) / (wcount * 4)) + 1;
        float *w = malloc(wcount * 4);
        fill(w, wcount, 7 + s);
        float *a = malloc((size_t)256 * k * 4), *c = malloc((size_t)256 * n * 4);
        fill(a, (size_t)256 * k, 3);
        // Ours: packed panels.
        size_t pc = pg_gemm_packed_count(kind, n, k);
        float **ours = malloc(sizeof(float *) * copies);
        for (int i = 0; i < copies; i++) {
            ours[i] = aligned_alloc(64, (pc * 4 + 63) / 64 * 64);
            pg_gemm_pack_rows(kind, wtype, PG_F32, w, k, k, 0, n, ours[i]);
            pg_gemm_pack_pad(kind, wtype, n, k, ours[i]);
        }
        // OpenBLAS: the [N, K] weight as it is.
        float **plain = malloc(sizeof(float *) * copies);
        for (int i = 0; i < copies; i++) { plain[i] = malloc(wcount * 4); memcpy(plain[i], w, wcount * 4); }
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            const int m = ms[mi];
            const int reps = m <= 8 ? copies * 2 : 3;
            const int panels = (n + pg_gemm_nr(kind) - 1) / pg_gemm_nr(kind);
            int idx = 0;
            double t_ours = BEST(reps, ours_product(kind, m, n, k, a, ours[idx++ % copies], c, panels));
            idx = 0;
            double t_blas = BEST(reps, ({
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, plain[idx++ % copies], k, 0, c, n);
            }));
            // oneDNN: a primitive for this M, weights reordered once into its preferred layout.
            dnnl_memory_desc_t a_md, w_any, w_user, c_md;
            dnnl_dims_t ad = {m, k}, wd = {k, n}, cd = {m, n};
            CHECK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_f32, dnnl_ab));
            CHECK(dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any));
            CHECK(dnnl_memory_desc_init_by_tag(&w_user, 2, wd, dnnl_f32, dnnl_ba));
            CHECK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
            dnnl_matmul_desc_t mmd;
            CHECK(dnnl_matmul_desc_init(&mmd, &a_md, &w_any, NULL, &c_md));
            dnnl_primitive_desc_t pd;
            CHECK(dnnl_primitive_desc_create(&pd, &mmd, NULL, engine, NULL));
            const char *impl = NULL;
            CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
            const dnnl_memory_desc_t *w_pref = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnnl_primitive_t mm;
            CHECK(dnnl_primitive_create(&mm, pd));
            dnnl_memory_t a_mem, c_mem, *w_mem = malloc(sizeof(dnnl_memory_t) * copies);
            CHECK(dnnl_memory_create(&a_mem, &a_md, engine, a));
            CHECK(dnnl_memory_create(&c_mem, &c_md, engine, c));
            dnnl_primitive_desc_t rpd;
            CHECK(dnnl_reorder_primitive_desc_create(&rpd, &w_user, engine, w_pref, engine, NULL));
            dnnl_primitive_t reorder;
            CHECK(dnnl_primitive_create(&reorder, rpd));
            for (int i = 0; i < copies; i++) {
                dnnl_memory_t src;
                CHECK(dnnl_memory_create(&src, &w_user, engine, plain[i]));
                CHECK(dnnl_memory_create(&w_mem[i], w_pref, engine, DNNL_MEMORY_ALLOCATE));
                dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, w_mem[i]}};
                CHECK(dnnl_primitive_execute(reorder, stream, 2, ra));
                CHECK(dnnl_stream_wait(stream));
                dnnl_memory_destroy(src);
            }
            idx = 0;
            double t_dnnl = BEST(reps, ({
                dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, w_mem[idx++ % copies]},
                                           {DNNL_ARG_DST, c_mem}};
                CHECK(dnnl_primitive_execute(mm, stream, 3, args));
                CHECK(dnnl_stream_wait(stream));
            }));
            const double flop = 2.0 * m * n * k;
            printf("{\"shape\": \"%s\", \"n\": %d, \"k\": %d, \"m\": %d, \"ours\": %.1f, \"openblas\": %.1f, "
                   "\"onednn\": %.1f, \"onednn_impl\": \"%s\"}\n",
                   shapes[s].name, n, k, m, flop / t_ours * 1e-9, flop / t_blas * 1e-9, flop / t_dnnl * 1e-9, impl);
            fflush(stdout);
            for (int i = 0; i < copies; i++) dnnl_memory_destroy(w_mem[i]);
            free(w_mem);
            dnnl_memory_destroy(a_mem);
            dnnl_memory_destroy(c_mem);
            dnnl_primitive_destroy(mm);
            dnnl_primitive_destroy(reorder);
            dnnl_primitive_desc_destroy(rpd);
            dnnl_primitive_desc_destroy(pd);
        }
        for (int i = 0; i < copies; i++) { free(ours[i]); free(plain[i]); }
        free(ours); free(plain); free(w); free(a); free(c);
    }
    return 0;
}
