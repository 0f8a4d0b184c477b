// Scaled dot-product attention over a paged KV cache, for the query heads that share one KV head (a GQA group).
// Each key and value row is read once per group, not once per query head, and rows are taken a run at a time
// (contiguous positions of one block, at most RUN), so the block lookup is per run and the inner loops are plain
// vector code. int8 rows carry one f32 scale per (token, head) in a parallel array with the same slot layout. With
// AVX-512, f16 and int8 rows are converted in registers as they are multiplied; the other paths convert a run to
// f32 first. The AVX-512 and AVX2 loops are written out per
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

#define A512 __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define AI512 A512 __attribute__((always_inline)) static inline

// AVX-512 reads K/V rows as stored (f32, f16 or int8: one conversion per 16 values in registers, no f32 copy of
// the run), and applies an int8 row's scale to its dot products and to its weights instead of to each value.

// Values d..d+15 of a row (m: which exist) as f32; int8 rows unscaled.
AI512 __m512 kv16(int kind, const void *row, int d, __mmask16 m) {
    switch (kind) {
    case KERN_KV_F32: return _mm512_maskz_loadu_ps(m, (const float *)row + d);
    case KERN_KV_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + d));
    default: return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)row + d)));
    }
}

static inline size_t kv_row_bytes(int kind, int D) { return (size_t)D * (kind == KERN_KV_F32 ? 4 : kind == KERN_KV_F16 ? 2 : 1); }

// The 16-value chunks of d (the last masked) that every (head, row) sum goes through, in this order, whatever the
// blocking below: each score is the same whichever rows and heads it was computed beside.
#define CHUNKS(D, ...)                                                                                           \
    for (int d = 0; d < (D); d += 16) {                                                                          \
        const __mmask16 m = (D) - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << ((D) - d)) - 1);          \
        __VA_ARGS__                                                                                              \
    }

// res[g·rs + r] = s_r · Σ_d q_g[d] · row_r[d] for g < nq, r < nr (s_r: an int8 row's scale, else 1). Four heads
// by four rows at a time, so that each chunk of a query is loaded once per four rows and each chunk of a row once
// per four heads (one row at a time, the queries' loads outnumbered the multiply-adds); each row's four sums are
// then reduced together.
AI512 void dots512(int kind, const float *q, size_t qs, int nq, const void *k, const float *ks, int nr, int D,
                   float *res, size_t rs) {
    const size_t rb = kv_row_bytes(kind, D);
    const char *kb = (const char *)k;
    int g = 0;
    for (; g + 4 <= nq; g += 4) {
        const float *q0 = q + (size_t)g * qs, *q1 = q0 + qs, *q2 = q1 + qs, *q3 = q2 + qs;
        float *o = res + (size_t)g * rs;
        int r = 0;
        for (; r + 4 <= nr; r += 4) {
            const char *k0 = kb + (size_t)r * rb, *k1 = k0 + rb, *k2 = k1 + rb, *k3 = k2 + rb;
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00,
                   a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            CHUNKS(D, {
                __m512 x0 = _mm512_maskz_loadu_ps(m, q0 + d), x1 = _mm512_maskz_loadu_ps(m, q1 + d);
                __m512 x2 = _mm512_maskz_loadu_ps(m, q2 + d), x3 = _mm512_maskz_loadu_ps(m, q3 + d);
                __m512 y = kv16(kind, k0, d, m);
                a00 = _mm512_fmadd_ps(x0, y, a00); a10 = _mm512_fmadd_ps(x1, y, a10);
                a20 = _mm512_fmadd_ps(x2, y, a20); a30 = _mm512_fmadd_ps(x3, y, a30);
                y = kv16(kind, k1, d, m);
                a01 = _mm512_fmadd_ps(x0, y, a01); a11 = _mm512_fmadd_ps(x1, y, a11);
                a21 = _mm512_fmadd_ps(x2, y, a21); a31 = _mm512_fmadd_ps(x3, y, a31);
                y = kv16(kind, k2, d, m);
                a02 = _mm512_fmadd_ps(x0, y, a02); a12 = _mm512_fmadd_ps(x1, y, a12);
                a22 = _mm512_fmadd_ps(x2, y, a22); a32 = _mm512_fmadd_ps(x3, y, a32);
                y = kv16(kind, k3, d, m);
                a03 = _mm512_fmadd_ps(x0, y, a03); a13 = _mm512_fmadd_ps(x1, y, a13);
                a23 = _mm512_fmadd_ps(x2, y, a23); a33 = _mm512_fmadd_ps(x3, y, a33);
            })
            // Row j's four sums, one per head, transposed to head i's four rows.
            __m128 s0 = reduce4_avx512(a00, a10, a20, a30), s1 = reduce4_avx512(a01, a11, a21, a31);
            __m128 s2 = reduce4_avx512(a02, a12, a22, a32), s3 = reduce4_avx512(a03, a13, a23, a33);
            _MM_TRANSPOSE4_PS(s0, s1, s2, s3);
            if (kind == KERN_KV_I8) {
                const __m128 sc = _mm_loadu_ps(ks + r);
                s0 = _mm_mul_ps(s0, sc); s1 = _mm_mul_ps(s1, sc); s2 = _mm_mul_ps(s2, sc); s3 = _mm_mul_ps(s3, sc);
            }
            _mm_storeu_ps(o + r, s0);
            _mm_storeu_ps(o + rs + r, s1);
            _mm_storeu_ps(o + 2 * rs + r, s2);
            _mm_storeu_ps(o + 3 * rs + r, s3);
        }
        for (; r < nr; r++) {
            const char *k0 = kb + (size_t)r * rb;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            CHUNKS(D, {
                __m512 y = kv16(kind, k0, d, m);
                a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q0 + d), y, a0);
                a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q1 + d), y, a1);
                a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q2 + d), y, a2);
                a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q3 + d), y, a3);
            })
            __m128 s4 = reduce4_avx512(a0, a1, a2, a3);
            float t[4];
            _mm_storeu_ps(t, kind == KERN_KV_I8 ? _mm_mul_ps(s4, _mm_set1_ps(ks[r])) : s4);
            for (int i = 0; i < 4; i++) o[(size_t)i * rs + r] = t[i];
        }
    }
    for (; g < nq; g++) {
        const float *qg = q + (size_t)g * qs;
        for (int r = 0; r < nr; r++) {
            const char *k0 = kb + (size_t)r * rb;
            __m512 a = _mm512_setzero_ps();
            CHUNKS(D, { a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qg + d), kv16(kind, k0, d, m), a); })
            float t = _mm512_reduce_add_ps(a);
            res[(size_t)g * rs + r] = kind == KERN_KV_I8 ? t * ks[r] : t;
        }
    }
}

