// Products with a few rows (batched decode, an expert that got a handful of tokens): SGEMM with M < ~16 runs far
// below bandwidth, so stream each block of 4 weight rows once and apply it to all T inputs while it sits in L1.
#include "ckernels.h"
#include <immintrin.h>

#define AI __attribute__((always_inline)) static inline

// 4 weight rows × NT inputs, NT a compile-time constant at each call site (1..4).
__attribute__((target("avx512f")))
AI void block_avx512(const float *W, size_t ld, const float *X, size_t ldx, size_t cols, float *Y, size_t ldy,
                     const size_t *rr, size_t t0, const int NT) {
    __m512 acc[4][4];
    for (int i = 0; i < 4; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    const float *w[4] = {W + rr[0] * ld, W + rr[1] * ld, W + rr[2] * ld, W + rr[3] * ld};
    size_t full = cols & ~(size_t)15;
    for (size_t c = 0; c < full; c += 16) {
        __m512 wv[4];
        for (int i = 0; i < 4; i++) wv[i] = _mm512_loadu_ps(w[i] + c);
        for (int j = 0; j < NT; j++) {
            __m512 xv = _mm512_loadu_ps(X + (t0 + j) * ldx + c);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    if (full < cols) {
        __mmask16 m = (__mmask16)((1u << (cols - full)) - 1);
        __m512 wv[4];
        for (int i = 0; i < 4; i++) wv[i] = _mm512_maskz_loadu_ps(m, w[i] + full);
        for (int j = 0; j < NT; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, X + (t0 + j) * ldx + full);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < 4; i++) Y[(t0 + j) * ldy + rr[i]] = _mm512_reduce_add_ps(acc[i][j]);
}

__attribute__((target("avx512f")))
static void gemm_small_avx512(const float *W, size_t ld, const float *X, size_t ldx, size_t T, size_t cols,
                              float *Y, size_t ldy, size_t r0, size_t r1) {
    // Rows b, b+q, b+2q, b+3q together, as in gemv.c (the same grouping, so T = 1 and T > 1 agree bit for bit).
    size_t q = (r1 - r0) / 4;
    for (size_t b = 0; b < q; b++) {
        const size_t rr[4] = {r0 + b, r0 + q + b, r0 + 2 * q + b, r0 + 3 * q + b};
        size_t t = 0;
        for (; t + 4 <= T; t += 4) block_avx512(W, ld, X, ldx, cols, Y, ldy, rr, t, 4);
        switch (T - t) {
        case 3: block_avx512(W, ld, X, ldx, cols, Y, ldy, rr, t, 3); break;
        case 2: block_avx512(W, ld, X, ldx, cols, Y, ldy, rr, t, 2); break;
        case 1: block_avx512(W, ld, X, ldx, cols, Y, ldy, rr, t, 1); break;
        }
    }
    for (size_t r = r0 + 4 * q; r < r1; r++)
        for (size_t t = 0; t < T; t++) Y[t * ldy + r] = kern_dot_f32(W + r * ld, X + t * ldx, cols);
}

__attribute__((target("avx2,fma")))
AI void block_avx2(const float *W, size_t ld, const float *X, size_t ldx, size_t cols, float *Y, size_t ldy,
                   size_t r, size_t t0, const int NT) {
    __m256 acc[4][3];
    for (int i = 0; i < 4; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    const float *w[4] = {W + r * ld, W + (r + 1) * ld, W + (r + 2) * ld, W + (r + 3) * ld};
    size_t full = cols & ~(size_t)7;
    for (size_t c = 0; c < full; c += 8) {
        __m256 wv[4];
        for (int i = 0; i < 4; i++) wv[i] = _mm256_loadu_ps(w[i] + c);
        for (int j = 0; j < NT; j++) {
            __m256 xv = _mm256_loadu_ps(X + (t0 + j) * ldx + c);
            for (int i = 0; i < 4; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < 4; i++) {
            float s[8], tot = 0;
            _mm256_storeu_ps(s, acc[i][j]);
            for (int k = 0; k < 8; k++) tot += s[k];
            for (size_t c = full; c < cols; c++) tot += w[i][c] * X[(t0 + j) * ldx + c];
            Y[(t0 + j) * ldy + r + i] = tot;
        }
}

__attribute__((target("avx2,fma")))
static void gemm_small_avx2(const float *W, size_t ld, const float *X, size_t ldx, size_t T, size_t cols,
                            float *Y, size_t ldy, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        size_t t = 0;
        for (; t + 3 <= T; t += 3) block_avx2(W, ld, X, ldx, cols, Y, ldy, r, t, 3);
        switch (T - t) {
        case 2: block_avx2(W, ld, X, ldx, cols, Y, ldy, r, t, 2); break;
        case 1: block_avx2(W, ld, X, ldx, cols, Y, ldy, r, t, 1); break;
        }
    }
    for (; r < r1; r++)
        for (size_t t = 0; t < T; t++) Y[t * ldy + r] = kern_dot_f32(W + r * ld, X + t * ldx, cols);
}

void kern_gemm_small_f32(const float *W, size_t ld, const float *X, size_t ldx, size_t T, size_t cols,
                         float *Y, size_t ldy, size_t r0, size_t r1) {
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: gemm_small_avx512(W, ld, X, ldx, T, cols, Y, ldy, r0, r1); return;
    case KERN_ISA_AVX2: gemm_small_avx2(W, ld, X, ldx, T, cols, Y, ldy, r0, r1); return;
    default:
        for (size_t r = r0; r < r1; r++)
            for (size_t t = 0; t < T; t++) Y[t * ldy + r] = kern_dot_f32(W + r * ld, X + t * ldx, cols);
    }
}

typedef struct { const float *W; size_t ld; const float *X; size_t ldx, T, cols; float *Y; size_t ldy; } small_ctx;

static void small_task(void *p, size_t b, size_t e) {
    small_ctx *c = (small_ctx *)p;
    kern_gemm_small_f32(c->W, c->ld, c->X, c->ldx, c->T, c->cols, c->Y, c->ldy, b, e);
}

void kern_gemm_small_f32_mt(const float *W, size_t ld, const float *X, size_t ldx, size_t T, size_t cols,
                            float *Y, size_t ldy, size_t rows) {
    small_ctx c = {W, ld, X, ldx, T, cols, Y, ldy};
    if (rows * cols < 65536) { kern_gemm_small_f32(W, ld, X, ldx, T, cols, Y, ldy, 0, rows); return; }
    kern_parallel_for(rows, 16, small_task, &c);
}
