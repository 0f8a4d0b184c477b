// Scaled dot-product attention over a paged KV cache, for the query heads that share one KV head (a GQA group).
// A cache may hold no values (vpool NULL): its keys are then also its values (multi-head latent attention's rows).
// Each key and value row is read once per group, not once per query head, and rows are taken a run at a time
// (contiguous positions of one block, at most RUN), so the block lookup is per run and the inner loops are plain
// vector code. Keys are stored transposed within each (block, head): a run's scores are then vectors of positions,
// multiply-added over the head's dimensions with each query value broadcast, with no horizontal sums (row-major
// keys took one reduction per four scores, as many instructions as the multiply-adds). Values stay rows. int8
// rows carry one f32 scale per (token, head) in a parallel array with the same slot layout. With AVX-512, f16 and
// int8 keys and values are converted in registers as they are multiplied; the AVX2 and portable paths convert a
// run to f32 first. The loops are written out per instruction set: one body left to the compiler's vectoriser
// was measured 15–30% slower (it reloads the output per row and sums each dot product on its own).
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>

#define RUN 16

// res[g·rs + r] = Σ_d q[g·qs + d] · kt[d·RUN + r] for g < nq, r < nr: a run's keys as f32, transposed and padded
// to RUN positions (kt_run_f32).
typedef void (*dots_fn)(const float *q, size_t qs, int nq, const float *kt, int nr, int D, float *res, size_t rs);
// out[g·os + d] += Σ_r w[g·ws + r] · v[r·D + d] for g < nq, d < D.
typedef void (*axpys_fn)(float *out, size_t os, int nq, const float *w, size_t ws, const float *v, int nr, int D);

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

static inline size_t kv_elem(int kind) { return kind == KERN_KV_F32 ? 4 : kind == KERN_KV_F16 ? 2 : 1; }
static inline size_t kv_row_bytes(int kind, int D) { return (size_t)D * kv_elem(kind); }

// Positions s..s+15 (m: which exist) of key dimension d of a (block, head) group stored transposed at kt (block
// size bs), as f32; int8 unscaled.
AI512 __m512 kt16(int kind, const void *kt, int bs, int s, int d, __mmask16 m) {
    return kv16(kind, kt, d * bs + s, m);
}

