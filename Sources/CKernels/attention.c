// Scaled dot-product attention over a paged KV cache, for the query heads that share one KV head (a GQA group).
// Each key and value row is read once per group, not once per query head, and rows are taken a run at a time
// (contiguous positions of one block, at most RUN), so the block lookup is per run and the inner loops are plain
// vector code. f16 and int8 rows are converted to f32 a run at a time; int8 rows carry one f32 scale per
// (token, head) in a parallel array with the same slot layout. The AVX-512 and AVX2 loops are written out per
// instruction set: one body left to the compiler's vectoriser was measured 15–30% slower (it reloads the output
// per row and sums each dot product on its own), and the portable loops below are that body.
#include "ckernels.h"
#include <immintrin.h>
#include "simd.h"
#include <math.h>

#define RUN 16

// res[g·rs + r] = dot(q + g·qs, k + r·D) for g < nq, r < nr.
typedef void (*dots_fn)(const float *q, size_t qs, int nq, const float *k, int nr, int D, float *res, size_t rs);
// out[g·os + d] += Σ_r w[g·ws + r] · v[r·D + d] for g < nq, d < D.
typedef void (*axpys_fn)(float *out, size_t os, int nq, const float *w, size_t ws, const float *v, int nr, int D);

__attribute__((target("avx512f")))
static inline __m256 hi256(__m512 a) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)); }

// The horizontal sums of four vectors, in one vector: 13 shuffles and adds instead of 4 × 8.
__attribute__((target("avx512f")))
static inline __m128 reduce4_avx512(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), hi256(a0));
    __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), hi256(a1));
    __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), hi256(a2));
    __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), hi256(a3));
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(b0, b1), _mm256_hadd_ps(b2, b3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

__attribute__((target("avx512f")))
static void dots_avx512(const float *q, size_t qs, int nq, const float *k, int nr, int D, float *res, size_t rs) {
    int full = D & ~15;
    __mmask16 tail = (__mmask16)((1u << (D - full)) - 1);
    for (int r = 0; r < nr; r++) {
        const float *kr = k + (size_t)r * D;
        int g = 0;
        for (; g + 4 <= nq; g += 4) {
            const float *q0 = q + (size_t)g * qs, *q1 = q0 + qs, *q2 = q1 + qs, *q3 = q2 + qs;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int d = 0; d < full; d += 16) {
                __m512 kv = _mm512_loadu_ps(kr + d);
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + d), kv, a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q1 + d), kv, a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q2 + d), kv, a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q3 + d), kv, a3);
            }
            if (tail) {
                __m512 kv = _mm512_maskz_loadu_ps(tail, kr + full);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q0 + full), kv, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q1 + full), kv, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q2 + full), kv, a2);
                a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q3 + full), kv, a3);
            }
            float t[4];
            _mm_storeu_ps(t, reduce4_avx512(a0, a1, a2, a3));
            res[(size_t)g * rs + r] = t[0];
            res[(size_t)(g + 1) * rs + r] = t[1];
            res[(size_t)(g + 2) * rs + r] = t[2];
            res[(size_t)(g + 3) * rs + r] = t[3];
        }
        for (; g < nq; g++) {
            const float *qg = q + (size_t)g * qs;
            __m512 a = _mm512_setzero_ps();
            for (int d = 0; d < full; d += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(qg + d), _mm512_loadu_ps(kr + d), a);
            if (tail) a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, qg + full), _mm512_maskz_loadu_ps(tail, kr + full), a);
            res[(size_t)g * rs + r] = _mm512_reduce_add_ps(a);
        }
    }
}

