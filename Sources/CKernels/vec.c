// Vector primitives used by norms, activations and attention.
#include "ckernels.h"
#include <math.h>
#include <immintrin.h>
#include "simd.h"

__attribute__((target("avx512f")))
static float dot_avx512(const float *a, const float *b, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = kern_hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static float dot_portable(const float *a, const float *b, size_t n) {
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float t = 0;
    for (int j = 0; j < 8; j++) t += s[j];
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

float kern_dot_f32(const float *a, const float *b, size_t n) {
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: return dot_avx512(a, b, n);
    case KERN_ISA_AVX2: return dot_avx2(a, b, n);
    default: return dot_portable(a, b, n);
    }
}

void kern_axpy_f32(float *y, float a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void kern_rmsnorm_f32(const float *x, const float *w, float *y, size_t n, float eps) {
    float ss = kern_dot_f32(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    if (w) for (size_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
    else for (size_t i = 0; i < n; i++) y[i] = x[i] * r;
}

// ---- exp, SwiGLU and softmax -----------------------------------------------------------------------------------
// expf is a call per value: SwiGLU over a prefill's [T, intermediate] and the softmax over every cached position of
// every head made it a few percent of a step. Vector exp: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-6
// Taylor polynomial (relative error ≤ 1.2e-7, about expf's own), times 2^n. x is clamped to [−87, 88], where 2^n
// stays a normal float: below, e^x < 1.7e-38 is 0 to a softmax or a SiLU. Tails go through the same vector code
// (masked, or through a padded copy), so every element is computed the same way wherever it sits: a token's values
// do not depend on how many rows its batch has.
#define EXP_POLY(FMA, SET1, p, r)                                                                                  \
    p = FMA(SET1(1.0f / 720), r, SET1(1.0f / 120));                                                                \
    p = FMA(p, r, SET1(1.0f / 24));                                                                                \
    p = FMA(p, r, SET1(1.0f / 6));                                                                                 \
    p = FMA(p, r, SET1(0.5f));                                                                                     \
    p = FMA(p, r, SET1(1.0f));                                                                                     \
    p = FMA(p, r, SET1(1.0f));

__attribute__((target("avx512f"), always_inline)) static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p;
    EXP_POLY(_mm512_fmadd_ps, _mm512_set1_ps, p, r)
    return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p;
    EXP_POLY(_mm256_fmadd_ps, _mm256_set1_ps, p, r)
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// Lanes [0, n − i) of the 16 starting at i: all of them but in a row's last, partial vector.
static inline __mmask16 lanes16(size_t n, size_t i) {
    return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
}

// silu(g) · u = g / (1 + e^−g) · u.
__attribute__((target("avx512f"))) static void swiglu_avx512(const float *g, const float *u, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes16(n, i);
        __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(x, d), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 swiglu8(const float *g, const float *u) {
    __m256 x = _mm256_loadu_ps(g);
    __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), x)));
    return _mm256_mul_ps(_mm256_div_ps(x, d), _mm256_loadu_ps(u));
}

__attribute__((target("avx2,fma"))) static void swiglu_avx2(const float *g, const float *u, float *out, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, swiglu8(g + i, u + i));
    if (i < n) {   // the tail through the same vector code, from a zero-padded copy
        float gt[8] = {0}, ut[8] = {0}, ot[8];
        for (size_t j = 0; i + j < n; j++) { gt[j] = g[i + j]; ut[j] = u[i + j]; }
        _mm256_storeu_ps(ot, swiglu8(gt, ut));
        for (size_t j = 0; i + j < n; j++) out[i + j] = ot[j];
    }
}

