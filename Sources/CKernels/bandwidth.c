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

// Read-only streaming (what decode does to its weights): each thread sums its chunk with 4 independent vector
// accumulators. The sum is returned so the loads cannot be optimised away.
#include <immintrin.h>
#include <stdatomic.h>

typedef struct { const float *a; _Atomic long long sink; } read_ctx;

__attribute__((target("avx2")))
static float read_avx2(const float *a, size_t lo, size_t hi) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = lo;
    for (; i + 32 <= hi; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float out[8], t = 0;
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int k = 0; k < 8; k++) t += out[k];
    for (; i < hi; i++) t += a[i];
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
