// oneDNN's f32 and int8 matmuls as a GEMM candidate (kind PG_GEMM_ONEDNN), loaded at run time with dlopen:
// a machine without libdnnl.so.2 simply lacks the candidate, and nothing links against it.
//
// Int8 (W8A8): activations quantized per row by our code (u8 = q + 128, as our VNNI kernels take them),
// weights s8; oneDNN returns the exact int32 sums and `pg_i8_finish` applies the very epilogue of our
// int8 kernels, so the results equal theirs bit for bit (and stay batch invariant). Offered only where
// oneDNN runs it with VNNI or AMX instructions (exact sums; its vpmaddubsw kernels saturate).
//
// A weight is reordered once, at load, into the blocked layout oneDNN asks for when M = 256 (its
// brgemm kernels take that one layout for every M); each call runs a matmul primitive for its M,
// created on first use (well under a millisecond) and kept in a small per-weight cache.
// OpenMP: OMP_WAIT_POLICY=PASSIVE is set (unless the user set it) before oneDNN's OpenMP runtime
// loads, so its threads sleep between products instead of spinning beside our own threads.
#include "ckernels.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__) && __has_include(<dnnl.h>)
#include <dlfcn.h>
#include <dnnl.h>
#include <pthread.h>

#define DNNL_FUNCTIONS(X)                                                                                    \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_init_by_tag) X(dnnl_matmul_desc_init)    \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_destroy)            \
    X(dnnl_primitive_create) X(dnnl_primitive_destroy) X(dnnl_primitive_execute) X(dnnl_stream_wait)        \
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_memory_set_data_handle)                            \
    X(dnnl_memory_get_data_handle) X(dnnl_reorder_primitive_desc_create) X(dnnl_memory_desc_get_size)      \
    X(dnnl_version) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)                            \
    X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_memory_desc_init_by_strides) X(dnnl_primitive_desc_query)

static struct {
#define X(f) __typeof__(&f) f;
    DNNL_FUNCTIONS(X)
#undef X
    void (*omp_set_num_threads)(int);
    dnnl_engine_t engine;
    int ok;
    char version[64];
} dn;

static pthread_once_t dn_once = PTHREAD_ONCE_INIT;

