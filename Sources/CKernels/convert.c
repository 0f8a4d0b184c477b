// Storage-dtype conversions used once at load (checkpoints in bf16/f16 become f32 compute weights).
#include "ckernels.h"
#include <string.h>
#include <immintrin.h>

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
    if (exp == 0) {
        if (mant == 0) u = sign;
        else {                                   // subnormal: normalise
            int e = -1;
            do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (mant << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

__attribute__((target("avx2")))
static void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
    for (; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

void kern_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { bf16_to_f32_avx2(src, dst, n); return; }
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

void kern_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { f16_to_f32_f16c(src, dst, n); return; }
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

void kern_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) { dst[i] = (uint16_t)((u >> 16) | 0x40); continue; }
        u += 0x7fffu + ((u >> 16) & 1u);
        dst[i] = (uint16_t)(u >> 16);
    }
}

__attribute__((target("avx2,f16c")))
static size_t f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return i;
}

void kern_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    // vcvtps2ph rounds to nearest even like the portable code below (tested against it).
    size_t done = kern_isa_active() >= KERN_ISA_AVX2 ? f32_to_f16_f16c(src, dst, n) : 0;
    for (size_t i = done; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        uint32_t sign = (u >> 16) & 0x8000u;
        uint32_t a = u & 0x7fffffffu;
        uint16_t h;
        if (a > 0x7f800000u) h = (uint16_t)(sign | 0x7e00u);                 // NaN
        else if (a >= 0x477ff000u) h = (uint16_t)(sign | 0x7c00u);          // overflow to inf (incl. rounding)
        else if (a < 0x38800000u) {                                           // subnormal or zero in f16
            if (a < 0x33000000u) h = (uint16_t)sign;
            else {
                uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
                uint32_t shift = 126 - e;                                     // 14 - (e - 112)
                uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
                if (rem > half || (rem == half && (r & 1))) r++;
                h = (uint16_t)(sign | r);
            }
        } else {
            uint32_t r = a - 0x38000000u;                                     // rebias exponent 127 -> 15
            uint32_t rem = r & 0x1fffu;
            r >>= 13;
            if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) r++;
            h = (uint16_t)(sign | r);
        }
        dst[i] = h;
    }
}