// res[g·rs + r] = s_r · Σ_d q_g[d] · key_r[d] for g < nq, r < nr (s_r: an int8 row's scale, else 1), the run's nr ≤
// 16 keys at positions s.. of a transposed group. Each score is a lane: its even and its odd dimensions summed in
// two chains of multiply-adds (eight chains in flight over four heads), then added and scaled, the same whichever
// heads and positions it is computed beside.
AI512 void dots512(int kind, const float *q, size_t qs, int nq, const void *kt, int bs, int s, const float *ks, int nr,
                   int D, float *res, size_t rs) {
    const __mmask16 m = (__mmask16)((1u << nr) - 1);
    const __m512 sc = kind == KERN_KV_I8 ? _mm512_maskz_loadu_ps(m, ks) : _mm512_set1_ps(1);
    int g = 0;
    for (; g + 4 <= nq; g += 4) {
        const float *q0 = q + (size_t)g * qs, *q1 = q0 + qs, *q2 = q1 + qs, *q3 = q2 + qs;
        __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
        int d = 0;
        for (; d + 2 <= D; d += 2) {
            __m512 y = kt16(kind, kt, bs, s, d, m);
            e0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[d]), y, e0); e1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[d]), y, e1);
            e2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[d]), y, e2); e3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[d]), y, e3);
            y = kt16(kind, kt, bs, s, d + 1, m);
            o0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[d + 1]), y, o0); o1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[d + 1]), y, o1);
            o2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[d + 1]), y, o2); o3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[d + 1]), y, o3);
        }
        if (d < D) {
            __m512 y = kt16(kind, kt, bs, s, d, m);
            e0 = _mm512_fmadd_ps(_mm512_set1_ps(q0[d]), y, e0); e1 = _mm512_fmadd_ps(_mm512_set1_ps(q1[d]), y, e1);
            e2 = _mm512_fmadd_ps(_mm512_set1_ps(q2[d]), y, e2); e3 = _mm512_fmadd_ps(_mm512_set1_ps(q3[d]), y, e3);
        }
        float *o = res + (size_t)g * rs;
        _mm512_mask_storeu_ps(o, m, _mm512_mul_ps(_mm512_add_ps(e0, o0), sc));
        _mm512_mask_storeu_ps(o + rs, m, _mm512_mul_ps(_mm512_add_ps(e1, o1), sc));
        _mm512_mask_storeu_ps(o + 2 * rs, m, _mm512_mul_ps(_mm512_add_ps(e2, o2), sc));
        _mm512_mask_storeu_ps(o + 3 * rs, m, _mm512_mul_ps(_mm512_add_ps(e3, o3), sc));
    }
    for (; g < nq; g++) {
        const float *qg = q + (size_t)g * qs;
        __m512 e = _mm512_setzero_ps(), od = e;
        int d = 0;
        for (; d + 2 <= D; d += 2) {
            e = _mm512_fmadd_ps(_mm512_set1_ps(qg[d]), kt16(kind, kt, bs, s, d, m), e);
            od = _mm512_fmadd_ps(_mm512_set1_ps(qg[d + 1]), kt16(kind, kt, bs, s, d + 1, m), od);
        }
        if (d < D) e = _mm512_fmadd_ps(_mm512_set1_ps(qg[d]), kt16(kind, kt, bs, s, d, m), e);
        _mm512_mask_storeu_ps(res + (size_t)g * rs, m, _mm512_mul_ps(_mm512_add_ps(e, od), sc));
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

// Per head, the even and the odd dimensions in two chains per 8 positions, then added (as the AVX-512 path does).
__attribute__((target("avx2,fma")))
static void dots_avx2(const float *q, size_t qs, int nq, const float *kt, int nr, int D, float *res, size_t rs) {
    for (int g = 0; g < nq; g++) {
        const float *qg = q + (size_t)g * qs;
        __m256 e0 = _mm256_setzero_ps(), e1 = e0, o0 = e0, o1 = e0;
        int d = 0;
        for (; d + 2 <= D; d += 2) {
            const __m256 a = _mm256_set1_ps(qg[d]), b = _mm256_set1_ps(qg[d + 1]);
            const float *k0 = kt + (size_t)d * RUN, *k1 = k0 + RUN;
            e0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(k0), e0);
            e1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(k0 + 8), e1);
            o0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k1), o0);
            o1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(k1 + 8), o1);
        }
        if (d < D) {
            const __m256 a = _mm256_set1_ps(qg[d]);
            e0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(kt + (size_t)d * RUN), e0);
            e1 = _mm256_fmadd_ps(a, _mm256_loadu_ps(kt + (size_t)d * RUN + 8), e1);
        }
        float t[RUN];
        _mm256_storeu_ps(t, _mm256_add_ps(e0, o0));
        _mm256_storeu_ps(t + 8, _mm256_add_ps(e1, o1));
        for (int r = 0; r < nr; r++) res[(size_t)g * rs + r] = t[r];
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