static void dn_load(void) {
    if (getenv("PALIGEMMA_NO_ONEDNN")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    void *lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return;
#define X(f) if (!(dn.f = (__typeof__(&f))dlsym(lib, #f))) return;
    DNNL_FUNCTIONS(X)
#undef X
    dn.omp_set_num_threads = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (dn.dnnl_engine_create(&dn.engine, dnnl_cpu, 0) != dnnl_success) return;
    const dnnl_version_t *v = dn.dnnl_version();
    snprintf(dn.version, sizeof dn.version, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    dn.ok = 1;
}

// A stream per thread: oneDNN streams must not be used by two threads at once, and in one process the
// vision role and a decoder stage multiply at the same time (each on its own weights).
static _Thread_local dnnl_stream_t tl_stream;

static dnnl_stream_t stream(void) {
    if (!tl_stream && dn.dnnl_stream_create(&tl_stream, dn.engine, dnnl_stream_default_flags) != dnnl_success)
        tl_stream = NULL;
    return tl_stream;
}

int pg_onednn_available(void) {
    pthread_once(&dn_once, dn_load);
    return dn.ok;
}

const char *pg_onednn_version(void) { return pg_onednn_available() ? dn.version : ""; }

enum { CACHE = 8 };

struct pg_onednn_weight {
    int n, k;
    int i8;                  // 0: f32 matmul; 1: int8 (s8 weights, exact s32 sums)
    int u8;                  // int8: activations are u8 (q + 128) rather than s8
    float *scales;           // int8: per output column
    int32_t *sums;           // int8: per output column, Σ_k q
    dnnl_memory_desc_t wmd;  // the blocked layout
    dnnl_memory_t w;
    pthread_mutex_t lock;
    struct {
        int m, bias, threads;   // a primitive's scratchpad is sized for the threads it was made with
        int lda;
        unsigned long used;
        dnnl_primitive_t p;
        dnnl_memory_t a, b, c, s;
        size_t scratch;
    } cache[CACHE];
    unsigned long clock;
};

static int md2t(dnnl_memory_desc_t *md, int r, int c, dnnl_data_type_t t, dnnl_format_tag_t tag) {
    dnnl_dims_t d = {r, c};
    return dn.dnnl_memory_desc_init_by_tag(md, 2, d, t, tag) == dnnl_success;
}

static int md2(dnnl_memory_desc_t *md, int r, int c, dnnl_format_tag_t tag) { return md2t(md, r, c, dnnl_f32, tag); }

// A [r, c] matrix of type t with rows `ld` elements apart.
static int md2s(dnnl_memory_desc_t *md, int r, int c, dnnl_data_type_t t, size_t ld) {
    dnnl_dims_t d = {r, c}, s = {(dnnl_dim_t)ld, 1};
    return dn.dnnl_memory_desc_init_by_strides(md, 2, d, t, s) == dnnl_success;
}

// A matmul primitive descriptor for A (`a`) times weights `w` (a layout, or `any`) into C (`c`). Its
// scratchpad is ours (`user` mode): one buffer per thread, grown as needed and kept, instead of the
// library's allocation per call (no measurable change in prefill time here, but no allocation on the hot path).
static dnnl_primitive_desc_t matmul_pd_md(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *w,
                                          const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *c) {
    dnnl_matmul_desc_t d;
    if (dn.dnnl_matmul_desc_init(&d, a, w, b, c) != dnnl_success) return NULL;
    dnnl_primitive_attr_t attr;
    if (dn.dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dn.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dn.dnnl_primitive_desc_create(&pd, &d, attr, dn.engine, NULL);
    dn.dnnl_primitive_attr_destroy(attr);
    return s == dnnl_success ? pd : NULL;
}

static _Thread_local void *tl_scratch;
static _Thread_local size_t tl_scratch_bytes;

static void *scratch(size_t bytes) {
    if (bytes > tl_scratch_bytes) {
        free(tl_scratch);
        tl_scratch = aligned_alloc(64, (bytes + 63) / 64 * 64);
        tl_scratch_bytes = tl_scratch ? bytes : 0;
    }
    return tl_scratch;
}

// The memory descriptors of a call with M rows: A [M, K] (rows lda apart), C [M, N], bias [1, N].
static int call_mds(const pg_onednn_weight *w, int m, int lda, dnnl_memory_desc_t *a, dnnl_memory_desc_t *c,
                    dnnl_memory_desc_t *b) {
    if (w->i8)
        return md2s(a, m, w->k, w->u8 ? dnnl_u8 : dnnl_s8, (size_t)lda) && md2t(c, m, w->n, dnnl_s32, dnnl_ab)
            && md2t(b, 1, w->n, dnnl_f32, dnnl_ab);
    return md2s(a, m, w->k, dnnl_f32, (size_t)lda) && md2(c, m, w->n, dnnl_ab) && md2(b, 1, w->n, dnnl_ab);
}

// Reorders the user's [N, K] rows (`user`: W's [K, N] view of them) into the layout oneDNN asks for at M = 256.
static pg_onednn_weight *weight_create(pg_onednn_weight *w, const dnnl_memory_desc_t *user, const void *rows) {
    pthread_mutex_init(&w->lock, NULL);
    dnnl_memory_desc_t any, a, c, b;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t src = NULL;
    if (!md2t(&any, w->k, w->n, w->i8 ? dnnl_s8 : dnnl_f32, dnnl_format_tag_any)) goto fail;
    if (!call_mds(w, 256, w->k, &a, &c, &b) || !(pd = matmul_pd_md(&a, &any, w->i8 ? NULL : &b, &c))) goto fail;
    if (w->i8) {
        // Only where oneDNN multiplies with VNNI or AMX instructions: its other int8 kernels (vpmaddubsw)
        // saturate 16-bit pair sums, and the sums here must be exact.
        const char *impl = NULL;
        if (dn.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl
            || !(strstr(impl, "vnni") || strstr(impl, "amx")))
            goto fail;
    }
    w->wmd = *dn.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (dn.dnnl_memory_create(&w->w, &w->wmd, dn.engine, DNNL_MEMORY_ALLOCATE) != dnnl_success) goto fail;
    if (dn.dnnl_memory_create(&src, user, dn.engine, (void *)rows) != dnnl_success) goto fail;
    if (dn.dnnl_reorder_primitive_desc_create(&rpd, user, dn.engine, &w->wmd, dn.engine, NULL) != dnnl_success) goto fail;
    if (dn.dnnl_primitive_create(&reorder, rpd) != dnnl_success) goto fail;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, w->w}};
    if (!stream() || dn.dnnl_primitive_execute(reorder, stream(), 2, args) != dnnl_success) goto fail;
    dn.dnnl_stream_wait(stream());
    dn.dnnl_primitive_destroy(reorder);
    dn.dnnl_primitive_desc_destroy(rpd);
    dn.dnnl_primitive_desc_destroy(pd);
    dn.dnnl_memory_destroy(src);
    return w;
fail:
    if (reorder) dn.dnnl_primitive_destroy(reorder);
    if (rpd) dn.dnnl_primitive_desc_destroy(rpd);
    if (pd) dn.dnnl_primitive_desc_destroy(pd);
    if (src) dn.dnnl_memory_destroy(src);
    if (w->w) dn.dnnl_memory_destroy(w->w);
    pthread_mutex_destroy(&w->lock);
    free(w->scales);
    free(w->sums);
    free(w);
    return NULL;
}

pg_onednn_weight *pg_onednn_weight_create(int n, int k, const float *rows) {
    if (!pg_onednn_available() || n <= 0 || k <= 0) return NULL;
    pg_onednn_weight *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = n;
    w->k = k;
    // W as the matmul's [K, N] operand: PyTorch's [N, K] rows are its `ba` layout.
    dnnl_memory_desc_t user;
    if (!md2(&user, k, n, dnnl_ba)) { free(w); return NULL; }
    return weight_create(w, &user, rows);
}

pg_onednn_weight *pg_onednn_i8_weight_create(int n, int k, const void *rows, size_t ld, const float *scales,
                                             const int32_t *sums, int u8) {
    if (!pg_onednn_available() || n <= 0 || k <= 0) return NULL;
    pg_onednn_weight *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->n = n;
    w->k = k;
    w->i8 = 1;
    w->u8 = u8 != 0;
    w->scales = malloc(sizeof(float) * (size_t)n);
    w->sums = malloc(sizeof(int32_t) * (size_t)n);
    dnnl_memory_desc_t user;
    dnnl_dims_t d = {k, n}, st = {1, (dnnl_dim_t)ld};   // [K, N] with column n at rows + n·ld
    if (!w->scales || !w->sums || dn.dnnl_memory_desc_init_by_strides(&user, 2, d, dnnl_s8, st) != dnnl_success) {
        free(w->scales); free(w->sums); free(w);
        return NULL;
    }
    memcpy(w->scales, scales, sizeof(float) * (size_t)n);
    memcpy(w->sums, sums, sizeof(int32_t) * (size_t)n);
    return weight_create(w, &user, rows);
}

static int i8_ok = -1;
static pthread_once_t i8_once = PTHREAD_ONCE_INIT;

static void i8_probe(void) {
    int8_t rows[64 * 64] = {0};
    float scales[64] = {0};
    int32_t sums[64] = {0};
    pg_onednn_weight *w = pg_onednn_i8_weight_create(64, 64, rows, 64, scales, sums, 1);
    i8_ok = w != NULL;
    pg_onednn_weight_destroy(w);
}

int pg_onednn_i8_available(void) {
    if (!pg_onednn_available()) return 0;
    pthread_once(&i8_once, i8_probe);
    return i8_ok;
}

size_t pg_onednn_weight_bytes(const pg_onednn_weight *w) {
    return dn.dnnl_memory_desc_get_size(&w->wmd) + (w->i8 ? (size_t)w->n * 8 : 0);
}

static void drop_slot(pg_onednn_weight *w, int i) {
    if (!w->cache[i].p) return;
    dn.dnnl_primitive_destroy(w->cache[i].p);
    dn.dnnl_memory_destroy(w->cache[i].a);
    dn.dnnl_memory_destroy(w->cache[i].c);
    if (w->cache[i].b) dn.dnnl_memory_destroy(w->cache[i].b);
    if (w->cache[i].s) dn.dnnl_memory_destroy(w->cache[i].s);
    memset(&w->cache[i], 0, sizeof w->cache[i]);
}

void pg_onednn_weight_destroy(pg_onednn_weight *w) {
    if (!w) return;
    for (int i = 0; i < CACHE; i++) drop_slot(w, i);
    dn.dnnl_memory_destroy(w->w);
    pthread_mutex_destroy(&w->lock);
    free(w->scales);
    free(w->sums);
    free(w);
}

// Reorders the weight back into `rows` ([N, K], rows ld elements apart) of its element type.
static int unpack(const pg_onednn_weight *w, void *rows, size_t ld) {
    dnnl_memory_desc_t user;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t reorder;
    dnnl_memory_t dst;
    dnnl_dims_t d = {w->k, w->n}, st = {1, (dnnl_dim_t)ld};
    if (dn.dnnl_memory_desc_init_by_strides(&user, 2, d, w->i8 ? dnnl_s8 : dnnl_f32, st) != dnnl_success) return 0;
    if (dn.dnnl_memory_create(&dst, &user, dn.engine, rows) != dnnl_success) return 0;
    int ok = dn.dnnl_reorder_primitive_desc_create(&rpd, &w->wmd, dn.engine, &user, dn.engine, NULL) == dnnl_success;
    if (ok) {
        ok = dn.dnnl_primitive_create(&reorder, rpd) == dnnl_success;
        if (ok) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, w->w}, {DNNL_ARG_TO, dst}};
            ok = stream() && dn.dnnl_primitive_execute(reorder, stream(), 2, args) == dnnl_success;
            dn.dnnl_stream_wait(stream());
            dn.dnnl_primitive_destroy(reorder);
        }
        dn.dnnl_primitive_desc_destroy(rpd);
    }
    dn.dnnl_memory_destroy(dst);
    return ok;
}

