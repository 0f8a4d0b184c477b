// Group quantisation (32 values per group, one scale each): int8 (q8, stored as v+128) and int4 (q4, two values per
// byte, stored as v+8) weights at load, with f16 scales, packed in the products' layout (grouplayout.h), and the
// activations of every int8 (int16 values) or int4 (int8 values) product, with f32 scales, in value order. Rounding is to
// nearest even (rintf: one vector instruction; roundf is a libm call per value). Products are in products.c and the kernels it runs (products.h); dequantisation here serves tests.
#include "ckernels.h"
#include "grouplayout.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static float amax32(const float *p) {
    float m = 0;
    for (int i = 0; i < 32; i++) m = fmaxf(m, fabsf(p[i]));
    return m;
}

// One value to f16 (to nearest even) and back: portable, and by F16C where round_group runs.
static inline uint16_t to_f16(float d) { uint16_t h; kern_f32_to_f16(&d, &h, 1); return h; }
static inline float from_f16(uint16_t h) { float d; kern_f16_to_f32(&h, &d, 1); return d; }
__attribute__((target("f16c"))) static inline uint16_t to_f16_f16c(float d) { return _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT); }
__attribute__((target("f16c"))) static inline float from_f16_f16c(uint16_t h) { return _cvtsh_ss(h); }

// A group's scale, amax/levels, and the multiplier 1/scale that rounds its values. Weights (s16 set) keep the scale
// in f16, rounded up, so that every |v · id| stays within levels (the values are rounded against the scale as stored:
// a value's error stays under half the stored scale, which is at most 2^-10 above amax/levels for normal f16
// scales); kern_quantize_weights has checked that amax/levels is at most f16's largest finite value.
#define GROUP_SCALE(NAME, TARGET, TO16, FROM16)                                                                    \
    __attribute__((target(TARGET), always_inline))                                                                 \
    static inline float NAME(float amax, float levels, float *s32, uint16_t *s16) {                               \
        float d = amax / levels;                                                                                   \
        if (s16) {                                                                                                 \
            uint16_t h = TO16(d);                                                                                  \
            float back = FROM16(h);                                                                                \
            if (back < d) back = FROM16(++h);    /* the next f16 up (positive patterns are ordered) */             \
            *s16 = h;                                                                                              \
            d = back;                                                                                              \
        } else *s32 = d;                                                                                           \
        return d > 0 ? 1.0f / d : 0;                                                                               \
    }
GROUP_SCALE(group_scale, "sse2", to_f16, from_f16)
GROUP_SCALE(group_scale_f16c, "avx2,fma,f16c", to_f16_f16c, from_f16_f16c)

static void quant_q8_avx2(const float *x, size_t n, int8_t *q, float *s32, uint16_t *s16);

// int8 weights at load (f16 scales in s16) and the int8 activations of int4 products (f32 scales in s32): the
// same rounding.
static void quantize_q8(const float *src, size_t n, int8_t *q, float *s32, uint16_t *s16) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { quant_q8_avx2(src, n, q, s32, s16); return; }
    for (size_t g = 0; g < n / 32; g++) {
        float id = group_scale(amax32(src + g * 32), 127.0f, s32 ? s32 + g : NULL, s16 ? s16 + g : NULL);
        for (int i = 0; i < 32; i++) {
            float v = rintf(src[g * 32 + i] * id);
            q[g * 32 + i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
    }
}

void kern_quantize_q8(const float *src, size_t n, int8_t *q, float *scales) { quantize_q8(src, n, q, scales, NULL); }

static void quant_q4_avx2(const float *x, size_t n, uint8_t *q, uint16_t *s);

// Byte j of each group holds value j (low nibble) and j + 16 (high nibble), as v + 8.
static void quantize_q4_values(const float *src, size_t n, uint8_t *q, uint16_t *scales) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { quant_q4_avx2(src, n, q, scales); return; }
    for (size_t g = 0; g < n / 32; g++) {
        float id = group_scale(amax32(src + g * 32), 7.0f, NULL, scales + g);
        for (int j = 0; j < 16; j++) {
            int lo = (int)rintf(src[g * 32 + j] * id), hi = (int)rintf(src[g * 32 + j + 16] * id);
            lo = lo < -8 ? -8 : (lo > 7 ? 7 : lo);
            hi = hi < -8 ? -8 : (hi > 7 ? 7 : hi);
            q[g * 16 + j] = (uint8_t)((lo + 8) | ((hi + 8) << 4));
        }
    }
}

