// STREAM-style triad a = b + s·c across the thread pool: the memory bandwidth roofline of decode.
#include "ckernels.h"

typedef struct { float *a; const float *b; const float *c; float s; } triad_ctx;

static void triad_task(void *p, size_t lo, size_t hi) {
    triad_ctx *t = (triad_ctx *)p;
    float *a = t->a;
    const float *b = t->b, *c = t->c;
    float s = t->s;
    for (size_t i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
}

void kern_triad_mt(float *a, const float *b, const float *c, float s, size_t n) {
    triad_ctx t = {a, b, c, s};
    kern_parallel_for(n, 4096, triad_task, &t);
}

// Read-only streaming (what decode does to its weights): each thread reads its chunk as four sequential streams, a
// quarter of the chunk apart (64 bytes from each in turn), as the products read their rows. On this VM that reads
// more than one stream per thread does: 1.09–1.10× below 40 GB/s and 1.15–1.24× at 40–60 (median ratios over
// 5,467 interleaved rounds), so one stream would understate the machine's limit and flatter the rooflines. The
// sum is returned so the loads cannot be optimised away.
#include <immintrin.h>
#include <stdatomic.h>

typedef struct { const float *a; _Atomic long long sink; } read_ctx;

__attribute__((target("avx2")))
static float read_avx2(const float *a, size_t lo, size_t hi) {
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    size_t q = (hi - lo) / 4 & ~(size_t)15;   // floats per stream, whole 64-byte steps
    const float *p = a + lo;
    for (size_t i = 0; i < q; i += 16)
        for (int k = 0; k < 4; k++)
            s[k] = _mm256_add_ps(s[k], _mm256_add_ps(_mm256_loadu_ps(p + k * q + i), _mm256_loadu_ps(p + k * q + i + 8)));
    float out[8], t = 0;
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s[0], s[1]), _mm256_add_ps(s[2], s[3])));
    for (int k = 0; k < 8; k++) t += out[k];
    for (size_t i = lo + 4 * q; i < hi; i++) t += a[i];
    return t;
}

static void read_task(void *p, size_t lo, size_t hi) {
    read_ctx *r = (read_ctx *)p;
    float t = 0;
    if (kern_isa_active() >= KERN_ISA_AVX2) t = read_avx2(r->a, lo, hi);
    else for (size_t i = lo; i < hi; i++) t += r->a[i];
    atomic_fetch_add(&r->sink, (long long)t);
}

long long kern_read_mt(const float *a, size_t n) {
    read_ctx r = {a, 0};
    kern_parallel_for(n, 4096, read_task, &r);
    return atomic_load(&r.sink);
}
