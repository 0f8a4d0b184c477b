// Rounding is to nearest even (rintf: one vector instruction; roundf is a libm call per value).
// Group-quantised weights (32 values per group, one f32 scale each): int8 (q8) and int4 (q4, two values per byte:
// byte j of a group holds value j in its low nibble and value j+16 in its high nibble, stored as v+8).
// Products with these weights are in qgemm.c; dequantisation here serves tests and conversions.
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

void kern_quantize_q8(const float *src, size_t n, int8_t *q, float *scales) {
    for (size_t g = 0; g < n / 32; g++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(src[g * 32 + i]));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0;
        scales[g] = d;
        for (int i = 0; i < 32; i++) {
            float v = rintf(src[g * 32 + i] * id);
            q[g * 32 + i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
    }
}

void kern_quantize_q4(const float *src, size_t n, uint8_t *q, float *scales) {
    for (size_t g = 0; g < n / 32; g++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(src[g * 32 + i]));
        float d = amax / 7.0f, id = d > 0 ? 1.0f / d : 0;
        scales[g] = d;
        for (int j = 0; j < 16; j++) {
            int lo = (int)rintf(src[g * 32 + j] * id), hi = (int)rintf(src[g * 32 + j + 16] * id);
            lo = lo < -8 ? -8 : (lo > 7 ? 7 : lo);
            hi = hi < -8 ? -8 : (hi > 7 ? 7 : hi);
            q[g * 16 + j] = (uint8_t)((lo + 8) | ((hi + 8) << 4));
        }
    }
}

__attribute__((target("avx2")))
static void deq_q8_avx2(const int8_t *q, const float *s, size_t n, float *out) {
    for (size_t g = 0; g < n / 32; g++) {
        __m256 d = _mm256_set1_ps(s[g]);
        for (int i = 0; i < 32; i += 8) {
            __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + g * 32 + i)));
            _mm256_storeu_ps(out + g * 32 + i, _mm256_mul_ps(_mm256_cvtepi32_ps(v), d));
        }
    }
}

__attribute__((target("avx2")))
static void deq_q4_avx2(const uint8_t *q, const float *s, size_t n, float *out) {
    const __m256i eight = _mm256_set1_epi32(8), mask = _mm256_set1_epi32(15);
    for (size_t g = 0; g < n / 32; g++) {
        __m256 d = _mm256_set1_ps(s[g]);
        for (int j = 0; j < 16; j += 8) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + g * 16 + j)));
            __m256i lo = _mm256_sub_epi32(_mm256_and_si256(b, mask), eight);
            __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(b, 4), eight);
            _mm256_storeu_ps(out + g * 32 + j, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d));
            _mm256_storeu_ps(out + g * 32 + 16 + j, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d));
        }
    }
}

void kern_dequantize(int format, const void *q, const float *scales, size_t n, float *out) {
    if (format == KERN_F16) { kern_f16_to_f32((const uint16_t *)q, out, n); return; }
    if (format == KERN_BF16) { kern_bf16_to_f32((const uint16_t *)q, out, n); return; }
    int avx = kern_isa_active() >= KERN_ISA_AVX2;
    if (format == KERN_Q8) {
        if (avx) { deq_q8_avx2((const int8_t *)q, scales, n, out); return; }
        const int8_t *p = (const int8_t *)q;
        for (size_t i = 0; i < n; i++) out[i] = (float)p[i] * scales[i / 32];
    } else {
        if (avx) { deq_q4_avx2((const uint8_t *)q, scales, n, out); return; }
        const uint8_t *p = (const uint8_t *)q;
        for (size_t g = 0; g < n / 32; g++)
            for (int j = 0; j < 16; j++) {
                out[g * 32 + j] = (float)((p[g * 16 + j] & 15) - 8) * scales[g];
                out[g * 32 + j + 16] = (float)((p[g * 16 + j] >> 4) - 8) * scales[g];
            }
    }
}