// A group whose values are all integer multiples of one power of two s with at most 127 of them (an MXFP4 group:
// e2m1 values, at most 6, times a power of two; an int8 group quantised before) is held exactly: s as its scale
// (exact in f16 from 2^-24 to 2^15), each value as v / s. s is the finest power of two whose 127 steps reach the
// group's largest value, so any coarser step's multiples are multiples of it too. Returns 1 when it rewrote the group.
static int exact_group_q8(const float *x, int8_t *q, uint16_t *scale) {
    const float amax = amax32(x);
    if (!(amax > 0)) return 0;
    int e;
    const float m = frexpf(amax / 127.0f, &e);                       // amax / 127 = m · 2^e, m in [0.5, 1)
    float step = ldexpf(1.0f, m == 0.5f ? e - 1 : e);
    if (amax / step > 127.0f) step *= 2;
    if (step < 0x1p-24f || step > 0x1p15f) return 0;
    int8_t k[32];
    for (int i = 0; i < 32; i++) {
        const float v = x[i] / step;
        if (v != rintf(v) || fabsf(v) > 127.0f || v * step != x[i]) return 0;
        k[i] = (int8_t)v;
    }
    memcpy(q, k, 32);
    *scale = to_f16(step);
    return 1;
}

// Which m in 1 … max_m (at most 16; bit m − 1) could make values 0 and 1 of x integer multiples of amax / m: both
// times m / amax within 10^-3 of integers (their rounding error is below 10^-6, so no exact group is screened out).
static unsigned screen_steps(const float *x, float amax, int max_m) {
    const float a = x[0] / amax, b = x[1] / amax;
    unsigned bits = 0;
    for (int m = 1; m <= max_m; m++) {
        const float ta = a * (float)m, tb = b * (float)m;
        bits |= (unsigned)(fabsf(ta - rintf(ta)) <= 1e-3f && fabsf(tb - rintf(tb)) <= 1e-3f) << (m - 1);
    }
    return bits;
}
// amax32 in four vectors (the scalar chain of 32 fmaxf is most of a screen's time).
__attribute__((target("avx2,fma")))
static float amax32_avx2(const float *x) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signmask, _mm256_loadu_ps(x)), _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + 8))),
                             _mm256_max_ps(_mm256_andnot_ps(signmask, _mm256_loadu_ps(x + 16)), _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + 24))));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}
