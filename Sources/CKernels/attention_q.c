// Attention over f16 and int8 KV caches: the same scan as kern_attend_f32, converting each key/value row as it is
// read. int8 rows carry one f32 scale per (token, head), stored in a parallel array with the same slot layout.
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>

__attribute__((target("avx2,fma,f16c")))
static float dot_f16_avx2(const float *q, const uint16_t *k, int n) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        s = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), s);
    float t[8];
    _mm256_storeu_ps(t, s);
    float r = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    for (; i < n; i++) { float kv; kern_f16_to_f32(k + i, &kv, 1); r += q[i] * kv; }
    return r;
}

__attribute__((target("avx2,fma,f16c")))
static void axpy_f16_avx2(float *y, float a, const uint16_t *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) { float v; kern_f16_to_f32(x + i, &v, 1); y[i] += a * v; }
}

static float dot_f16(const float *q, const uint16_t *k, int n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) return dot_f16_avx2(q, k, n);
    float r = 0;
    for (int i = 0; i < n; i++) { float v; kern_f16_to_f32(k + i, &v, 1); r += q[i] * v; }
    return r;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { axpy_f16_avx2(y, a, x, n); return; }
    for (int i = 0; i < n; i++) { float v; kern_f16_to_f32(x + i, &v, 1); y[i] += a * v; }
}

__attribute__((target("avx2,fma")))
static float dot_i8_avx2(const float *q, const int8_t *k, int n) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 kv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(k + i))));
        s = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, s);
    }
    float t[8];
    _mm256_storeu_ps(t, s);
    float r = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    for (; i < n; i++) r += q[i] * (float)k[i];
    return r;
}

__attribute__((target("avx2,fma")))
static void axpy_i8_avx2(float *y, float a, const int8_t *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + i))));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * (float)x[i];
}

static float dot_i8(const float *q, const int8_t *k, int n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) return dot_i8_avx2(q, k, n);
    float r = 0;
    for (int i = 0; i < n; i++) r += q[i] * (float)k[i];
    return r;
}

static void axpy_i8(float *y, float a, const int8_t *x, int n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { axpy_i8_avx2(y, a, x, n); return; }
    for (int i = 0; i < n; i++) y[i] += a * (float)x[i];
}

void kern_attend_kv(int kvtype, const float *q, const void *kpool, const void *vpool, const float *kscale,
                    const float *vscale, const int32_t *blocks, int block_size, int kv_heads, int head_dim, int kv_head,
                    int p0, int p1, float scale, float *scores, float *out) {
    if (kvtype == KERN_KV_F32) {
        kern_attend_f32(q, (const float *)kpool, (const float *)vpool, blocks, block_size, kv_heads, head_dim, kv_head,
                        p0, p1, scale, scores, out);
        return;
    }
    int n = p1 - p0;
    for (int d = 0; d < head_dim; d++) out[d] = 0;
    if (n <= 0) return;
    size_t slotsPerBlock = (size_t)kv_heads * block_size;
    float maxv = -INFINITY;
    for (int p = p0; p < p1; p++) {
        size_t slot = (size_t)blocks[p / block_size] * slotsPerBlock + (size_t)kv_head * block_size + (size_t)(p % block_size);
        float s;
        if (kvtype == KERN_KV_F16) s = dot_f16(q, (const uint16_t *)kpool + slot * head_dim, head_dim);
        else s = dot_i8(q, (const int8_t *)kpool + slot * head_dim, head_dim) * kscale[slot];
        s *= scale;
        scores[p - p0] = s;
        if (s > maxv) maxv = s;
    }
    float sum = 0;
    for (int i = 0; i < n; i++) { scores[i] = expf(scores[i] - maxv); sum += scores[i]; }
    float inv = 1.0f / sum;
    for (int p = p0; p < p1; p++) {
        size_t slot = (size_t)blocks[p / block_size] * slotsPerBlock + (size_t)kv_head * block_size + (size_t)(p % block_size);
        float w = scores[p - p0] * inv;
        if (kvtype == KERN_KV_F16) axpy_f16(out, w, (const uint16_t *)vpool + slot * head_dim, head_dim);
        else axpy_i8(out, w * vscale[slot], (const int8_t *)vpool + slot * head_dim, head_dim);
    }
}

void kern_kv_store(int kvtype, const float *src, void *pool, float *scales, size_t slot, int head_dim) {
    if (kvtype == KERN_KV_F32) {
        float *d = (float *)pool + slot * head_dim;
        for (int i = 0; i < head_dim; i++) d[i] = src[i];
    } else if (kvtype == KERN_KV_F16) {
        kern_f32_to_f16(src, (uint16_t *)pool + slot * head_dim, head_dim);
    } else {
        float amax = 0;
        for (int i = 0; i < head_dim; i++) amax = fmaxf(amax, fabsf(src[i]));
        float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0;
        int8_t *d = (int8_t *)pool + slot * head_dim;
        for (int i = 0; i < head_dim; i++) {
            float v = roundf(src[i] * inv);
            d[i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
        scales[slot] = s;
    }
}