static void dots_portable(const float *q, size_t qs, int nq, const float *kt, int nr, int D, float *res, size_t rs) {
    for (int g = 0; g < nq; g++)
        for (int r = 0; r < nr; r++) {
            const float *qg = q + (size_t)g * qs;
            float e = 0, o = 0;
            for (int d = 0; d < D; d++) {
                if (d % 2 == 0) e += qg[d] * kt[(size_t)d * RUN + r]; else o += qg[d] * kt[(size_t)d * RUN + r];
            }
            res[(size_t)g * rs + r] = e + o;
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

// A run's keys (positions s.. s+nr−1 of a transposed group at kt, block size bs) as f32 in buf[d·RUN + r], int8
// values times their row's scale, positions nr.. RUN−1 zero.
static const float *kt_run_f32(int kind, const void *kt, int bs, int s, const float *ks, int nr, int D, float *buf) {
    for (int d = 0; d < D; d++) {
        float *o = buf + (size_t)d * RUN;
        const size_t at = (size_t)d * bs + s;
        if (kind == KERN_KV_F32) for (int r = 0; r < nr; r++) o[r] = ((const float *)kt)[at + r];
        else if (kind == KERN_KV_F16) kern_f16_to_f32((const uint16_t *)kt + at, o, (size_t)nr);
        else for (int r = 0; r < nr; r++) o[r] = (float)((const int8_t *)kt)[at + r] * ks[r];
        for (int r = nr; r < RUN; r++) o[r] = 0;
    }
    return buf;
}

// The values of a cache whose keys are its values (multi-head latent attention's rows): a run's keys (positions
// s.. s+nr−1 of a transposed group at kt, block size bs) as rows of f32, buf[r·D + d], int8 values times their
// row's scale.
static const float *kt_rows_f32(int kind, const void *kt, int bs, int s, const float *ks, int nr, int D, float *buf) {
    float x[RUN];
    for (int d = 0; d < D; d++) {
        const size_t at = (size_t)d * bs + s;
        if (kind == KERN_KV_F32) for (int r = 0; r < nr; r++) x[r] = ((const float *)kt)[at + r];
        else if (kind == KERN_KV_F16) kern_f16_to_f32((const uint16_t *)kt + at, x, (size_t)nr);
        else for (int r = 0; r < nr; r++) x[r] = (float)((const int8_t *)kt)[at + r] * ks[r];
        for (int r = 0; r < nr; r++) buf[(size_t)r * D + d] = x[r];
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

#define KV_AHEAD 8
// Asks for the run at p (< p1) into L2 and its int8 scales into L1; returns the run's length. `transposed`: keys,
// the run's positions of every dimension of its (block, head) group (the whole group, 1–4 KB, for blocks of up to
// RUN positions); else value rows. A run's group is contiguous, but a head's consecutive blocks lie kv_heads groups
// apart in the pool, so each run starts a new page and the hardware prefetcher, which stops at pages, begins cold
// on each: without asking ahead, decode attention over 4096 positions of f32 K/V read 12–14 GB/s at ~34 GB/s of
// read bandwidth; 8 runs ahead into L2, 22–23 (4 runs ahead into L1: 12–15; `moe-bench attention`).
static int prefetch_run(int p, int p1, const int32_t *blocks, int block_size, int kv_heads, int kv_head,
                        const void *pool, const float *scales, size_t elem, int D, int transposed) {
    size_t slot;
    const int nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot), s = p % block_size;
    const char *base = (const char *)pool;
    if (!transposed || block_size <= RUN) {
        // Rows [slot, slot + nr); for keys the group's D × block_size values.
        const size_t from = transposed ? (slot - s) * D * elem : slot * D * elem;
        const size_t bytes = transposed ? (size_t)D * block_size * elem : (size_t)nr * D * elem;
        for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(base + from + o, _MM_HINT_T1);
    } else {
        for (int d = 0; d < D; d++) _mm_prefetch(base + ((slot - s) * D + (size_t)d * block_size + s) * elem, _MM_HINT_T1);
    }
    if (scales) _mm_prefetch((const char *)(scales + slot), _MM_HINT_T0);
    return nr;
}

// The loops over a group's runs: scores of every run, the softmax, then the weighted values of every run, asking
// for runs KV_AHEAD ahead of each pass. In DOTS, `kt` is the run's transposed key group and `s` the run's first
// position in it; in AXPYS, `vrow` is the run's first value row.
#define ATTEND_RUNS(DOTS, AXPYS)                                                                                   \
    do {                                                                                                           \
        const size_t elem = kv_elem(kvtype);                                                                       \
        const float *ks = kvtype == KERN_KV_I8 ? kscale : NULL, *vs = kvtype == KERN_KV_I8 ? vscale : NULL;      \
        size_t slot;                                                                                               \
        int ahead = p0;                                                                                            \
        for (int k = 0; k < KV_AHEAD && ahead < p1; k++)                                                          \
            ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, kpool, ks, elem, D, 1);        \
        for (int p = p0, nr; p < p1; p += nr) {                                                                   \
            nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);                                      \
            if (ahead < p1) ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, kpool, ks, elem, D, 1); \
            const int s = p % block_size;                                                                          \
            const void *kt = (const char *)kpool + (slot - s) * D * elem;                                          \
            DOTS;                                                                                                  \
        }                                                                                                          \
        for (int g = 0; g < nq; g++)                                                                             \
            kern_softmax_sink_f32(scores + (size_t)g * n, (size_t)n, scale, sinks ? sinks[g] : -INFINITY);        \
        /* Without a value pool the keys are the values (vpool NULL): read them again, transposed. */            \
        const void *vp = vpool ? vpool : kpool;                                                                   \
        const float *vsc = vpool ? vs : ks;                                                                       \
        ahead = p0;                                                                                                \
        for (int k = 0; k < KV_AHEAD && ahead < p1; k++)                                                          \
            ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, vp, vsc, elem, D, !vpool);     \
        for (int p = p0, nr; p < p1; p += nr) {                                                                   \
            nr = run_at(p, p1, blocks, block_size, kv_heads, kv_head, &slot);                                      \
            if (ahead < p1) ahead += prefetch_run(ahead, p1, blocks, block_size, kv_heads, kv_head, vp, vsc, elem, D, !vpool); \
            const int s = p % block_size;                                                                          \
            const void *kt = (const char *)kpool + (slot - s) * D * elem;                                          \
            const void *vrow = vpool ? (const char *)vpool + slot * D * elem : NULL;                               \
            (void)kt;                                                                                              \
            AXPYS;                                                                                                 \
        }                                                                                                          \
    } while (0)