__attribute__((target("avx2,fma")))
static unsigned screen_steps_avx2(const float *x, float amax, int max_m) {
    const __m256 a = _mm256_set1_ps(x[0] / amax), b = _mm256_set1_ps(x[1] / amax), tol = _mm256_set1_ps(1e-3f);
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    unsigned bits = 0;
    for (int m0 = 1; m0 <= max_m; m0 += 8) {
        const __m256 m = _mm256_add_ps(_mm256_set1_ps((float)m0), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 ta = _mm256_mul_ps(a, m), tb = _mm256_mul_ps(b, m);
        const __m256 da = _mm256_andnot_ps(signmask, _mm256_sub_ps(ta, _mm256_round_ps(ta, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
        const __m256 db = _mm256_andnot_ps(signmask, _mm256_sub_ps(tb, _mm256_round_ps(tb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
        const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(da, tol, _CMP_LE_OQ), _mm256_cmp_ps(db, tol, _CMP_LE_OQ));
        bits |= (unsigned)_mm256_movemask_ps(ok) << (m0 - 1);
    }
    return bits & ((1u << max_m) - 1);
}

// A group whose values are all k · step for integers k in [lo, hi] spanning at most max_span, its largest magnitude
// m · step for some m in 1 … max_m, is held exactly with step as its f16 scale: a group of a 4-bit integer checkpoint
// (GPTQ, AWQ, compressed-tensors: (q − z) · s with an f16 or bf16 s), which rounding against amax/levels would move. Candidates
// that pass screen_steps, from the largest m down; other weights (a bf16 checkpoint's) fail the screen. Returns 1
// when it wrote k (value order), their least and greatest (kminmax, if not NULL) and *scale (k is scratch otherwise).
static int exact_small_step(const float *x, int lo, int hi, int max_m, int max_span, int8_t *k, int *kminmax, uint16_t *scale) {
    const int avx2 = kern_isa_active() >= KERN_ISA_AVX2;
    const float amax = avx2 ? amax32_avx2(x) : amax32(x);
    if (!(amax > 0)) return 0;
    unsigned candidates = avx2 ? screen_steps_avx2(x, amax, max_m) : screen_steps(x, amax, max_m);
    while (candidates) {
        const int m = 32 - __builtin_clz(candidates);                    // the largest left
        candidates &= ~(1u << (m - 1));
        const float step = amax / (float)m;
        int i = 0, kmin = hi, kmax = lo;
        for (; i < 32; i++) {
            const float v = x[i] / step;
            if (v != rintf(v) || v < (float)lo || v > (float)hi || v * step != x[i]) break;
            k[i] = (int8_t)v;
            kmin = k[i] < kmin ? k[i] : kmin;
            kmax = k[i] > kmax ? k[i] : kmax;
        }
        if (i < 32 || kmax - kmin > max_span) continue;          // a coarser step may still fit the span
        const uint16_t h = to_f16(step);
        if (from_f16(h) != step) continue;
        *scale = h;
        if (kminmax) { kminmax[0] = kmin; kminmax[1] = kmax; }
        return 1;
    }
    return 0;
}

// Codes (0…15) of a group as int4 stores them before packing: byte j holds code j (low nibble) and j + 16 (high).
static inline void put_nibbles(uint8_t *dst, const int code[32]) {
    for (int j = 0; j < 16; j++) dst[j] = (uint8_t)(code[j] | (code[j + 16] << 4));
}

// int4z: each group's zero point at q + g, its codes (value j low nibble, j + 16 high, as int4's) after them (see
// q4z_zero_bytes). A group of k · s (its k spanning at most 15: an asymmetric 4-bit checkpoint's) keeps s and k + z
// with z as near 8 as the span allows; any other is rounded over [min(x, 0), max(x, 0)] in 15 steps (zero stays a
// code).
static void quantize_q4z_values(const float *src, size_t n, uint8_t *q, uint16_t *scales) {
    uint8_t *zp = q;
    q += q4z_zero_bytes(n / 32);
    memset(zp, 0, q4z_zero_bytes(n / 32));
    for (size_t g = 0; g < n / 32; g++) {
        const float *x = src + g * 32;
        int8_t k[32];
        int code[32], z, span[2];
        if (exact_small_step(x, -15, 15, 15, 15, k, span, scales + g)) {
            z = 15 - span[1] < 8 ? 15 - span[1] : (-span[0] > 8 ? -span[0] : 8);   // as near 8 as the span allows
            for (int j = 0; j < 32; j++) code[j] = k[j] + z;
        } else {
            float mn = 0, mx = 0;
            for (int j = 0; j < 32; j++) { mn = fminf(mn, x[j]); mx = fmaxf(mx, x[j]); }
            const float id = group_scale(mx - mn, 15.0f, NULL, scales + g);
            z = (int)rintf(-mn * id);
            z = z < 0 ? 0 : (z > 15 ? 15 : z);
            for (int j = 0; j < 32; j++) {
                const int c = (int)rintf(x[j] * id) + z;
                code[j] = c < 0 ? 0 : (c > 15 ? 15 : c);
            }
        }
        put_nibbles(q + g * 16, code);
        zp[g] = (uint8_t)z;
    }
}

// The e2m1 code nearest x (|x| ≤ 6 after scaling), ties to the even code: the midpoints between codes i and i + 1
// it lies above, plus those it sits on where i + 1 is even (codes 0, 2, 4, 6: values 0, 1, 2, 4 win their ties).
static inline int e2m1_code(float x) {
    const float a = fabsf(x);
    const int c = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
    return c | (x < 0 && c ? 8 : 0);
}

// Byte j of each group holds value j's code (low nibble) and j + 16's (high nibble); scale 2^(e−1) (see ckernels.h).
// Values are finite and at most 6 · 2^16 (checked by the caller), so e ≤ 16.
static void quantize_mx4_values(const float *src, size_t n, uint8_t *q, uint16_t *scales) {
    for (size_t g = 0; g < n / 32; g++) {
        const float amax = amax32(src + g * 32);
        int e = -23;
        if (amax > 0) {
            int k;
            const float m = frexpf(amax / 6.0f, &k);                 // amax / 6 = m · 2^k, m in [0.5, 1)
            e = m == 0.5f ? k - 1 : k;
            if (amax > 6.0f * ldexpf(1.0f, e)) e++;                   // amax / 6 rounded either way
            else if (amax <= 6.0f * ldexpf(1.0f, e - 1)) e--;
            if (e < -23) e = -23;
        }
        scales[g] = to_f16(ldexpf(1.0f, e - 1));
        const float inv = ldexpf(1.0f, -e);
        for (int j = 0; j < 16; j++) {
            const int lo = e2m1_code(src[g * 32 + j] * inv), hi = e2m1_code(src[g * 32 + j + 16] * inv);
            q[g * 16 + j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

int kern_quantize_weights(int format, const float *src, size_t n, void *q, uint16_t *scales) {
    // mxfp4's largest scale is the f16 2^15 (2^16 of e2m1 values, at most 6).
    const float limit = format == KERN_MX4 ? 6.0f * 0x1p16f : (format == KERN_Q8 ? 127.0f : 7.0f) * KERN_Q_MAX_SCALE;
    int out_of_range = 0;                                             // NaN too; one branch-free (vectorized) pass
    for (size_t i = 0; i < n; i++) out_of_range |= !(fabsf(src[i]) <= limit);
    if (out_of_range) return -1;
    if (format == KERN_Q8) {
        // Stored as v + 128 (1…255): the unsigned operand of vpdpbusd, which then multiplies them by activations in
        // two signed byte planes (groupinputs.c).
        uint8_t *b = (uint8_t *)q;
        quantize_q8(src, n, (int8_t *)q, NULL, scales);
        int8_t k[32];
        for (size_t g = 0; g < n / 32; g++)
            if (!exact_group_q8(src + g * 32, (int8_t *)q + g * 32, scales + g)
                && exact_small_step(src + g * 32, -15, 15, 15, 30, k, NULL, scales + g)) memcpy((int8_t *)q + g * 32, k, 32);
        for (size_t i = 0; i < n; i++) b[i] ^= 0x80;
        pack_groups(b, n / 32, 32, UNIT);
    } else {
        if (format == KERN_MX4) quantize_mx4_values(src, n, (uint8_t *)q, scales);
        else if (format == KERN_Q4Z) {
            quantize_q4z_values(src, n, (uint8_t *)q, scales);
            q = (uint8_t *)q + q4z_zero_bytes(n / 32);                // the codes, packed as int4's below
        }
        else {
            quantize_q4_values(src, n, (uint8_t *)q, scales);
            int8_t k[32];
            int code[32];
            for (size_t g = 0; g < n / 32; g++) {
                if (!exact_small_step(src + g * 32, -8, 7, 8, 15, k, NULL, scales + g)) continue;
                for (int j = 0; j < 32; j++) code[j] = k[j] + 8;
                put_nibbles((uint8_t *)q + g * 16, code);
            }
        }
        pack_groups((uint8_t *)q, n / 32, 16, UNIT);
    }
    return 0;
}

// ---- vector rounding (groups of 32, round half to even) ---------------------------------------------------------

// The 32 values at p as integers of magnitude at most `levels`: scale amax/levels (stored at *s32, or for weights in
// f16 at *s16, see group_scale), each value times 1/scale rounded half to even and clamped, as int32 (the same
// arithmetic as the scalar paths: rintf(x · id)).
__attribute__((target("avx2,fma,f16c")))
static inline void round_group(const float *p, float levels, float *s32, uint16_t *s16, __m256i out[4]) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 v[4], m = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(p + 8 * i);
        m = _mm256_max_ps(m, _mm256_andnot_ps(signmask, v[i]));
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float id = group_scale_f16c(_mm_cvtss_f32(h), levels, s32, s16);
    const __m256 idv = _mm256_set1_ps(id), hi = _mm256_set1_ps(levels), lo = _mm256_set1_ps(-levels);
    for (int i = 0; i < 4; i++) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(v[i], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        out[i] = _mm256_cvtps_epi32(_mm256_max_ps(_mm256_min_ps(r, hi), lo));
    }
}

// int16 activations of int8 products: amax/KERN_Q8_ACT_LEVELS per group.
__attribute__((target("avx2,fma,f16c")))
static void quant_act_avx2(const float *x, size_t n, int16_t *q, float *s) {
    for (size_t g = 0; g < n / 32; g++) {
        __m256i i32[4];
        round_group(x + g * 32, KERN_Q8_ACT_LEVELS, &s[g], NULL, i32);
        // packs works within 128-bit lanes: restore the order with a 64-bit permute.
        __m256i a = _mm256_permute4x64_epi64(_mm256_packs_epi32(i32[0], i32[1]), 0xD8);
        __m256i b = _mm256_permute4x64_epi64(_mm256_packs_epi32(i32[2], i32[3]), 0xD8);
        _mm256_storeu_si256((__m256i *)(q + g * 32), a);
        _mm256_storeu_si256((__m256i *)(q + g * 32 + 16), b);
    }
}

// int8 values: amax/127 per group.
__attribute__((target("avx2,fma,f16c")))
static void quant_q8_avx2(const float *x, size_t n, int8_t *q, float *s32, uint16_t *s16) {
    for (size_t g = 0; g < n / 32; g++) {
        __m256i i32[4];
        round_group(x + g * 32, 127.0f, s32 ? s32 + g : NULL, s16 ? s16 + g : NULL, i32);
        // packs works within 128-bit lanes: 32 → 16 → 8 bits leaves the values in lane order 0,4,1,5,2,6,3,7 (of 4).
        __m256i b8 = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
        _mm256_storeu_si256((__m256i *)(q + g * 32), _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
}

// int4 weights: amax/7 (|v · id| ≤ 7, so the scalar path's clamp at −8 is never reached), as v + 8 in nibbles.
__attribute__((target("avx2,fma,f16c")))
static void quant_q4_avx2(const float *x, size_t n, uint8_t *q, uint16_t *s) {
    const __m256i eight = _mm256_set1_epi32(8);
    for (size_t g = 0; g < n / 32; g++) {
        __m256i i32[4];
        round_group(x + g * 32, 7.0f, NULL, s + g, i32);
        // Values j and j + 16 share byte j: (lo + 8) | (hi + 8) << 4 for j in 0..7 and 8..15.
        __m256i a = _mm256_or_si256(_mm256_add_epi32(i32[0], eight), _mm256_slli_epi32(_mm256_add_epi32(i32[2], eight), 4));
        __m256i b = _mm256_or_si256(_mm256_add_epi32(i32[1], eight), _mm256_slli_epi32(_mm256_add_epi32(i32[3], eight), 4));
        // 32 → 16 bits (within 128-bit lanes, reordered by the 64-bit permute), then 16 → 8 bits.
        __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(w, w), 0x08);
        _mm_storeu_si128((__m128i *)(q + g * 16), _mm256_castsi256_si128(bytes));
    }
}

void kern_quantize_act(const float *x, size_t n, int16_t *q, float *scales) {
    if (kern_isa_active() >= KERN_ISA_AVX2) { quant_act_avx2(x, n, q, scales); return; }
    for (size_t g = 0; g < n / 32; g++) {
        float d = amax32(x + g * 32) / KERN_Q8_ACT_LEVELS, id = d > 0 ? 1.0f / d : 0.0f;
        scales[g] = d;
        for (int i = 0; i < 32; i++) {
            float r = nearbyintf(x[g * 32 + i] * id);
            q[g * 32 + i] = (int16_t)(r > KERN_Q8_ACT_LEVELS ? KERN_Q8_ACT_LEVELS : (r < -KERN_Q8_ACT_LEVELS ? -KERN_Q8_ACT_LEVELS : r));
        }
    }
}

void kern_dequantize(int format, const void *q, const uint16_t *scales, size_t n, float *out) {
    if (format == KERN_F16) { kern_f16_to_f32((const uint16_t *)q, out, n); return; }
    if (format == KERN_BF16) { kern_bf16_to_f32((const uint16_t *)q, out, n); return; }
    size_t groups = n / 32;
    for (size_t g = 0; g < groups; g++) {
        float s;
        kern_f16_to_f32(scales + g, &s, 1);
        for (size_t j = 0; j < 32; j++) {
            int v = format == KERN_Q8 ? q8_value((const uint8_t *)q, groups, g, j)
                  : format == KERN_Q4Z ? q4z_value((const uint8_t *)q, groups, g, j)
                  : format == KERN_MX4 ? mx4_value((const uint8_t *)q, groups, g, j)
                                       : q4_value((const uint8_t *)q, groups, g, j);
            out[g * 32 + j] = (float)v * s;
        }
    }
}