int pg_onednn_weight_unpack(const pg_onednn_weight *w, float *rows) { return !w->i8 && unpack(w, rows, (size_t)w->k); }

int pg_onednn_i8_weight_unpack(const pg_onednn_weight *w, signed char *rows, float *scales, int32_t *sums) {
    if (!w->i8 || !unpack(w, rows, (size_t)w->k)) return 0;
    memcpy(scales, w->scales, sizeof(float) * (size_t)w->n);
    memcpy(sums, w->sums, sizeof(int32_t) * (size_t)w->n);
    return 1;
}

// C = A · W (+ bias) through the primitive for (M, lda, bias, threads), made on first use and cached.
static int run(pg_onednn_weight *w, int m, const void *a, int lda, const float *bias, void *c, int threads) {
    if (m <= 0) return 1;
    pthread_mutex_lock(&w->lock);
    // Before the primitive is made: oneDNN sizes its scratchpad for the OpenMP threads of this moment.
    if (dn.omp_set_num_threads) dn.omp_set_num_threads(threads);
    const int hb = bias != NULL;
    int slot = -1, victim = 0;
    for (int i = 0; i < CACHE; i++) {
        if (w->cache[i].p && w->cache[i].m == m && w->cache[i].bias == hb && w->cache[i].threads == threads
            && w->cache[i].lda == lda) { slot = i; break; }
        if (w->cache[i].used < w->cache[victim].used) victim = i;
    }
    if (slot < 0) {
        slot = victim;
        drop_slot(w, slot);
        dnnl_memory_desc_t amd, cmd, bmd;
        dnnl_primitive_desc_t pd = NULL;
        int ok = call_mds(w, m, lda, &amd, &cmd, &bmd) && (pd = matmul_pd_md(&amd, &w->wmd, hb ? &bmd : NULL, &cmd))
              && dn.dnnl_primitive_create(&w->cache[slot].p, pd) == dnnl_success
              && dn.dnnl_memory_create(&w->cache[slot].a, &amd, dn.engine, DNNL_MEMORY_NONE) == dnnl_success
              && dn.dnnl_memory_create(&w->cache[slot].c, &cmd, dn.engine, DNNL_MEMORY_NONE) == dnnl_success
              && (!hb || dn.dnnl_memory_create(&w->cache[slot].b, &bmd, dn.engine, DNNL_MEMORY_NONE) == dnnl_success);
        if (ok) {
            const dnnl_memory_desc_t *smd = dn.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            w->cache[slot].scratch = smd ? dn.dnnl_memory_desc_get_size(smd) : 0;
            if (w->cache[slot].scratch)
                ok = dn.dnnl_memory_create(&w->cache[slot].s, smd, dn.engine, DNNL_MEMORY_NONE) == dnnl_success;
        }
        if (pd) dn.dnnl_primitive_desc_destroy(pd);
        if (!ok) {
            drop_slot(w, slot);
            pthread_mutex_unlock(&w->lock);
            return 0;
        }
        w->cache[slot].m = m;
        w->cache[slot].bias = hb;
        w->cache[slot].threads = threads;
        w->cache[slot].lda = lda;
    }
    w->cache[slot].used = ++w->clock;
    dn.dnnl_memory_set_data_handle(w->cache[slot].a, (void *)a);
    dn.dnnl_memory_set_data_handle(w->cache[slot].c, c);
    if (hb) dn.dnnl_memory_set_data_handle(w->cache[slot].b, (void *)bias);
    int nargs = 3;
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, w->cache[slot].a}, {DNNL_ARG_WEIGHTS, w->w}, {DNNL_ARG_DST, w->cache[slot].c}};
    if (hb) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, w->cache[slot].b};
    if (w->cache[slot].s) {
        void *buf = scratch(w->cache[slot].scratch);
        if (!buf) { pthread_mutex_unlock(&w->lock); return 0; }
        dn.dnnl_memory_set_data_handle(w->cache[slot].s, buf);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, w->cache[slot].s};
    }
    int ok = stream() && dn.dnnl_primitive_execute(w->cache[slot].p, stream(), nargs, args) == dnnl_success;
    dn.dnnl_stream_wait(stream());
    pthread_mutex_unlock(&w->lock);
    return ok;
}