AI512 void attend512(const int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                     const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                     int D, int kv_head, int p0, int p1, float scale, const float *sinks, float *scores, float *out,
                     size_t out_stride) {
    const int n = p1 - p0;
    float rows[vpool ? 1 : RUN * D];
    ATTEND_RUNS(dots512(kvtype, q, q_stride, nq, kt, block_size, s, ks ? ks + slot : NULL, nr, D, scores + (p - p0), (size_t)n),
                vpool ? axpys512(kvtype, out, out_stride, nq, scores + (p - p0), (size_t)n, vrow, vs ? vs + slot : NULL, nr, D)
                      : axpys512(KERN_KV_F32, out, out_stride, nq, scores + (p - p0), (size_t)n,
                                 kt_rows_f32(kvtype, kt, block_size, s, ks ? ks + slot : NULL, nr, D, rows), NULL, nr, D));
}

A512 static void attend_avx512(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool,
                               const void *vpool, const float *kscale, const float *vscale, const int32_t *blocks,
                               int block_size, int kv_heads, int D, int kv_head, int p0, int p1, float scale,
                               const float *sinks, float *scores, float *out, size_t out_stride) {
    switch (kvtype) {     // one copy of the loops per storage type, its conversion inlined
#define CASE(T) case T: attend512(T, q, q_stride, nq, kpool, vpool, kscale, vscale, blocks, block_size, kv_heads, D, \
                                  kv_head, p0, p1, scale, sinks, scores, out, out_stride); break;
    CASE(KERN_KV_F32) CASE(KERN_KV_F16) CASE(KERN_KV_I8)
#undef CASE
    }
}

void kern_attend_group(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                       const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                       int head_dim, int kv_head, int p0, int p1, float scale, const float *sinks, float *scores,
                       float *out, size_t out_stride) {
    int D = head_dim, n = p1 - p0;
    for (int g = 0; g < nq; g++)
        for (int d = 0; d < D; d++) out[(size_t)g * out_stride + d] = 0;
    if (n <= 0 || nq <= 0) return;
    if (kern_isa_active() == KERN_ISA_AVX512) {
        attend_avx512(kvtype, q, q_stride, nq, kpool, vpool, kscale, vscale, blocks, block_size, kv_heads, D, kv_head,
                      p0, p1, scale, sinks, scores, out, out_stride);
        return;
    }
    dots_fn dots = kern_isa_active() == KERN_ISA_AVX2 ? dots_avx2 : dots_portable;
    axpys_fn axpys = kern_isa_active() == KERN_ISA_AVX2 ? axpys_avx2 : axpys_portable;
    float buf[RUN * D];
    ATTEND_RUNS(dots(q, q_stride, nq, kt_run_f32(kvtype, kt, block_size, s, ks ? ks + slot : NULL, nr, D, buf), nr, D,
                     scores + (p - p0), (size_t)n),
                axpys(out, out_stride, nq, scores + (p - p0), (size_t)n,
                      vpool ? rows_f32(kvtype, vpool, vscale, slot, nr, D, buf)
                            : kt_rows_f32(kvtype, kt, block_size, s, ks ? ks + slot : NULL, nr, D, buf), nr, D));
}

void kern_kv_store(int kvtype, const float *src, void *pool, float *scales, size_t slot, int head_dim, int block_size) {
    // Where value d goes: row `slot`, or column s of the transposed (block, head) group that holds it.
    const size_t s = block_size > 0 ? slot % (size_t)block_size : 0;
    const size_t base = block_size > 0 ? (slot - s) * head_dim + s : slot * head_dim;
    const size_t step = block_size > 0 ? (size_t)block_size : 1;
    if (kvtype == KERN_KV_F32) {
        for (int i = 0; i < head_dim; i++) ((float *)pool)[base + i * step] = src[i];
    } else if (kvtype == KERN_KV_F16) {
        uint16_t h[head_dim];
        kern_f32_to_f16(src, h, head_dim);
        for (int i = 0; i < head_dim; i++) ((uint16_t *)pool)[base + i * step] = h[i];
    } else {
        float amax = 0;
        for (int i = 0; i < head_dim; i++) amax = fmaxf(amax, fabsf(src[i]));
        float sc = amax / 127.0f, inv = sc > 0 ? 1.0f / sc : 0;
        for (int i = 0; i < head_dim; i++) {
            float v = roundf(src[i] * inv);
            ((int8_t *)pool)[base + i * step] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
        }
        scales[slot] = sc;
    }
}