__attribute__((target("avx512f")))
static void axpys_avx512(float *out, size_t os, int nq, const float *w, size_t ws, const float *v, int nr, int D) {
    for (int g = 0; g < nq; g++) {
        float *o = out + (size_t)g * os;
        const float *wg = w + (size_t)g * ws;
        int d = 0;
        for (; d + 64 <= D; d += 64) {      // four accumulators stay in registers over the run
            __m512 a0 = _mm512_loadu_ps(o + d), a1 = _mm512_loadu_ps(o + d + 16);
            __m512 a2 = _mm512_loadu_ps(o + d + 32), a3 = _mm512_loadu_ps(o + d + 48);
            for (int r = 0; r < nr; r++) {
                __m512 wr = _mm512_set1_ps(wg[r]);
                const float *vr = v + (size_t)r * D + d;
                a0 = _mm512_fmadd_ps(wr, _mm512_loadu_ps(vr), a0);
                a1 = _mm512_fmadd_ps(wr, _mm512_loadu_ps(vr + 16), a1);
                a2 = _mm512_fmadd_ps(wr, _mm512_loadu_ps(vr + 32), a2);
                a3 = _mm512_fmadd_ps(wr, _mm512_loadu_ps(vr + 48), a3);
            }
            _mm512_storeu_ps(o + d, a0);
            _mm512_storeu_ps(o + d + 16, a1);
            _mm512_storeu_ps(o + d + 32, a2);
            _mm512_storeu_ps(o + d + 48, a3);
        }
        for (; d < D; d += 16) {
            __mmask16 m = D - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (D - d)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m, o + d);
            for (int r = 0; r < nr; r++)
                a = _mm512_fmadd_ps(_mm512_set1_ps(wg[r]), _mm512_maskz_loadu_ps(m, v + (size_t)r * D + d), a);
            _mm512_mask_storeu_ps(o + d, m, a);
        }
    }
}

__attribute__((target("avx2,fma")))
static void dots_avx2(const float *q, size_t qs, int nq, const float *k, int nr, int D, float *res, size_t rs) {
    int full = D & ~7;
    for (int r = 0; r < nr; r++) {
        const float *kr = k + (size_t)r * D;
        int g = 0;
        for (; g + 4 <= nq; g += 4) {
            const float *q0 = q + (size_t)g * qs, *q1 = q0 + qs, *q2 = q1 + qs, *q3 = q2 + qs;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int d = 0; d < full; d += 8) {
                __m256 kv = _mm256_loadu_ps(kr + d);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q0 + d), kv, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q1 + d), kv, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q2 + d), kv, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q3 + d), kv, a3);
            }
            float s0 = kern_hsum8(a0), s1 = kern_hsum8(a1), s2 = kern_hsum8(a2), s3 = kern_hsum8(a3);
            for (int d = full; d < D; d++) { s0 += q0[d] * kr[d]; s1 += q1[d] * kr[d]; s2 += q2[d] * kr[d]; s3 += q3[d] * kr[d]; }
            res[(size_t)g * rs + r] = s0;
            res[(size_t)(g + 1) * rs + r] = s1;
            res[(size_t)(g + 2) * rs + r] = s2;
            res[(size_t)(g + 3) * rs + r] = s3;
        }
        for (; g < nq; g++) {
            const float *qg = q + (size_t)g * qs;
            __m256 a = _mm256_setzero_ps();
            for (int d = 0; d < full; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(kr + d), a);
            float s = kern_hsum8(a);
            for (int d = full; d < D; d++) s += qg[d] * kr[d];
            res[(size_t)g * rs + r] = s;
        }
    }
}

__attribute__((target("avx2,fma")))
static void axpys_avx2(float *out, size_t os, int nq, const float *w, size_t ws, const float *v, int nr, int D) {
    int full = D & ~7;
    for (int g = 0; g < nq; g++) {
        float *o = out + (size_t)g * os;
        const float *wg = w + (size_t)g * ws;
        int d = 0;
        for (; d + 32 <= full; d += 32) {
            __m256 a0 = _mm256_loadu_ps(o + d), a1 = _mm256_loadu_ps(o + d + 8);
            __m256 a2 = _mm256_loadu_ps(o + d + 16), a3 = _mm256_loadu_ps(o + d + 24);
            for (int r = 0; r < nr; r++) {
                __m256 wr = _mm256_set1_ps(wg[r]);
                const float *vr = v + (size_t)r * D + d;
                a0 = _mm256_fmadd_ps(wr, _mm256_loadu_ps(vr), a0);
                a1 = _mm256_fmadd_ps(wr, _mm256_loadu_ps(vr + 8), a1);
                a2 = _mm256_fmadd_ps(wr, _mm256_loadu_ps(vr + 16), a2);
                a3 = _mm256_fmadd_ps(wr, _mm256_loadu_ps(vr + 24), a3);
            }
            _mm256_storeu_ps(o + d, a0);
            _mm256_storeu_ps(o + d + 8, a1);
            _mm256_storeu_ps(o + d + 16, a2);
            _mm256_storeu_ps(o + d + 24, a3);
        }
        for (; d < full; d += 8) {
            __m256 a = _mm256_loadu_ps(o + d);
            for (int r = 0; r < nr; r++) a = _mm256_fmadd_ps(_mm256_set1_ps(wg[r]), _mm256_loadu_ps(v + (size_t)r * D + d), a);
            _mm256_storeu_ps(o + d, a);
        }
        for (; d < D; d++)
            for (int r = 0; r < nr; r++) o[d] += wg[r] * v[(size_t)r * D + d];
    }
}