// out[g·os + d] += Σ_r (w[g·ws + r] · s_r) · row_r[d] for g < nq, d < D, in row order (s_r as above). Four heads by
// 64 values at a time, the 16 sums in registers over the run, so each chunk of a row is loaded once per four heads;
// every output value takes the same multiply-adds in the same order on either path.
AI512 void axpys512(int kind, float *out, size_t os, int nq, const float *w, size_t ws, const void *v,
                    const float *vs, int nr, int D) {
    const size_t rb = kv_row_bytes(kind, D);
    const char *vb = (const char *)v;
    int g = 0;
    for (; g + 4 <= nq; g += 4) {
        const float *w0 = w + (size_t)g * ws, *w1 = w0 + ws, *w2 = w1 + ws, *w3 = w2 + ws;
        float *o0 = out + (size_t)g * os, *o1 = o0 + os, *o2 = o1 + os, *o3 = o2 + os;
        for (int d = 0; d + 64 <= D; d += 64) {
#define LOAD4(o, a) __m512 a##0 = _mm512_loadu_ps(o + d), a##1 = _mm512_loadu_ps(o + d + 16), \
                           a##2 = _mm512_loadu_ps(o + d + 32), a##3 = _mm512_loadu_ps(o + d + 48);
#define STORE4(o, a) _mm512_storeu_ps(o + d, a##0); _mm512_storeu_ps(o + d + 16, a##1); \
                     _mm512_storeu_ps(o + d + 32, a##2); _mm512_storeu_ps(o + d + 48, a##3);
#define FMA4(wv, a) a##0 = _mm512_fmadd_ps(wv, y0, a##0); a##1 = _mm512_fmadd_ps(wv, y1, a##1); \
                    a##2 = _mm512_fmadd_ps(wv, y2, a##2); a##3 = _mm512_fmadd_ps(wv, y3, a##3);
            LOAD4(o0, a) LOAD4(o1, b) LOAD4(o2, c) LOAD4(o3, e)
            for (int r = 0; r < nr; r++) {
                const char *vr = vb + (size_t)r * rb;
                const float sr = kind == KERN_KV_I8 ? vs[r] : 1;
                __m512 y0 = kv16(kind, vr, d, 0xffff), y1 = kv16(kind, vr, d + 16, 0xffff);
                __m512 y2 = kv16(kind, vr, d + 32, 0xffff), y3 = kv16(kind, vr, d + 48, 0xffff);
                __m512 x = _mm512_set1_ps(kind == KERN_KV_I8 ? w0[r] * sr : w0[r]);
                FMA4(x, a)
                x = _mm512_set1_ps(kind == KERN_KV_I8 ? w1[r] * sr : w1[r]);
                FMA4(x, b)
                x = _mm512_set1_ps(kind == KERN_KV_I8 ? w2[r] * sr : w2[r]);
                FMA4(x, c)
                x = _mm512_set1_ps(kind == KERN_KV_I8 ? w3[r] * sr : w3[r]);
                FMA4(x, e)
            }
            STORE4(o0, a) STORE4(o1, b) STORE4(o2, c) STORE4(o3, e)
#undef LOAD4
#undef STORE4
#undef FMA4
        }
    }
    // What is left: heads past the last four, and values past the last 64 of every head, 16 at a time.
    for (int h = 0; h < nq; h++) {
        const float *wg = w + (size_t)h * ws;
        float *o = out + (size_t)h * os;
        for (int d = h < g ? D & ~63 : 0; d < D; d += 16) {
            const __mmask16 m = D - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (D - d)) - 1);
            __m512 a = _mm512_maskz_loadu_ps(m, o + d);
            for (int r = 0; r < nr; r++) {
                const float x = kind == KERN_KV_I8 ? wg[r] * vs[r] : wg[r];
                a = _mm512_fmadd_ps(_mm512_set1_ps(x), kv16(kind, vb + (size_t)r * rb, d, m), a);
            }
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

// buf[r·D + d] = x[r·D + d] · scales[r] for r < nr: int8 rows as f32 for the AVX2 and portable paths, the same
// products on both (each value converts exactly, then one rounding multiply).
static void i8_rows_portable(const int8_t *x, const float *scales, int nr, int D, float *buf) {
    for (int r = 0; r < nr; r++)
        for (int d = 0; d < D; d++) buf[(size_t)r * D + d] = (float)x[(size_t)r * D + d] * scales[r];
}

__attribute__((target("avx2")))
static void i8_rows_avx2(const int8_t *x, const float *scales, int nr, int D, float *buf) {
    for (int r = 0; r < nr; r++) {
        const int8_t *xr = x + (size_t)r * D;
        float *o = buf + (size_t)r * D;
        __m256 s = _mm256_set1_ps(scales[r]);
        int d = 0;
        for (; d + 8 <= D; d += 8)
            _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(xr + d)))), s));
        for (; d < D; d++) o[d] = (float)xr[d] * scales[r];
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
    switch (kern_isa_active()) {
    case KERN_ISA_AVX2: i8_rows_avx2(x, scales + slot, nr, D, buf); break;
    default: i8_rows_portable(x, scales + slot, nr, D, buf); break;
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

#ifndef KV_AHEAD
#define KV_AHEAD 8
#endif
// Asks for the rows of the run at p (< p1) into L2 and their int8 scales into L1; returns the run's length. A run
// is one block's rows of one KV head (16 positions: 1–4 KB), and a head's consecutive blocks lie kv_heads runs
// apart in the pool, so each run starts a new page and the hardware prefetcher, which stops at pages, begins cold
// on each: without asking ahead, decode attention over 4096 positions of f32 K/V read 12–14 GB/s at ~34 GB/s of
// read bandwidth; 8 runs ahead into L2, 22–23 (4 runs ahead into L1: 12–15; `moe-bench attention`).
static int prefetch_run(int p, int p1, const int32_t *blocks, int block_size, int kv_heads, int kv_head,
                        const void *pool, const float *scales, size_t row_bytes) {
    size_t slot;
    int nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);
    const char *a = (const char *)pool + slot * row_bytes;
    for (size_t o = 0; o < (size_t)nr * row_bytes; o += 64) _mm_prefetch(a + o, _MM_HINT_T1);
    if (scales) _mm_prefetch((const char *)(scales + slot), _MM_HINT_T0);
    return nr;
}

