// f32 / f16 / bf16 weights: rows widened to f32 in registers and multiplied with f32 FMAs (AVX-512, AVX2 or portable
// C), and draft models' bf16 rows by bf16-rounded activations with vdpbf16ps.
#include "products.h"


#define ELEM(FMT) ((FMT) == KERN_F32 ? 4 : 2)

__attribute__((target("avx512f,avx512bw,avx512vl")))
AI __m512 widen16(int format, const void *p) {
    if (format == KERN_F32) {
        // Two 32-byte loads, not one of 64: on Zen 4 (512-bit operations run as two 256-bit halves) 64-byte loads
        // streamed less from memory in fast minutes. f32 products of one input row at 55–67 GB/s ran at 0.84 of
        // the read probe with 64-byte loads, 0.88 with these and 0.90 with the whole product in 256-bit vectors
        // (383 interleaved rounds; 0.86 against 0.92 in another 369). f16 and bf16 rows are read 32 bytes at a time
        // already. The empty asm keeps the compiler from merging the two loads back into one.
        __m256 lo = _mm256_loadu_ps((const float *)p), hi = _mm256_loadu_ps((const float *)p + 8);
        __asm__("" : "+x"(lo));
        return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
    }
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (format == KERN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
AI __m512 widen16_tail(int format, const void *p, __mmask16 m) {
    if (format == KERN_F32) return _mm512_maskz_loadu_ps(m, (const float *)p);
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    if (format == KERN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

typedef struct { const char *W; size_t rowBytes, cols; const float *X; size_t ldx; float *Y; size_t ldy; int acc; } h_ops;

__attribute__((target("avx512f,avx512bw,avx512vl")))
AI void h_block512(const h_ops o, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    __m512 acc[4][4];
    for (int i = 0; i < NR; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    const char *wrow[4];
    const float *xrow[4];
    for (int i = 0; i < NR; i++) wrow[i] = o.W + rows[i] * o.rowBytes;
    for (int j = 0; j < NT; j++) xrow[j] = o.X + (t0 + j) * o.ldx;
    // With several input rows, each pass over these rows asks for the next row of each stream (the next block's)
    // into L2: the block's arithmetic leaves the loads too sparse for the hardware prefetcher to keep memory busy (at
    // 4–8 input rows f32 and f16 products read 19–31 GB/s; with it, 26–39; in cache they run at the FMA rate).
    // Asking in the first pass only was slower at 8 rows (f32 26–28 GB/s against 31–38). One input row does not
    // ask: its loop is all loads.
    const int prefetch = NT > 1;
    size_t full = o.cols & ~(size_t)15;
    for (size_t k = 0; k < full; k += 16) {
        __m512 w[4];
        if (prefetch && ((k * ELEM(FMT)) & 63) == 0)
            for (int i = 0; i < NR; i++) _mm_prefetch(wrow[i] + o.rowBytes + k * ELEM(FMT), _MM_HINT_T1);
        for (int i = 0; i < NR; i++) w[i] = widen16(FMT, wrow[i] + k * ELEM(FMT));
        for (int j = 0; j < NT; j++) {
            __m512 x = _mm512_loadu_ps(xrow[j] + k);
            for (int i = 0; i < NR; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    if (full < o.cols) {
        __mmask16 m = (__mmask16)((1u << (o.cols - full)) - 1);
        __m512 w[4];
        for (int i = 0; i < NR; i++) w[i] = widen16_tail(FMT, wrow[i] + full * ELEM(FMT), m);
        for (int j = 0; j < NT; j++) {
            __m512 x = _mm512_maskz_loadu_ps(m, xrow[j] + full);
            for (int i = 0; i < NR; i++) acc[i][j] = _mm512_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < NR; i++) put(o.Y + (t0 + j) * o.ldy + rows[i], o.acc, _mm512_reduce_add_ps(acc[i][j]));
}

__attribute__((target(AVX2_TARGET)))
AI __m256 widen8(int format, const void *p) {
    if (format == KERN_F32) return _mm256_loadu_ps((const float *)p);
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (format == KERN_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static float h_value(int format, const char *row, size_t k) {
    float f;
    if (format == KERN_F32) { memcpy(&f, row + 4 * k, 4); return f; }
    uint16_t h;
    memcpy(&h, row + 2 * k, 2);
    if (format == KERN_BF16) {
        uint32_t u = (uint32_t)h << 16;
        memcpy(&f, &u, 4);
    } else kern_f16_to_f32(&h, &f, 1);
    return f;
}

// Weight rows wrow[0..NR) (outputs rows[0..NR)) × NT inputs from t0.
__attribute__((target(AVX2_TARGET)))
AI void h_rows256(const h_ops o, const char *const *wrow, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    __m256 acc[4][2];
    for (int i = 0; i < NR; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    size_t full = o.cols & ~(size_t)7;
    for (size_t k = 0; k < full; k += 8) {
        __m256 w[4];
        for (int i = 0; i < NR; i++) w[i] = widen8(FMT, wrow[i] + k * ELEM(FMT));
        for (int j = 0; j < NT; j++) {
            __m256 x = _mm256_loadu_ps(o.X + (t0 + j) * o.ldx + k);
            for (int i = 0; i < NR; i++) acc[i][j] = _mm256_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < NR; i++) {
            float s = kern_hsum8(acc[i][j]);
            for (size_t k = full; k < o.cols; k++) s += h_value(FMT, wrow[i], k) * o.X[(t0 + j) * o.ldx + k];
            put(o.Y + (t0 + j) * o.ldy + rows[i], o.acc, s);
        }
}

__attribute__((target(AVX2_TARGET)))
AI void h_block256(const h_ops o, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    const char *wrow[4];
    for (int i = 0; i < NR; i++) wrow[i] = o.W + rows[i] * o.rowBytes;
    h_rows256(o, wrow, rows, t0, FMT, NR, NT);
}

// bf16 rows with a prefill's inputs (a tile of 64 or more): each block of four rows is widened to f32 once per tile,
// into a buffer that stays in L1, and multiplied as f32 rows, where each pass of two inputs widened it again (with
// AVX2 a zero-extension and a shift per 8 values, on the FMAs' pipes). The values and every operation on them are
// those of the bf16 path, so results are the same bit for bit. In cache (Zen 3, six interleaved runs): 1.20× at
// 64 and 128 inputs, level at 32, 0.74–0.86× at 8–16 (so verification keeps the bf16 path); f16 (one vcvtph2ps per
// 8 values) 0.89–1.03× at 64–128, so it keeps its own.
#define H_WIDE_MAX_COLS 2048
__attribute__((target(AVX2_TARGET)))
static void h_range256_widened(const h_ctx *c, size_t r0, size_t r1, const int FMT) {
    const h_ops o = {(const char *)c->W, c->ld * ELEM(FMT), c->cols, c->X, c->ldx, c->Y, c->ldy, c->acc};
    const h_ops wide = {NULL, c->cols * 4, c->cols, c->X, c->ldx, c->Y, c->ldy, c->acc};
    float buf[4 * H_WIDE_MAX_COLS] __attribute__((aligned(64)));
    const size_t T = c->T, q = (r1 - r0) / 4, cols = c->cols;
    for (size_t tt = 0; tt < T; tt += T_TILE) {
        size_t te = tt + T_TILE < T ? tt + T_TILE : T;
        for (size_t b = 0; b < q; b++) {
            const size_t rows[4] = {r0 + b, r0 + q + b, r0 + 2 * q + b, r0 + 3 * q + b};
            const char *wrow[4];
            for (int i = 0; i < 4; i++) {
                float *dst = buf + i * cols;
                const char *src = o.W + rows[i] * o.rowBytes;
                size_t k = 0;
                for (; k + 8 <= cols; k += 8) _mm256_storeu_ps(dst + k, widen8(FMT, src + 2 * k));
                for (; k < cols; k++) dst[k] = h_value(FMT, src, k);
                wrow[i] = (const char *)dst;
            }
            size_t t = tt;
            for (; t + 2 <= te; t += 2) h_rows256(wide, wrow, rows, t, KERN_F32, 4, 2);
            if (t < te) h_rows256(wide, wrow, rows, t, KERN_F32, 4, 1);
        }
        for (size_t r = r0 + 4 * q; r < r1; r++)
            for (size_t t = tt; t < te; t++) h_block256(o, &r, t, FMT, 1, 1);
    }
}

#define H_RANGE(NAME, TARGET, BLOCK, MAXT)                                                                         \
    __attribute__((target(TARGET)))                                                                                \
    AI void NAME##_body(const h_ctx *c, size_t r0, size_t r1, const int FMT) {                                     \
        const h_ops o = {(const char *)c->W, c->ld * ELEM(FMT), c->cols, c->X, c->ldx, c->Y, c->ldy, c->acc};      \
        const size_t T = c->T;                                                                                     \
        ROW_BLOCKS(BLOCK, MAXT)                                                                                    \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME##_f32(const h_ctx *c, size_t r0, size_t r1) {                \
        NAME##_body(c, r0, r1, KERN_F32);                                                                          \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME##_f16(const h_ctx *c, size_t r0, size_t r1) {                \
        NAME##_body(c, r0, r1, KERN_F16);                                                                          \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME##_bf16(const h_ctx *c, size_t r0, size_t r1) {               \
        NAME##_body(c, r0, r1, KERN_BF16);                                                                         \
    }

H_RANGE(h_range512, "avx512f,avx512bw,avx512vl", h_block512, 4)
H_RANGE(h_range256, AVX2_TARGET, h_block256, 2)

static void h_range(const h_ctx *c, size_t r0, size_t r1) {
    switch (kern_isa_active()) {
    case KERN_ISA_AVX512:
        if (c->format == KERN_F32) h_range512_f32(c, r0, r1);
        else if (c->format == KERN_F16) h_range512_f16(c, r0, r1);
        else h_range512_bf16(c, r0, r1);
        return;
    case KERN_ISA_AVX2:
        if (c->format == KERN_BF16 && c->T >= T_TILE && c->cols <= H_WIDE_MAX_COLS) h_range256_widened(c, r0, r1, KERN_BF16);
        else if (c->format == KERN_F32) h_range256_f32(c, r0, r1);
        else if (c->format == KERN_F16) h_range256_f16(c, r0, r1);
        else h_range256_bf16(c, r0, r1);
        return;
    default:
        for (size_t r = r0; r < r1; r++)
            for (size_t t = 0; t < c->T; t++) {
                const char *row = (const char *)c->W + r * c->ld * ELEM(c->format);
                float s = 0;
                for (size_t k = 0; k < c->cols; k++) s += h_value(c->format, row, k) * c->X[t * c->ldx + k];
                put(c->Y + t * c->ldy + r, c->acc, s);
            }
    }
}

void kern_h_task(void *p, size_t r0, size_t r1) { h_range((const h_ctx *)p, r0, r1); }

// ---- bf16 weights × bf16 activations with AVX512_BF16 (vdpbf16ps), for draft models ----------------------------
// Under kern_bf16_activations(1) (draft models), bf16 products multiply activations rounded to bf16 (to nearest,
// ties to even) by the stored weights with vdpbf16ps: 32 pairs per instruction, where the default widens each weight
// to f32 (a zero-extend and a shift per 16 values) for f32 FMAs. One core, weights in L2, 1 / 2 / 4 / 16 / 64 input
// rows: 2.1 / 1.5 / 1.8 / 1.85 / 1.76× the default's rate (a draft at batch 8+ is bound by arithmetic). The products of bf16 pairs
// are exact in f32, so each step is an exact multiply and one rounded add, as an FMA; the instruction flushes
// denormals. Tried as the default too, with each activation split into a bf16 hi and lo (16 significant bits, two
// instructions): 1.7× the in-L2 rate at one input row, but 2–4% slower from three rows on (prefill of 512 tokens
// 2.4% slower, four interleaved pairs) and no decode gain measurable at ~35 GB/s; not kept.

#define BF16_TARGET "avx512f,avx512bw,avx512vl,avx512bf16"

AVX512_EXTENSION(has_bf16_dot, "avx512bf16")

int kern_has_bf16_dot(void) { return has_bf16_dot(); }


typedef struct { const char *W; size_t rowBytes, cols; const uint16_t *X2; size_t ldx2; float *Y; size_t ldy; int acc; } bd_ops;

// Expects `FMT` as ROW_BLOCKS passes it (bf16 only: unused).
__attribute__((target(BF16_TARGET)))
AI void bd_block(const bd_ops o, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    (void)FMT;
    __m512 acc[4][4];
    for (int i = 0; i < NR; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    const char *wrow[4];
    const uint16_t *x2[4];
    for (int i = 0; i < NR; i++) wrow[i] = o.W + rows[i] * o.rowBytes;
    for (int j = 0; j < NT; j++) x2[j] = o.X2 + (t0 + j) * o.ldx2;
    const int prefetch = NT > 1;             // as h_block512: the next block's rows into L2
    size_t full = o.cols & ~(size_t)31;
    for (size_t k = 0; k < full; k += 32) {
        __m512bh w[4];
        if (prefetch)
            for (int i = 0; i < NR; i++) _mm_prefetch(wrow[i] + o.rowBytes + k * 2, _MM_HINT_T1);
        for (int i = 0; i < NR; i++) w[i] = (__m512bh)_mm512_loadu_si512((const void *)(wrow[i] + k * 2));
        for (int j = 0; j < NT; j++) {
            __m512bh x = (__m512bh)_mm512_load_si512((const void *)(x2[j] + k));
            for (int i = 0; i < NR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], w[i], x);
        }
    }
    if (full < o.cols) {
        __mmask32 m = (__mmask32)((1ull << (o.cols - full)) - 1);
        __m512bh w[4];
        for (int i = 0; i < NR; i++) w[i] = (__m512bh)_mm512_maskz_loadu_epi16(m, wrow[i] + full * 2);
        for (int j = 0; j < NT; j++) {
            __m512bh x = (__m512bh)_mm512_load_si512((const void *)(x2[j] + full));   // zero past cols
            for (int i = 0; i < NR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], w[i], x);
        }
    }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < NR; i++) put(o.Y + (t0 + j) * o.ldy + rows[i], o.acc, _mm512_reduce_add_ps(acc[i][j]));
}

__attribute__((target(BF16_TARGET)))
static void bd_range(const bd_ctx *c, size_t r0, size_t r1) {
    const bd_ops o = {(const char *)c->W, c->ld * 2, c->cols, c->X2, c->ldx2, c->Y, c->ldy, c->acc};
    const size_t T = c->T;
    const int FMT = KERN_BF16;
    ROW_BLOCKS(bd_block, 4)
}

void kern_bd_task(void *p, size_t r0, size_t r1) { bd_range((const bd_ctx *)p, r0, r1); }


__attribute__((target(BF16_TARGET)))
void kern_round_bf16_task(void *p, size_t b, size_t e) {
    const round_ctx *r = (const round_ctx *)p;
    size_t padded = (r->cols + 31) & ~(size_t)31;
    for (size_t t = b; t < e; t++) {
        const float *x = r->X + t * r->ldx;
        uint16_t *x2 = r->X2 + t * r->ldx2;
        for (size_t k = 0; k < padded; k += 16) {    // past cols: zeros, so the last step needs no mask
            __mmask16 m = k >= r->cols ? 0 : r->cols - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r->cols - k)) - 1);
            _mm256_store_si256((__m256i *)(x2 + k), (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + k)));
        }
    }
}

static _Thread_local int bf16_round_activations = 0;

int kern_bf16_activations(int on) {
    int prev = bf16_round_activations;
    bf16_round_activations = on;
    return prev;
}


void kern_gemv_f32(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t r0, size_t r1) {
    h_ctx c = {KERN_F32, W, ld, cols, x, cols, 1, y, 0, 0};
    h_range(&c, r0, r1);
}


int kern_bf16_dot_on(void) { return bf16_round_activations && has_bf16_dot(); }