static void dots_portable(const float *q, size_t qs, int nq, const float *k, int nr, int D, float *res, size_t rs) {
    for (int r = 0; r < nr; r++)
        for (int g = 0; g < nq; g++) {
            const float *qg = q + (size_t)g * qs, *kr = k + (size_t)r * D;
            float s = 0;
            for (int d = 0; d < D; d++) s += qg[d] * kr[d];
            res[(size_t)g * rs + r] = s;
        }
}

static void axpys_portable(float *out, size_t os, int nq, const float *w, size_t ws, const float *v, int nr, int D) {
    for (int g = 0; g < nq; g++)
        for (int r = 0; r < nr; r++) {
            float a = w[(size_t)g * ws + r];
            float *o = out + (size_t)g * os;
            const float *vr = v + (size_t)r * D;
            for (int d = 0; d < D; d++) o[d] += a * vr[d];
        }
}

// The nr rows [slot, slot + nr) of a pool as f32: the pool itself for f32, else converted into buf.
static const float *rows_f32(int kvtype, const void *pool, const float *scales, size_t slot, int nr, int D, float *buf) {
    size_t n = (size_t)nr * D;
    if (kvtype == KERN_KV_F32) return (const float *)pool + slot * D;
    if (kvtype == KERN_KV_F16) {
        kern_f16_to_f32((const uint16_t *)pool + slot * D, buf, n);
        return buf;
    }
    const int8_t *x = (const int8_t *)pool + slot * D;
    for (int r = 0; r < nr; r++) {
        float s = scales[slot + r];
        for (int d = 0; d < D; d++) buf[(size_t)r * D + d] = (float)x[(size_t)r * D + d] * s;
    }
    return buf;
}

// The run of positions that starts at p (< p1): its length (to the end of p's block, p1 or RUN, whichever is first)
// and, in *slot, the slot of its first row.
static int run_at(int p, int p1, const int32_t *blocks, int block_size, int kv_heads, int kv_head, size_t *slot) {
    int s = p % block_size, nr = block_size - s;
    if (nr > p1 - p) nr = p1 - p;
    if (nr > RUN) nr = RUN;
    *slot = ((size_t)blocks[p / block_size] * kv_heads + kv_head) * block_size + s;
    return nr;
}

void kern_attend_group(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                       const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                       int head_dim, int kv_head, int p0, int p1, float scale, float *scores, float *out,
                       size_t out_stride) {
    int D = head_dim, n = p1 - p0;
    for (int g = 0; g < nq; g++)
        for (int d = 0; d < D; d++) out[(size_t)g * out_stride + d] = 0;
    if (n <= 0 || nq <= 0) return;
    dots_fn dots = dots_portable;
    axpys_fn axpys = axpys_portable;
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512: dots = dots_avx512; axpys = axpys_avx512; break;
    case KERN_ISA_AVX2: dots = dots_avx2; axpys = axpys_avx2; break;
    default: break;
    }
    float buf[RUN * D];
    // Scores [nq][n]: one run of keys against every query of the group.
    size_t slot;
    for (int p = p0, nr; p < p1; p += nr) {
        nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);
        dots(q, q_stride, nq, rows_f32(kvtype, kpool, kscale, slot, nr, D, buf), nr, D, scores + (p - p0), (size_t)n);
    }
    for (int g = 0; g < nq; g++) kern_softmax_scaled_f32(scores + (size_t)g * n, (size_t)n, scale);
    for (int p = p0, nr; p < p1; p += nr) {
        nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);
        axpys(out, out_stride, nq, scores + (p - p0), (size_t)n, rows_f32(kvtype, vpool, vscale, slot, nr, D, buf), nr, D);
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