// The loops over a group's runs: scores of every run, the softmax, then the weighted values of every run, asking
// for rows KV_AHEAD runs ahead of each pass. `dots` and `axpys` take the run's rows as stored (AVX-512) or as f32
// (the other paths convert them into buf first).
#define ATTEND_RUNS(DOTS, AXPYS)                                                                                   \
    do {                                                                                                           \
        const size_t row_bytes = kv_row_bytes(kvtype, D);                                                          \
        const float *ks = kvtype == KERN_KV_I8 ? kscale : NULL, *vs = kvtype == KERN_KV_I8 ? vscale : NULL;      \
        size_t slot;                                                                                               \
        int ahead = p0;                                                                                            \
        for (int k = 0; k < KV_AHEAD && ahead < p1; k++)                                                          \
            ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, kpool, ks, row_bytes);         \
        for (int p = p0, nr; p < p1; p += nr) {                                                                   \
            nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);                                      \
            if (ahead < p1) ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, kpool, ks, row_bytes); \
            DOTS;                                                                                                  \
        }                                                                                                          \
        for (int g = 0; g < nq; g++) kern_softmax_scaled_f32(scores + (size_t)g * n, (size_t)n, scale);          \
        ahead = p0;                                                                                                \
        for (int k = 0; k < KV_AHEAD && ahead < p1; k++)                                                          \
            ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, vpool, vs, row_bytes);         \
        for (int p = p0, nr; p < p1; p += nr) {                                                                   \
            nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);                                      \
            if (ahead < p1) ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, vpool, vs, row_bytes); \
            AXPYS;                                                                                                 \
        }                                                                                                          \
    } while (0)

