// f32 matrix-vector products for batch-1 decode, where the weights stream from memory once per token:
// four rows share each load of x, and the pool splits rows so that both cores pull bandwidth.
#include "ckernels.h"
#include <immintrin.h>

__attribute__((target("avx512f")))
static void gemv_avx512(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t r0, size_t r1) {
    size_t full = cols & ~(size_t)15;
    __mmask16 tail = (__mmask16)((1u << (cols - full)) - 1);
    // Rows b, b+q, b+2q, b+3q together: four sequential streams in separate pages (see qgemm.c).
    size_t q = (r1 - r0) / 4;
    for (size_t b = 0; b < q; b++) {
        size_t rr[4] = {r0 + b, r0 + q + b, r0 + 2 * q + b, r0 + 3 * q + b};
        const float *w0 = W + rr[0] * ld, *w1 = W + rr[1] * ld, *w2 = W + rr[2] * ld, *w3 = W + rr[3] * ld;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (size_t c = 0; c < full; c += 16) {
            __m512 xv = _mm512_loadu_ps(x + c);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + c), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + c), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + c), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + c), xv, a3);
        }
        if (tail) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, x + full);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + full), xv, a0);
            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w1 + full), xv, a1);
            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w2 + full), xv, a2);
            a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w3 + full), xv, a3);
        }
        y[rr[0]] = _mm512_reduce_add_ps(a0);
        y[rr[1]] = _mm512_reduce_add_ps(a1);
        y[rr[2]] = _mm512_reduce_add_ps(a2);
        y[rr[3]] = _mm512_reduce_add_ps(a3);
    }
    for (size_t r = r0 + 4 * q; r < r1; r++) y[r] = kern_dot_f32(W + r * ld, x, cols);
}

__attribute__((target("avx2,fma")))
static void gemv_avx2(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t r0, size_t r1) {
    size_t r = r0;
    size_t full = cols & ~(size_t)7;
    for (; r + 4 <= r1; r += 4) {
        const float *w0 = W + r * ld, *w1 = w0 + ld, *w2 = w1 + ld, *w3 = w2 + ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (size_t c = 0; c < full; c += 8) {
            __m256 xv = _mm256_loadu_ps(x + c);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), xv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), xv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), xv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), xv, a3);
        }
        float s[4][8];
        _mm256_storeu_ps(s[0], a0); _mm256_storeu_ps(s[1], a1); _mm256_storeu_ps(s[2], a2); _mm256_storeu_ps(s[3], a3);
        for (int k = 0; k < 4; k++) {
            float t = 0;
            for (int j = 0; j < 8; j++) t += s[k][j];
            for (size_t c = full; c < cols; c++) t += W[(r + k) * ld + c] * x[c];
            y[r + k] = t;
        }
    }
    for (; r < r1; r++) y[r] = kern_dot_f32(W + r * ld, x, cols);
}

void kern_gemv_f32(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t r0, size_t r1) {
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: gemv_avx512(W, ld, x, cols, y, r0, r1); return;
    case KERN_ISA_AVX2: gemv_avx2(W, ld, x, cols, y, r0, r1); return;
    default:
        for (size_t r = r0; r < r1; r++) y[r] = kern_dot_f32(W + r * ld, x, cols);
    }
}

typedef struct { const float *W; size_t ld; const float *x; size_t cols; float *y; } gemv_ctx;

static void gemv_task(void *p, size_t b, size_t e) {
    gemv_ctx *c = (gemv_ctx *)p;
    kern_gemv_f32(c->W, c->ld, c->x, c->cols, c->y, b, e);
}

void kern_gemv_f32_mt(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t rows) {
    gemv_ctx c = {W, ld, x, cols, y};
    // Small products are not worth a wake-up: below ~64K weights one thread is faster.
    if (rows * cols < 65536) { kern_gemv_f32(W, ld, x, cols, y, 0, rows); return; }
    kern_parallel_for(rows, 16, gemv_task, &c);
}