void kern_swiglu_f32(const float *g, const float *u, float *out, size_t n) {
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: swiglu_avx512(g, u, out, n); return;
    case KERN_ISA_AVX2: swiglu_avx2(g, u, out, n); return;
    default: for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

// row[i] = e^(scale·row[i] − max), in place; returns Σ and the max in *max_out. Lanes keep their own maxima and sums
// until the end.
__attribute__((target("avx512f"))) static float exp_avx512(float *row, size_t n, float scale, float *max_out) {
    __m512 vs = _mm512_set1_ps(scale), vmax = _mm512_set1_ps(-INFINITY), vsum = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes16(n, i);
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), vs);
        _mm512_mask_storeu_ps(row + i, m, x);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, x);
    }
    *max_out = _mm512_reduce_max_ps(vmax);
    __m512 mx = _mm512_set1_ps(*max_out);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes16(n, i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + i), mx));
        _mm512_mask_storeu_ps(row + i, m, e);
        vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
    }
    return _mm512_reduce_add_ps(vsum);
}

__attribute__((target("avx512f"))) static void softmax_scale_avx512(float *row, size_t n, float inv) {
    const __m512 v = _mm512_set1_ps(inv);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes16(n, i);
        _mm512_mask_storeu_ps(row + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), v));
    }
}

__attribute__((target("avx2,fma"))) static float exp_avx2(float *row, size_t n, float scale, float *max_out) {
    size_t body = n & ~(size_t)7;
    float maxv = -INFINITY, sum = 0;
    __m256 vs = _mm256_set1_ps(scale), vmax = _mm256_set1_ps(-INFINITY), vsum = _mm256_setzero_ps();
    for (size_t i = 0; i < body; i += 8) {
        __m256 x = _mm256_mul_ps(_mm256_loadu_ps(row + i), vs);
        _mm256_storeu_ps(row + i, x);
        vmax = _mm256_max_ps(vmax, x);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int j = 0; j < 8; j++) maxv = lanes[j] > maxv ? lanes[j] : maxv;
    for (size_t i = body; i < n; i++) { row[i] *= scale; maxv = row[i] > maxv ? row[i] : maxv; }
    *max_out = maxv;
    __m256 mx = _mm256_set1_ps(maxv);
    for (size_t i = 0; i < body; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(row + i), mx));
        _mm256_storeu_ps(row + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    if (body < n) {   // the tail through the same vector exp, padded with −∞ (e^−87 after the clamp; not summed)
        float t[8];
        for (int j = 0; j < 8; j++) t[j] = body + (size_t)j < n ? row[body + j] - maxv : -INFINITY;
        _mm256_storeu_ps(t, exp256(_mm256_loadu_ps(t)));
        for (size_t j = 0; body + j < n; j++) { row[body + j] = t[j]; sum += t[j]; }
    }
    return kern_hsum8(vsum) + sum;
}

float kern_exp_scaled_f32(float *row, size_t n, float scale, float *max_out) {
    *max_out = -INFINITY;
    if (n == 0) return 0;
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: return exp_avx512(row, n, scale, max_out);
    case KERN_ISA_AVX2: return exp_avx2(row, n, scale, max_out);
    default: break;
    }
    float maxv = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++) { row[i] *= scale; if (row[i] > maxv) maxv = row[i]; }
    for (size_t i = 0; i < n; i++) { row[i] = expf(row[i] - maxv); sum += row[i]; }
    *max_out = maxv;
    return sum;
}

void kern_softmax_scaled_f32(float *row, size_t n, float scale) { kern_softmax_sink_f32(row, n, scale, -INFINITY); }

void kern_softmax_sink_f32(float *row, size_t n, float scale, float sink) {
    if (n == 0) return;
    float maxv;
    const float sum = kern_exp_scaled_f32(row, n, scale, &maxv);
    // Σ e^(x − m) + e^(sink − m): the sink's term against the row's max m (the common factor e^(m − max(m, sink))
    // cancels); a sink of −∞ adds exactly 0.
    const float inv = 1.0f / (sink == -INFINITY ? sum : sum + expf(sink - maxv));
    if (kern_isa_active() == KERN_ISA_AVX512) {
        softmax_scale_avx512(row, n, inv);
        return;
    }
    for (size_t i = 0; i < n; i++) row[i] *= inv;
}