int pg_onednn_matmul(pg_onednn_weight *w, int m, const float *a, const float *bias, float *c, int threads) {
    return !w->i8 && run(w, m, a, w->k, bias, c, threads);
}

int pg_onednn_i8_matmul(pg_onednn_weight *w, int m, const void *qa, int ldq, int32_t *sums, int threads) {
    return w->i8 && run(w, m, qa, ldq, NULL, sums, threads);
}

void pg_onednn_i8_finish(const pg_onednn_weight *w, int m, int32_t *sums, const float *ascale, const float *bias,
                         float *c) {
    pg_i8_finish(m, w->n, sums, w->u8 ? 128 : 0, w->sums, w->scales, ascale, bias, c);
}

#else  // no oneDNN headers at build time: the candidate is never available

int pg_onednn_available(void) { return 0; }
const char *pg_onednn_version(void) { return ""; }
pg_onednn_weight *pg_onednn_weight_create(int n, int k, const float *rows) { (void)n; (void)k; (void)rows; return NULL; }
size_t pg_onednn_weight_bytes(const pg_onednn_weight *w) { (void)w; return 0; }
void pg_onednn_weight_destroy(pg_onednn_weight *w) { (void)w; }
int pg_onednn_weight_unpack(const pg_onednn_weight *w, float *rows) { (void)w; (void)rows; return 0; }
int pg_onednn_i8_available(void) { return 0; }
pg_onednn_weight *pg_onednn_i8_weight_create(int n, int k, const void *rows, size_t ld, const float *scales,
                                             const int32_t *sums, int u8) {
    (void)n; (void)k; (void)rows; (void)ld; (void)scales; (void)sums; (void)u8;
    return NULL;
}
int pg_onednn_i8_weight_unpack(const pg_onednn_weight *w, signed char *rows, float *scales, int32_t *sums) {
    (void)w; (void)rows; (void)scales; (void)sums;
    return 0;
}
int pg_onednn_i8_matmul(pg_onednn_weight *w, int m, const void *qa, int ldq, int32_t *sums, int threads) {
    (void)w; (void)m; (void)qa; (void)ldq; (void)sums; (void)threads;
    return 0;
}
void pg_onednn_i8_finish(const pg_onednn_weight *w, int m, int32_t *sums, const float *ascale, const float *bias,
                         float *c) {
    (void)w; (void)m; (void)sums; (void)ascale; (void)bias; (void)c;
}
int pg_onednn_matmul(pg_onednn_weight *w, int m, const float *a, const float *bias, float *c, int threads) {
    (void)w; (void)m; (void)a; (void)bias; (void)c; (void)threads;
    return 0;
}
#endif
