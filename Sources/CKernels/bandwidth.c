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