AI512 void attend512(const int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                     const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                     int D, int kv_head, int p0, int p1, float scale, float *scores, float *out, size_t out_stride) {
    const int n = p1 - p0;
    ATTEND_RUNS(dots512(kvtype, q, q_stride, nq, (const char *)kpool + slot * row_bytes, ks ? ks + slot : NULL, nr, D,
                        scores + (p - p0), (size_t)n),
                axpys512(kvtype, out, out_stride, nq, scores + (p - p0), (size_t)n,
                         (const char *)vpool + slot * row_bytes, vs ? vs + slot : NULL, nr, D));
}

A512 static void attend_avx512(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool,
                               const void *vpool, const float *kscale, const float *vscale, const int32_t *blocks,
                               int block_size, int kv_heads, int D, int kv_head, int p0, int p1, float scale,
                               float *scores, float *out, size_t out_stride) {
    switch (kvtype) {     // one copy of the loops per storage type, its conversion inlined
#define CASE(T) case T: attend512(T, q, q_stride, nq, kpool, vpool, kscale, vscale, blocks, block_size, kv_heads, D, \
                                  kv_head, p0, p1, scale, scores, out, out_stride); break;
    CASE(KERN_KV_F32) CASE(KERN_KV_F16) CASE(KERN_KV_I8)
#undef CASE
    }
}

void kern_attend_group(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                       const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                       int head_dim, int kv_head, int p0, int p1, float scale, float *scores, float *out,
                       size_t out_stride) {
    int D = head_dim, n = p1 - p0;
    for (int g = 0; g < nq; g++)
        for (int d = 0; d < D; d++) out[(size_t)g * out_stride + d] = 0;
    if (n <= 0 || nq <= 0) return;
    if (kern_isa_active() == KERN_ISA_AVX512) {
        attend_avx512(kvtype, q, q_stride, nq, kpool, vpool, kscale, vscale, blocks, block_size, kv_heads, D, kv_head,
                      p0, p1, scale, scores, out, out_stride);
        return;
    }
    dots_fn dots = kern_isa_active() == KERN_ISA_AVX2 ? dots_avx2 : dots_portable;
    axpys_fn axpys = kern_isa_active() == KERN_ISA_AVX2 ? axpys_avx2 : axpys_portable;
    float buf[RUN * D];
    ATTEND_RUNS(dots(q, q_stride, nq, rows_f32(kvtype, kpool, kscale, slot, nr, D, buf), nr, D, scores + (p - p0), (size_t)n),
                axpys(out, out_stride, nq, scores + (p - p0), (size_t)n, rows_f32(kvtype, vpool, vscale, slot, nr, D, buf), nr, D));
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
