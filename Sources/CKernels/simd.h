// Small vector helpers shared by the kernel files (private to CKernels).
#ifndef MOE_CKERNELS_SIMD_H
#define MOE_CKERNELS_SIMD_H
#include <immintrin.h>

/// The sum of the 8 lanes of v.
__attribute__((target("avx2"), always_inline)) static inline float kern_hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

#endif
