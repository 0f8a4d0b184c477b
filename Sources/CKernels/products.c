// Y[t, r] = dot(W[r, :], X[t, :]) for weights stored as f32, f16, bf16, int8 or int4, streaming each weight byte from
// memory once per call (decode and verification are bound by those bytes; SGEMM with a few input rows runs far
// below bandwidth, and with a prefill's rows this layout still reaches ~0.9 of its rate).
//
// int8 / int4 (groups of 32 with one f16 scale, layout in grouplayout.h): the activations are rounded on the fly with
// one f32 scale per group of 32, and each 32-value group dot runs in integer lanes, then is scaled by scale_x and
// added times scale_w (one conversion, multiply and multiply-add per span of 16 groups, or per quad of four where a
// row's spans end, laid out so that no shuffle is needed). f16 weight scales, as llama.cpp's q8_0 and q4_0 keep
// them, cost one widening per span and read 2 bytes per group instead of 4: 10% of an int4 row's bytes and 5.6% of
// an int8 row's (int4 decode at ~36 GB/s 237 → 260–272 tok/s). int8
// weights take int16 activations (AVX-512 VNNI: vpdpbusd of the stored v + 128 by the activations' high and low
// bytes; AVX2: vpmaddwd; the same integers): their rounding, 2^-15 of a group's largest value, adds nothing
// measurable to the weights' own error, so int8 stays greedy-identical to f32 on the fixtures. int4 weights take
// int8 activations, as
// llama.cpp's q4_0 × q8_0 does (vpdpbusd, or AVX2 vpmaddubsw + vpmaddwd): one instruction per group instead of two,
// which matters because int4 products do the most arithmetic per byte of weights, and 2^-8 is far below int4's own
// rounding (2^-3).
// f32 / f16 / bf16: rows are loaded (and widened to f32) in registers and multiplied with f32 FMAs; draft models'
// bf16 products use vdpbf16ps on bf16-rounded activations instead (see the bf16 section below).
//
// Converted matrices whose rows are too long for their input and a block of weight rows to share L1 come in column
// panels (kern_panels, Matrix.panelWidth): a product goes panel by panel over its rows, each adding its part to Y,
// so the panel's input columns (4 KB of f32) stay in L1 while its weights stream; over a whole long row they were
// evicted by the weights at every block.
//
// Every (weight row, input row) pair goes through the same operations in the same order whatever the number of input
// rows T and however rows are split over threads, so a token's result does not depend on its batch (speculative
// verification and batched decode stay bit-identical to decoding alone). Weight rows are taken 4 at a time and
// applied to up to 4 inputs while they sit in registers/L1; inputs are tiled by 64 so a prefill's activations stay
// in L2 while the weights stream.
#include "ckernels.h"
#include <immintrin.h>
#include "simd.h"
#include "grouplayout.h"
#include "monotonic.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>

#define AI __attribute__((always_inline)) static inline

// Stores an output, or adds it to what an earlier panel of the same row left there (see kern_panels).
AI void put(float *y, int acc, float v) { *y = acc ? *y + v : v; }
#define T_TILE 64
#define VNNI_TARGET "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
#define AVX2_TARGET "avx2,fma,f16c"

// An AVX-512 extension, checked once, usable while the AVX-512 kernels are active (tests may force narrower paths).
#define AVX512_EXTENSION(NAME, FEATURE)                                                                            \
    static int NAME(void) {                                                                                        \
        static int v = -1;                                                                                         \
        if (v < 0) {                                                                                               \
            __builtin_cpu_init();                                                                                  \
            v = __builtin_cpu_supports(FEATURE) ? 1 : 0;                                                           \
        }                                                                                                          \
        return v && kern_isa_active() >= KERN_ISA_AVX512;                                                          \
    }

AVX512_EXTENSION(has_vnni, "avx512vnni")

size_t kern_format_row_bytes(int format, size_t cols) {
    switch (format) {
    case KERN_Q8: return cols + cols / 32 * 2;
    case KERN_Q4: case KERN_MX4: return cols / 2 + cols / 32 * 2;
    case KERN_Q4Z: return q4z_zero_bytes(cols / 32) + cols / 2 + cols / 32 * 2;
    case KERN_F16: case KERN_BF16: return cols * 2;
    default: return cols * 4;
    }
}

// int8 and int4 rows are read 256 bytes ahead of use (a quad of groups, 2 cache lines of int8 or 1 of int4, at a
// time): at one input row their loops are short enough per byte that the hardware prefetcher alone leaves them
// waiting (int4 with groups in pairs: decode +4%, 6 of 8 A/B pairs; 1024 bytes ahead was slower; with quads 512
// ahead was 0.986×. int8 with quads, as loaded by vpdpbusd: 1.16× at four input rows and 1.00× at one in minutes
// at 60+ GB/s, where without it one row ran at 0.96–0.98×, and 384 or 512 ahead at 0.97× and 0.92×).
#define Q_PREFETCH 256

// ---- int8 / int4 group dots ------------------------------------------------------------------------------------

// Which kernels an int8 / int4 product runs: chosen once per product, since int8 activations are packed for them.
enum { QQ_PORTABLE, QQ_AVX2, QQ_VNNI };

// Activations of an int8 product, 2 · cols bytes per input row (t at Xq + 2t · cols bytes), rounded to int16 per
// group (KERN_Q8_ACT_LEVELS) and held as the path multiplies them:
//   QQ_VNNI: two signed bytes per value, a = 256 · high + low, in the weights' order (grouplayout.h): each 64-value
//     unit of a span or a quad as 64 high bytes then 64 low ones, a tail group's 32 high then 32 low (a block
//     starting at group g at byte 64g). vpdpbusd
//     multiplies the stored v + 128 by each: one instruction per 64 weights and byte, with the weights as loaded
//     (widened to int16 for vpdpwssd they took as many instructions again; in L2, one thread, one input row, 43 →
//     64 GB/s of weights).
//   QQ_AVX2: int16 in the weights' order (vpmaddwd on the weights widened to int16 as stored).
//   QQ_PORTABLE: int16 in value order.
// An int4 product's are int8 in the weights' order, one byte per value, on every path.
typedef struct {
    int format, path;
    const uint8_t *W; const uint16_t *ws;    // weights: rows × rowData bytes, rows × groups f16 scales
    size_t rowData, groups;
    const void *Xq; const float *Xs;         // activations (see above), T × xgroups scales
    const int32_t *Xc;                       // T × xgroups × 8 int32 that start each dot (see lane_sums_q4)
    size_t xcols, xgroups;                   // an input row's values and groups (cols, groups but in a panel)
    size_t T;
    float *Y; size_t ldy; int acc;           // acc: add to Y (panels after the first)
} qq_ctx;

// A tail group g of an int4 weight row as 32 unsigned bytes in value order. Byte j of the group holds value j (low
// nibble) and j+16 (high nibble) as v+8: the 16 bytes go to both halves, the upper half shifted right by 4, then
// masked. Values stay as stored (0..15) — an unsigned operand, as vpdpbusd wants — and the dot starts from −8·Σx.
__attribute__((target(AVX2_TARGET)))
AI __m256i load_q4(const uint8_t *row, size_t g) {
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + g * 16)));
    b = _mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

// 4-bit codes (one per byte) as the unsigned operand a product multiplies: int4's as stored (v + 8), mxfp4's through
// MX4_TWICE + MX4_OFFSET (0…24; a vpshufb per 32 codes).
__attribute__((target(AVX2_TARGET)))
AI __m256i decode4(__m256i codes, const int FMT) {
    if (FMT != KERN_MX4) return codes;
    const __m256i lut = _mm256_add_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)MX4_TWICE)),
                                        _mm256_set1_epi8(MX4_OFFSET));
    return _mm256_shuffle_epi8(lut, codes);
}

// The four f32 scales of a quad's groups, p[0..3], repeated across the vector: lane l gets p[l mod 4], the scale
// of the group the dots leave in lane l (see grouplayout.h). One broadcast from memory, no shuffle. The weights'
// (wq_…) are f16, widened after one 8-byte load.
__attribute__((target(AVX2_TARGET)))
AI __m256 quad_scales8(const float *p) { return _mm256_broadcast_ps((const __m128 *)p); }
__attribute__((target(VNNI_TARGET)))
AI __m512 quad_scales16(const float *p) { return _mm512_broadcast_f32x4(_mm_loadu_ps(p)); }
__attribute__((target(AVX2_TARGET)))
AI __m128 wq_scales4(const uint16_t *p) { return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p)); }
__attribute__((target(AVX2_TARGET)))
AI __m256 wq_quad_scales8(const uint16_t *p) { __m128 s = wq_scales4(p); return _mm256_set_m128(s, s); }
__attribute__((target(VNNI_TARGET)))
AI __m512 wq_quad_scales16(const uint16_t *p) { return _mm512_broadcast_f32x4(wq_scales4(p)); }
// A span's 16 weight scales, lane h for group h.
__attribute__((target(VNNI_TARGET)))
AI __m512 wq_span_scales16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

// The four scales of a quad for the AVX2 int8 dot, whose lane l holds group l/2 (vpmaddwd adds pairs of int16 of
// the layout's 4-value units): p[0], p[0], p[1], p[1], … p[3].
__attribute__((target(AVX2_TARGET)))
AI __m256 pairs_of4(__m128 s) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}
__attribute__((target(AVX2_TARGET)))
AI __m256 quad_scales8_pairs(const float *p) { return pairs_of4(_mm_loadu_ps(p)); }
__attribute__((target(AVX2_TARGET)))
AI __m256 wq_quad_scales8_pairs(const uint16_t *p) { return pairs_of4(wq_scales4(p)); }

// init + 32 (unsigned) × (int8) products, four consecutive ones per int32 lane (lane l: values 4l..4l+3).
// For int4 (0..15) and mxfp4 (0..24) AVX2's maddubs pairs stay far from int16 saturation (2 · 24 · 127 = 6096), so
// both give the same integers.
__attribute__((target(VNNI_TARGET)))
AI __m256i dot8_vnni(__m256i init, __m256i w, __m256i x) { return _mm256_dpbusd_epi32(init, w, x); }
__attribute__((target(AVX2_TARGET)))
AI __m256i dot8_avx2(__m256i init, __m256i w, __m256i x) {
    return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}

// Σ (v + 128) · a over a quad's 128 int8 weights as stored (w0, w1) and the activations' high and low bytes (h0, h1,
// l0, l1): 256 · the high bytes' dot + the low bytes', from init = −128 · Σa (see lane_sums_q4), which leaves Σ v · a.
__attribute__((target(VNNI_TARGET)))
AI __m512i dot_q8_vnni(__m512i init, __m512i w0, __m512i w1, __m512i h0, __m512i h1, __m512i l0, __m512i l1) {
    __m512i dh = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, h0), w1, h1);
    __m512i dl = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, w0, l0), w1, l1);
    return _mm512_add_epi32(_mm512_slli_epi32(dh, 8), dl);
}

// The operands of one product, copied into locals so the compiler keeps them in registers (a pointer to a context
// would be reloaded around every store).
typedef struct {
    const uint8_t *W; const uint16_t *ws; size_t rowData, groups;
    const void *Xq; const float *Xs; const int32_t *Xc; size_t xcols, xgroups; float *Y; size_t ldy; int acc;
} qq_ops;

// The values and scales of weight rows rows[0..NR).
AI void qq_rows(const qq_ops *o, const size_t *rows, int NR, const uint8_t **wrow, const uint16_t **wsrow) {
    for (int i = 0; i < NR; i++) { wrow[i] = o->W + rows[i] * o->rowData; wsrow[i] = o->ws + rows[i] * o->groups; }
}

// Where input t's int8-product activations start (see qq_ctx).
AI const uint8_t *q8_input(const qq_ops *o, size_t t) { return (const uint8_t *)o->Xq + 2 * t * o->xcols; }

// The dot of a tail group g (value order) of weight row `row` with input t, from its lane sums: 8 int32 lanes.
__attribute__((target(VNNI_TARGET)))
AI __m256i tail_dot_vnni(const qq_ops *o, const uint8_t *row, size_t t, size_t g, const int FMT) {
    __m256i init = _mm256_loadu_si256((const __m256i *)(o->Xc + (t * o->xgroups + g) * 8));
    if (FMT == KERN_Q4) {
        const int8_t *xp = (const int8_t *)o->Xq + t * o->xcols + g * 32;
        return dot8_vnni(init, load_q4(row, g), _mm256_loadu_si256((const __m256i *)xp));
    }
    const uint8_t *hp = q8_input(o, t) + g * 64;
    __m256i w = _mm256_loadu_si256((const __m256i *)(row + g * 32));
    __m256i dh = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, _mm256_loadu_si256((const __m256i *)hp));
    __m256i dl = _mm256_dpbusd_epi32(init, w, _mm256_loadu_si256((const __m256i *)(hp + 32)));
    return _mm256_add_epi32(_mm256_slli_epi32(dh, 8), dl);
}
__attribute__((target(AVX2_TARGET)))
AI __m256i tail_dot_avx2(const qq_ops *o, const uint8_t *row, size_t t, size_t g, const int FMT) {
    __m256i d = _mm256_loadu_si256((const __m256i *)(o->Xc + (t * o->xgroups + g) * 8));
    if (FMT != KERN_Q8) {
        const int8_t *xp = (const int8_t *)o->Xq + t * o->xcols + g * 32;
        if (FMT == KERN_Q4Z) d = _mm256_mullo_epi32(d, _mm256_set1_epi32(row[g - q4z_zero_bytes(o->groups)]));
        return dot8_avx2(d, decode4(load_q4(row, g), FMT), _mm256_loadu_si256((const __m256i *)xp));
    }
    const int16_t *xp = (const int16_t *)q8_input(o, t) + g * 32;
    for (int c = 0; c < 2; c++) {
        __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(row + g * 32 + 16 * c)));
        d = _mm256_add_epi32(d, _mm256_madd_epi16(w, _mm256_loadu_si256((const __m256i *)(xp + 16 * c))));
    }
    return d;
}

// Rows [r0, r1) in blocks of 4 taken a quarter of the range apart (rows b, b+q, b+2q, b+3q): each of the four is
// then a sequential stream through its own pages, which the hardware prefetcher follows (four adjacent rows of
// 1–2 KB would share pages and defeat it). Inputs in tiles of T_TILE, MAXT at a time, the rest of a tile in one
// block of its own width. As single inputs, 7 inputs made four passes over each row block, each widening the weights
// again: at 7 inputs f32 streamed 0.66–0.75 of the read bandwidth and f16 0.54–0.58; in one block of 3, 0.91–0.93 and
// 0.71–0.79 (`moe-bench kernels`, interleaved). Verification runs at k + 1 inputs per sequence. Expects r0, r1, T in
// scope.
#define ROW_BLOCKS(BLOCK, MAXT)                                                                                    \
    size_t q = (r1 - r0) / 4;                                                                                      \
    for (size_t tt = 0; tt < T; tt += T_TILE) {                                                                    \
        size_t te = tt + T_TILE < T ? tt + T_TILE : T;                                                             \
        for (size_t b = 0; b < q; b++) {                                                                           \
            const size_t rows[4] = {r0 + b, r0 + q + b, r0 + 2 * q + b, r0 + 3 * q + b};                           \
            size_t t = tt;                                                                                         \
            for (; t + MAXT <= te; t += MAXT) BLOCK(o, rows, t, FMT, 4, MAXT);                                     \
            if (MAXT > 3 && te - t == 3) BLOCK(o, rows, t, FMT, 4, 3);                                             \
            else if (MAXT > 2 && te - t == 2) BLOCK(o, rows, t, FMT, 4, 2);                                        \
            else for (; t < te; t++) BLOCK(o, rows, t, FMT, 4, 1);                                                 \
        }                                                                                                          \
        for (size_t r = r0 + 4 * q; r < r1; r++)                                                                   \
            for (size_t t = tt; t < te; t++) BLOCK(o, &r, t, FMT, 1, 1);                                           \
    }


// NR weight rows (1 or 4) from row r × NT inputs (1..4) from input t0, with AVX-512 VNNI; FMT a compile-time
// constant. Groups are taken in spans of 16, laid out (grouplayout.h) so that a dot leaves group g + h in int32 lane
// h: one conversion, one multiply by the 16 activation scales and one multiply-add with the 16 weight scales (both
// loaded as stored) serve 16 groups (in cache, against quads alone: int4 +30% at one input row, +40% at four, +33%
// at 64; int8 +30%, +17%, +18%). What is left of a row after its spans goes in quads, a dot leaving group g + h in
// the lanes l with l mod 4 = h, scaled by 16-byte broadcasts of four scales (one int4 quad is one 64-byte load).
// Against groups in pairs in 256-bit vectors (half the instructions per byte), quads had streamed int4 +19% from L2
// and +31% from L3 at one input row, one thread; int8, then still widened to int16 for vpdpwssd, +2% and +14% (its
// vpdpbusd form is described at qq_ctx).
__attribute__((target(VNNI_TARGET)))
AI void qq_block_vnni(const qq_ops o, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    __m512 acc[4][4];
    for (int i = 0; i < NR; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *wrow[4];
    const uint16_t *wsrow[4];
    qq_rows(&o, rows, NR, wrow, wsrow);
    const size_t spans = span_groups(o.groups), quads = quad_groups(o.groups);
    // Spans: int32 dots over a span's 16 groups, one per lane, then one conversion and scaling per span. At one
    // input row the four rows' dots alone would be chains of 8 dependent vpdpbusd per span, so each row's dot is
    // split over two (int4: low and high nibbles) or four (int8: high and low bytes of even and odd units)
    // accumulators (in cache int4 86 → 100 GB/s, int8 129 → 136); with more inputs there are enough independent
    // chains, and not enough registers for more.
    const int SPLIT = NT == 1;
    for (size_t g = 0; g < spans; g += SPAN) {
        __m512i d[4][4], dh[4][4], d2[4], dh2[4];
        for (int i = 0; i < NR; i++) {
            for (int j = 0; j < NT; j++) {
                d[i][j] = _mm512_loadu_si512(o.Xc + ((t0 + j) * o.xgroups + g) * 8);
                dh[i][j] = _mm512_setzero_si512();
            }
            d2[i] = dh2[i] = _mm512_setzero_si512();
        }
        if (FMT == KERN_Q4) {
            // The span's 256 stored bytes as four vectors: vector u's low nibbles hold unit u of every group, its
            // high nibbles unit u + 4.
            for (int u = 0; u < 4; u++) {
                __m512i wl[4], wh[4];
                for (int i = 0; i < NR; i++) {
                    _mm_prefetch((const char *)(wrow[i] + g * 16 + 64 * u + Q_PREFETCH), _MM_HINT_T0);
                    __m512i b = _mm512_loadu_si512(wrow[i] + g * 16 + 64 * u);
                    wl[i] = _mm512_and_si512(b, _mm512_set1_epi8(15));
                    // At one input row the high nibbles are multiplied in place, as 16 · (v + 8), into dh alone,
                    // shifted back once per span (exact: dh is a multiple of 16): one instruction fewer per 64 bytes.
                    wh[i] = SPLIT ? _mm512_and_si512(b, _mm512_set1_epi8((char)0xF0))
                                  : _mm512_and_si512(_mm512_srli_epi16(b, 4), _mm512_set1_epi8(15));
                }
                for (int j = 0; j < NT; j++) {
                    const int8_t *xp = (const int8_t *)o.Xq + (t0 + j) * o.xcols + g * 32 + 64 * u;
                    __m512i xl = _mm512_loadu_si512(xp), xh = _mm512_loadu_si512(xp + 256);
                    for (int i = 0; i < NR; i++) {
                        d[i][j] = _mm512_dpbusd_epi32(d[i][j], wl[i], xl);
                        if (SPLIT) dh[i][j] = _mm512_dpbusd_epi32(dh[i][j], wh[i], xh);
                        else d[i][j] = _mm512_dpbusd_epi32(d[i][j], wh[i], xh);
                    }
                }
            }
        } else {
            // The span's 512 stored bytes as eight vectors, unit u in vector u; the activations' unit u as its 64
            // high bytes, then its 64 low ones.
            // At one input row two units at a time (two lines of each row, as a quad's were; one at a time it
            // streamed 0.93–0.96 of the quads' rate from memory, 0.96–1.08 like this), each into its own dots.
            for (int u = 0; u < 8; u += SPLIT ? 2 : 1) {
                __m512i w[4], w2[4];
                for (int i = 0; i < NR; i++) {
                    _mm_prefetch((const char *)(wrow[i] + g * 32 + 64 * u + Q_PREFETCH), _MM_HINT_T0);
                    w[i] = _mm512_loadu_si512(wrow[i] + g * 32 + 64 * u);
                    if (SPLIT) {
                        _mm_prefetch((const char *)(wrow[i] + g * 32 + 64 * u + Q_PREFETCH + 64), _MM_HINT_T0);
                        w2[i] = _mm512_loadu_si512(wrow[i] + g * 32 + 64 * u + 64);
                    }
                }
                for (int j = 0; j < NT; j++) {
                    const uint8_t *hp = q8_input(&o, t0 + j) + g * 64 + 128 * u;
                    __m512i h = _mm512_loadu_si512(hp), l = _mm512_loadu_si512(hp + 64);
                    for (int i = 0; i < NR; i++) {
                        dh[i][j] = _mm512_dpbusd_epi32(dh[i][j], w[i], h);
                        d[i][j] = _mm512_dpbusd_epi32(d[i][j], w[i], l);
                    }
                    if (SPLIT) {
                        __m512i h2 = _mm512_loadu_si512(hp + 128), l2 = _mm512_loadu_si512(hp + 192);
                        for (int i = 0; i < NR; i++) {
                            dh2[i] = _mm512_dpbusd_epi32(dh2[i], w2[i], h2);
                            d2[i] = _mm512_dpbusd_epi32(d2[i], w2[i], l2);
                        }
                    }
                }
            }
        }
        for (int j = 0; j < NT; j++) {
            __m512 sxv = _mm512_loadu_ps(o.Xs + (t0 + j) * o.xgroups + g);
            for (int i = 0; i < NR; i++) {
                __m512i dd;
                if (FMT == KERN_Q4) dd = SPLIT ? _mm512_add_epi32(d[i][j], _mm512_srai_epi32(dh[i][j], 4)) : d[i][j];
                else {
                    __m512i hi = SPLIT ? _mm512_add_epi32(dh[i][j], dh2[i]) : dh[i][j];
                    __m512i lo = SPLIT ? _mm512_add_epi32(d[i][j], d2[i]) : d[i][j];
                    dd = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
                }
                __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(dd), sxv);
                acc[i][j] = _mm512_fmadd_ps(v, wq_span_scales16(wsrow[i] + g), acc[i][j]);
            }
        }
    }
    for (size_t g = spans; g < quads; g += QUAD) {
        if (FMT == KERN_Q4) {
            // A quad's 64 stored bytes: one mask gives the low nibbles (activations 0..63 of the quad), one shift
            // and mask the high ones (64..127).
            __m512i wl[4], wh[4];
            for (int i = 0; i < NR; i++) {
                _mm_prefetch((const char *)(wrow[i] + g * 16 + Q_PREFETCH), _MM_HINT_T0);
                __m512i b = _mm512_loadu_si512(wrow[i] + g * 16);
                wl[i] = _mm512_and_si512(b, _mm512_set1_epi8(15));
                wh[i] = _mm512_and_si512(_mm512_srli_epi16(b, 4), _mm512_set1_epi8(15));
            }
            for (int j = 0; j < NT; j++) {
                const int8_t *xp = (const int8_t *)o.Xq + (t0 + j) * o.xcols + g * 32;
                __m512i xl = _mm512_loadu_si512(xp), xh = _mm512_loadu_si512(xp + 64);
                __m512i init = _mm512_loadu_si512(o.Xc + ((t0 + j) * o.xgroups + g) * 8);
                __m512 sxv = quad_scales16(o.Xs + (t0 + j) * o.xgroups + g);
                for (int i = 0; i < NR; i++) {
                    __m512i d = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(init, wl[i], xl), wh[i], xh);
                    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), sxv);
                    acc[i][j] = _mm512_fmadd_ps(v, wq_quad_scales16(wsrow[i] + g), acc[i][j]);
                }
            }
        } else {
            // A quad's 128 stored bytes as two 64-byte vectors per row, multiplied as loaded (read as 32-byte
            // halves, as f32 rows are, they streamed the same), prefetched like int4 rows (see Q_PREFETCH).
            __m512i w0[4], w1[4];
            for (int i = 0; i < NR; i++) {
                _mm_prefetch((const char *)(wrow[i] + g * 32 + Q_PREFETCH), _MM_HINT_T0);
                _mm_prefetch((const char *)(wrow[i] + g * 32 + Q_PREFETCH + 64), _MM_HINT_T0);
                w0[i] = _mm512_loadu_si512(wrow[i] + g * 32);
                w1[i] = _mm512_loadu_si512(wrow[i] + g * 32 + 64);
            }
            for (int j = 0; j < NT; j++) {
                const uint8_t *hp = q8_input(&o, t0 + j) + g * 64;
                __m512i h0 = _mm512_loadu_si512(hp), l0 = _mm512_loadu_si512(hp + 64);
                __m512i h1 = _mm512_loadu_si512(hp + 128), l1 = _mm512_loadu_si512(hp + 192);
                __m512i init = _mm512_loadu_si512(o.Xc + ((t0 + j) * o.xgroups + g) * 8);
                __m512 sxv = quad_scales16(o.Xs + (t0 + j) * o.xgroups + g);
                for (int i = 0; i < NR; i++) {
                    __m512i d = dot_q8_vnni(init, w0[i], w1[i], h0, h1, l0, l1);
                    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), sxv);
                    acc[i][j] = _mm512_fmadd_ps(v, wq_quad_scales16(wsrow[i] + g), acc[i][j]);
                }
            }
        }
    }
    for (size_t g = quads; g < o.groups; g++)
        for (int j = 0; j < NT; j++)
            for (int i = 0; i < NR; i++) {
                __m256 d = _mm256_cvtepi32_ps(tail_dot_vnni(&o, wrow[i], t0 + j, g, FMT));
                __m256 v = _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(o.Xs[(t0 + j) * o.xgroups + g])),
                                         _mm256_set1_ps(_cvtsh_ss(wsrow[i][g])));
                acc[i][j] = _mm512_add_ps(acc[i][j], _mm512_zextps256_ps512(v));
            }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < NR; i++) put(o.Y + (t0 + j) * o.ldy + rows[i], o.acc, _mm512_reduce_add_ps(acc[i][j]));
}

// The same with AVX2 (16 vector registers: weights are unpacked a row at a time). In a span, an int4 dot over half
// its vectors leaves one group per lane (groups 8hh + l); in a quad each 8-lane int4 dot spans the quad's 16 lanes l
// and l + 8 (both of group l mod 4), so it starts from the sum of those two lanes' −8·Σx. An int8 dot leaves group
// l/2 of its 16 bytes' four in lane l and starts from its own lane sums.
__attribute__((target(AVX2_TARGET)))
AI void qq_block_avx2(const qq_ops o, const size_t *rows, size_t t0, const int FMT, const int NR, const int NT) {
    __m256 acc[4][2];
    for (int i = 0; i < NR; i++) for (int j = 0; j < NT; j++) acc[i][j] = _mm256_setzero_ps();
    const uint8_t *wrow[4];
    const uint16_t *wsrow[4];
    qq_rows(&o, rows, NR, wrow, wsrow);
    // int4z: wrow at the codes, its zero points zb bytes before them (see q4z_zero_bytes).
    const size_t zb = FMT == KERN_Q4Z ? q4z_zero_bytes(o.groups) : 0;
    for (int i = 0; i < NR; i++) wrow[i] += zb;
    const size_t spans = span_groups(o.groups), quads = quad_groups(o.groups);
    // int8 at one input row: the block's rows take turns inside the loop over a span, so each activation vector is
    // loaded once for all four rows instead of once per row (its int16 activations are twice the weights' bytes, and
    // loads bound the loop on Zen 3: in cache 1.09× median, decode 0.75 → 0.86 of the roofline at ~25 GB/s, six
    // interleaved pairs; int4, loading half as much per weight, came out level and keeps the general path). Each
    // row's operations are those of the general path, in the same order, so results do not change.
    const int ROWS_INNER = NT == 1 && FMT == KERN_Q8;
    for (size_t g = 0; ROWS_INNER && g < spans; g += SPAN) {
        const int16_t *xrow = (const int16_t *)q8_input(&o, t0) + g * 32;
        for (int c = 0; c < 4; c++) {
            __m256i d[4];
            __m256i init = _mm256_loadu_si256((const __m256i *)(o.Xc + (t0 * o.xgroups + g) * 8 + 8 * c));
            for (int i = 0; i < NR; i++) d[i] = init;
            for (int u = 0; u < 8; u++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(xrow + 64 * u + 16 * c));
                for (int i = 0; i < NR; i++) {
                    const uint8_t *wp = wrow[i] + g * 32 + 64 * u + 16 * c;
                    if (c == 0) _mm_prefetch((const char *)(wp + Q_PREFETCH), _MM_HINT_T0);
                    __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)wp));
                    d[i] = _mm256_add_epi32(d[i], _mm256_madd_epi16(w, x));
                }
            }
            __m256 xs = quad_scales8_pairs(o.Xs + t0 * o.xgroups + g + 4 * c);
            for (int i = 0; i < NR; i++) {
                __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d[i]), xs);
                acc[i][0] = _mm256_fmadd_ps(v, wq_quad_scales8_pairs(wsrow[i] + g + 4 * c), acc[i][0]);
            }
        }
    }
    for (size_t g = 0; !ROWS_INNER && g < spans; g += SPAN) {
        for (int i = 0; i < NR; i++) {
            if (FMT != KERN_Q8) {
                // Half hh of the span (groups 8hh..8hh+7, one per lane): 32 bytes of each of its four vectors. The
                // eight vpmaddubsw products are summed as int16 before one vpmaddwd widens them: each is at most
                // 2 · 15 · 127 = 3810 in magnitude, so eight stay below 32767. mxfp4's operands (0…24) reach 6096,
                // so theirs are widened four at a time (24384).
                for (int hh = 0; hh < 2; hh++) {
                    __m256i s16[2], s32[2];
                    for (int j = 0; j < NT; j++) s16[j] = s32[j] = _mm256_setzero_si256();
                    for (int u = 0; u < 4; u++) {
                        const uint8_t *wp = wrow[i] + g * 16 + 64 * u + 32 * hh;
                        if (hh == 0) _mm_prefetch((const char *)(wp + Q_PREFETCH), _MM_HINT_T0);
                        __m256i b = _mm256_loadu_si256((const __m256i *)wp);
                        const __m256i m = _mm256_set1_epi8(15);
                        __m256i wl = decode4(_mm256_and_si256(b, m), FMT), wh = decode4(_mm256_and_si256(_mm256_srli_epi16(b, 4), m), FMT);
                        for (int j = 0; j < NT; j++) {
                            const int8_t *xp = (const int8_t *)o.Xq + (t0 + j) * o.xcols + g * 32 + 64 * u + 32 * hh;
                            __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wl, _mm256_loadu_si256((const __m256i *)xp)),
                                                         _mm256_maddubs_epi16(wh, _mm256_loadu_si256((const __m256i *)(xp + 256))));
                            s16[j] = _mm256_add_epi16(s16[j], p);
                            if (FMT == KERN_MX4 && u % 2 == 1) {
                                s32[j] = _mm256_add_epi32(s32[j], _mm256_madd_epi16(s16[j], _mm256_set1_epi16(1)));
                                s16[j] = _mm256_setzero_si256();
                            }
                        }
                    }
                    for (int j = 0; j < NT; j++) {
                        __m256i xc = _mm256_loadu_si256((const __m256i *)(o.Xc + ((t0 + j) * o.xgroups + g) * 8 + 8 * hh));
                        if (FMT == KERN_Q4Z)
                            xc = _mm256_mullo_epi32(xc, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(wrow[i] - zb + g + 8 * hh))));
                        __m256i d = _mm256_add_epi32(xc, FMT == KERN_MX4 ? s32[j] : _mm256_madd_epi16(s16[j], _mm256_set1_epi16(1)));
                        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(o.Xs + (t0 + j) * o.xgroups + g + 8 * hh));
                        acc[i][j] = _mm256_fmadd_ps(v, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(wsrow[i] + g + 8 * hh))), acc[i][j]);
                    }
                }
            } else {
                // Chunk c (16 bytes) of each unit's 64 holds groups 4c..4c+3; widened to int16, vpmaddwd leaves
                // group 4c + l/2 in lane l of its dot (see quad_scales8_pairs).
                // A column c at a time (in cache, one input row: 0.91× the quads' rate, against 0.78× unit by
                // unit with four accumulators; its int16 products add in pairs, so spans save it no scaling).
                for (int c = 0; c < 4; c++) {
                    __m256i d[2];
                    for (int j = 0; j < NT; j++)
                        d[j] = _mm256_loadu_si256((const __m256i *)(o.Xc + ((t0 + j) * o.xgroups + g) * 8 + 8 * c));
                    for (int u = 0; u < 8; u++) {
                        const uint8_t *wp = wrow[i] + g * 32 + 64 * u + 16 * c;
                        if (c == 0) _mm_prefetch((const char *)(wp + Q_PREFETCH), _MM_HINT_T0);
                        __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)wp));
                        for (int j = 0; j < NT; j++) {
                            const int16_t *xp = (const int16_t *)q8_input(&o, t0 + j) + g * 32 + 64 * u + 16 * c;
                            d[j] = _mm256_add_epi32(d[j], _mm256_madd_epi16(w, _mm256_loadu_si256((const __m256i *)xp)));
                        }
                    }
                    for (int j = 0; j < NT; j++) {
                        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d[j]), quad_scales8_pairs(o.Xs + (t0 + j) * o.xgroups + g + 4 * c));
                        acc[i][j] = _mm256_fmadd_ps(v, wq_quad_scales8_pairs(wsrow[i] + g + 4 * c), acc[i][j]);
                    }
                }
            }
        }
    }
    for (size_t g = spans; g < quads; g += QUAD) {
        for (int i = 0; i < NR; i++) {
            __m256 wsv = FMT != KERN_Q8 ? wq_quad_scales8(wsrow[i] + g) : wq_quad_scales8_pairs(wsrow[i] + g);
            __m256i d[2];
            if (FMT != KERN_Q8) {
                _mm_prefetch((const char *)(wrow[i] + g * 16 + Q_PREFETCH), _MM_HINT_T0);
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(wrow[i] + g * 16));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(wrow[i] + g * 16 + 32));
                const __m256i m = _mm256_set1_epi8(15);
                __m256i w[4] = {decode4(_mm256_and_si256(b0, m), FMT), decode4(_mm256_and_si256(b1, m), FMT),
                                decode4(_mm256_and_si256(_mm256_srli_epi16(b0, 4), m), FMT),
                                decode4(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m), FMT)};
                for (int j = 0; j < NT; j++) {
                    const int8_t *xp = (const int8_t *)o.Xq + (t0 + j) * o.xcols + g * 32;
                    const int32_t *xc = o.Xc + ((t0 + j) * o.xgroups + g) * 8;
                    d[j] = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)xc), _mm256_loadu_si256((const __m256i *)(xc + 8)));
                    if (FMT == KERN_Q4Z) {
                        // Lane l holds group g + l mod 4 (see quad_scales8): its four zero points twice.
                        int32_t z4;
                        memcpy(&z4, wrow[i] - zb + g, 4);
                        d[j] = _mm256_mullo_epi32(d[j], _mm256_cvtepu8_epi32(_mm_set1_epi32(z4)));
                    }
                    for (int k = 0; k < 4; k++) d[j] = dot8_avx2(d[j], w[k], _mm256_loadu_si256((const __m256i *)(xp + 32 * k)));
                }
            } else {
                // 16 stored bytes at a time widened to int16 as stored (v + 128): lane l of each product holds
                // group l/2 (see quad_scales8_pairs), and the dot starts from −128·Σa.
                for (int j = 0; j < NT; j++) d[j] = _mm256_loadu_si256((const __m256i *)(o.Xc + ((t0 + j) * o.xgroups + g) * 8));
                for (int half = 0; half < 2; half++) {
                    __m256i w[4];
                    for (int k = 0; k < 4; k++)
                        w[k] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(wrow[i] + g * 32 + 64 * half + 16 * k)));
                    for (int j = 0; j < NT; j++) {
                        const int16_t *xp = (const int16_t *)q8_input(&o, t0 + j) + g * 32 + 64 * half;
                        __m256i p0 = _mm256_add_epi32(_mm256_madd_epi16(w[0], _mm256_loadu_si256((const __m256i *)xp)),
                                                      _mm256_madd_epi16(w[1], _mm256_loadu_si256((const __m256i *)(xp + 16))));
                        __m256i p1 = _mm256_add_epi32(_mm256_madd_epi16(w[2], _mm256_loadu_si256((const __m256i *)(xp + 32))),
                                                      _mm256_madd_epi16(w[3], _mm256_loadu_si256((const __m256i *)(xp + 48))));
                        d[j] = _mm256_add_epi32(d[j], _mm256_add_epi32(p0, p1));
                    }
                }
            }
            for (int j = 0; j < NT; j++) {
                const float *xs = o.Xs + (t0 + j) * o.xgroups + g;
                __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(d[j]), FMT != KERN_Q8 ? quad_scales8(xs) : quad_scales8_pairs(xs));
                acc[i][j] = _mm256_fmadd_ps(v, wsv, acc[i][j]);
            }
        }
    }
    for (size_t g = quads; g < o.groups; g++)
        for (int j = 0; j < NT; j++)
            for (int i = 0; i < NR; i++) {
                __m256 d = _mm256_cvtepi32_ps(tail_dot_avx2(&o, wrow[i], t0 + j, g, FMT));
                __m256 v = _mm256_mul_ps(d, _mm256_set1_ps(o.Xs[(t0 + j) * o.xgroups + g]));
                acc[i][j] = _mm256_fmadd_ps(v, _mm256_set1_ps(_cvtsh_ss(wsrow[i][g])), acc[i][j]);
            }
    for (int j = 0; j < NT; j++)
        for (int i = 0; i < NR; i++) put(o.Y + (t0 + j) * o.ldy + rows[i], o.acc, kern_hsum8(acc[i][j]));
}

#define QQ_RANGE(NAME, TARGET, BLOCK, MAXT)                                                                        \
    __attribute__((target(TARGET)))                                                                                \
    AI void NAME##_body(const qq_ctx *c, size_t r0, size_t r1, const int FMT) {                                    \
        const qq_ops o = {c->W, c->ws, c->rowData, c->groups, c->Xq, c->Xs, c->Xc, c->xcols, c->xgroups,   \
                          c->Y, c->ldy, c->acc};         \
        const size_t T = c->T;                                                                                     \
        ROW_BLOCKS(BLOCK, MAXT)                                                                                    \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME##_q8(const qq_ctx *c, size_t r0, size_t r1) {                \
        NAME##_body(c, r0, r1, KERN_Q8);                                                                           \
    }                                                                                                              \
    __attribute__((target(TARGET))) static void NAME##_q4(const qq_ctx *c, size_t r0, size_t r1) {                \
        NAME##_body(c, r0, r1, KERN_Q4);                                                                           \
    }

QQ_RANGE(qq_range_vnni, VNNI_TARGET, qq_block_vnni, 4)
QQ_RANGE(qq_range_avx2, AVX2_TARGET, qq_block_avx2, 2)
__attribute__((target(AVX2_TARGET))) static void qq_range_avx2_mx4(const qq_ctx *c, size_t r0, size_t r1) {
    qq_range_avx2_body(c, r0, r1, KERN_MX4);
}
__attribute__((target(AVX2_TARGET))) static void qq_range_avx2_q4z(const qq_ctx *c, size_t r0, size_t r1) {
    qq_range_avx2_body(c, r0, r1, KERN_Q4Z);
}

static void qq_range_portable(const qq_ctx *c, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = c->W + r * c->rowData;
        for (size_t t = 0; t < c->T; t++) {
            float acc = 0;
            for (size_t g = 0; g < c->groups; g++) {
                int32_t s = 0;
                for (size_t j = 0; j < 32; j++) {
                    size_t k = t * c->xcols + group_pos(c->groups, g, j);
                    int32_t x = c->format != KERN_Q8 ? ((const int8_t *)c->Xq)[k]
                                                     : ((const int16_t *)c->Xq)[t * c->xcols + g * 32 + j];
                    int32_t w = c->format == KERN_Q4 ? q4_value(row, c->groups, g, j)
                              : c->format == KERN_Q4Z ? q4z_value(row, c->groups, g, j)
                              : c->format == KERN_MX4 ? mx4_value(row, c->groups, g, j) : q8_value(row, c->groups, g, j);
                    s += w * x;
                }
                float ws, xs = c->Xs[t * c->xgroups + g];
                kern_f16_to_f32(c->ws + r * c->groups + g, &ws, 1);
                acc += ((float)s * xs) * ws;
            }
            put(c->Y + t * c->ldy + r, c->acc, acc);
        }
    }
}

static void qq_task(void *p, size_t r0, size_t r1) {
    const qq_ctx *c = (const qq_ctx *)p;
    int q8 = c->format == KERN_Q8;
    if (c->path == QQ_VNNI) { if (q8) qq_range_vnni_q8(c, r0, r1); else qq_range_vnni_q4(c, r0, r1); }
    else if (c->path == QQ_AVX2 && c->format == KERN_MX4) qq_range_avx2_mx4(c, r0, r1);
    else if (c->path == QQ_AVX2 && c->format == KERN_Q4Z) qq_range_avx2_q4z(c, r0, r1);
    else if (c->path == QQ_AVX2) { if (q8) qq_range_avx2_q8(c, r0, r1); else qq_range_avx2_q4(c, r0, r1); }
    else qq_range_portable(c, r0, r1);
}

// An int8 product's int16 activations (one input row in the weights' order, |a| ≤ KERN_Q8_ACT_LEVELS = 127 · 256
// + 127) split in place into the two signed bytes VNNI multiplies, a = 256 · high + low (the order is at qq_ctx).
// And the lane sums that start each dot (see lane_sums_q4): lane l adds values 4l..4l+3 of each of a span's or a
// quad's 64-value units (in a span, group l's values), of a tail group its values 4l..4l+3.
__attribute__((target(VNNI_TARGET)))
static void split_q8_vnni(int16_t *q, size_t groups, int32_t *xc) {
    const __m512i ones = _mm512_set1_epi16(1), round = _mm512_set1_epi16(128);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (size_t g = 0, S; g < groups; g += S) {
        block_of(groups, g, &S);
        // A unit (a tail group: 32 values) becomes its high bytes, then its low ones.
        const int unit = S == 1 ? 32 : 64;
        __m512i lanes = _mm512_setzero_si512();
        for (int u = 0; u < 32 * (int)S; u += unit) {
            int16_t *v = q + g * 32 + u;
            __m512i a0 = _mm512_loadu_si512(v), a1 = S == 1 ? _mm512_setzero_si512() : _mm512_loadu_si512(v + 32);
            __m512i p0 = _mm512_madd_epi16(a0, ones), p1 = _mm512_madd_epi16(a1, ones);
            lanes = _mm512_add_epi32(lanes, _mm512_add_epi32(_mm512_permutex2var_epi32(p0, even, p1),
                                                             _mm512_permutex2var_epi32(p0, odd, p1)));
            int8_t *hi = (int8_t *)v, *lo = hi + unit;
            _mm256_storeu_si256((__m256i *)lo, _mm512_cvtepi16_epi8(a0));
            _mm256_storeu_si256((__m256i *)hi, _mm512_cvtepi16_epi8(_mm512_srai_epi16(_mm512_add_epi16(a0, round), 8)));
            if (S == 1) continue;
            _mm256_storeu_si256((__m256i *)(lo + 32), _mm512_cvtepi16_epi8(a1));
            _mm256_storeu_si256((__m256i *)(hi + 32), _mm512_cvtepi16_epi8(_mm512_srai_epi16(_mm512_add_epi16(a1, round), 8)));
        }
        lanes = _mm512_mullo_epi32(lanes, _mm512_set1_epi32(-128));
        if (S > 1) _mm512_storeu_si512(xc + g * 8, lanes);
        else _mm256_storeu_si256((__m256i *)(xc + g * 8), _mm512_castsi512_si256(lanes));
    }
}

// What starts each dot whose weights are stored with an offset (int4 v + 8, mxfp4 2·e2m1 + 12, int8 v + 128, int4z
// code = v + z): factor (−8, −12, −128; −1 for int4z, whose kernels multiply it by each group's z) times
// the sum of the activations the dot adds into each int32 lane, at xc + 8g for the block starting at group g (8 int32
// per group are set aside). x: one input row in the weights' order.
//   int4 products (int8 activations; both paths): lane l of a span or a quad sums values 4l … 4l + 3 of each of the
//   block's 64-value units (16 lanes; one group per lane in a span), of a tail group values 4l … 4l + 3 (8 lanes).
//   int8 products on AVX2 (int16 activations, whose products vpmaddwd adds in pairs): lane l of a span sums values
//   2l, 2l + 1 of each unit (32 lanes: the 16-value chunk c of a unit is lanes 8c … 8c + 7), of a quad or a tail
//   group values 2l, 2l + 1 of each 16-value chunk (8 lanes). (VNNI int8 sums are set by split_q8_vnni.)
__attribute__((target(AVX2_TARGET)))
static void lane_sums_q4(const int8_t *x, size_t groups, int32_t *xc, int factor) {
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (size_t g = 0, S; g < groups; g += S) {
        block_of(groups, g, &S);
        const int8_t *v = x + g * 32;
        // Sums of 4 consecutive values per int32 lane: vpmaddubsw by ones (pairs), then vpmaddwd by ones.
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (size_t c = 0; c < 32 * S; c += S == 1 ? 32 : 64) {
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(v + c))), ones16));
            if (S > 1)
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(v + c + 32))), ones16));
        }
        _mm256_storeu_si256((__m256i *)(xc + g * 8), _mm256_mullo_epi32(lo, _mm256_set1_epi32(factor)));
        if (S > 1) _mm256_storeu_si256((__m256i *)(xc + g * 8 + 8), _mm256_mullo_epi32(hi, _mm256_set1_epi32(factor)));
    }
}

__attribute__((target(AVX2_TARGET)))
static void lane_sums_q8_avx2(const int16_t *x, size_t groups, int32_t *xc) {
    const __m256i ones = _mm256_set1_epi16(1), factor = _mm256_set1_epi32(-128);
    for (size_t g = 0, S; g < groups; g += S) {
        block_of(groups, g, &S);
        const int16_t *v = x + g * 32;
        if (S == SPAN) {
            __m256i l[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (size_t u = 0; u < 8; u++)
                for (int c = 0; c < 4; c++)
                    l[c] = _mm256_add_epi32(l[c], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(v + 64 * u + 16 * c)), ones));
            for (int c = 0; c < 4; c++) _mm256_storeu_si256((__m256i *)(xc + g * 8 + 8 * c), _mm256_mullo_epi32(l[c], factor));
            continue;
        }
        __m256i l = _mm256_setzero_si256();
        for (size_t c = 0; c < 32 * S; c += 16)
            l = _mm256_add_epi32(l, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(v + c)), ones));
        _mm256_storeu_si256((__m256i *)(xc + g * 8), _mm256_mullo_epi32(l, factor));
    }
}

// Activations of an int8 product as int16 (see qq_ctx for how each path holds them), of an int4 product as int8
// (vpdpbusd multiplies unsigned 4-bit weights by signed bytes, 32 per instruction; the int8 rounding, 2^-8 of a
// group's largest value, is far below int4's own).
typedef struct {
    int format, path; const float *X; size_t ldx, cols, groups, panel; void *Xq; float *Xs; int32_t *Xc;
} act_ctx;

// Packs one input row's quantized values in the weights' order and sets its lane sums, panel by panel (`panel`
// values wide, 0 for none): each panel's rows are laid out as rows of their own (grouplayout.h), so the input's
// columns of a panel are too.
static void pack_activations(const act_ctx *a, void *q, int32_t *xc) {
    const size_t width = a->panel ? a->panel : a->cols;
    for (size_t c0 = 0; c0 < a->cols; c0 += width) {
        const size_t groups = (a->cols - c0 < width ? a->cols - c0 : width) / 32;
        int32_t *pc = xc + c0 / 32 * 8;
        if (a->format != KERN_Q8) {
            int8_t *pq = (int8_t *)q + c0;
            pack_groups((uint8_t *)pq, groups, 32, UNIT);
            if (a->path != QQ_PORTABLE)
                lane_sums_q4(pq, groups, pc, a->format == KERN_MX4 ? -MX4_OFFSET : a->format == KERN_Q4Z ? -1 : -8);
            continue;
        }
        int16_t *pq = (int16_t *)q + c0;
        pack_groups((uint8_t *)pq, groups, 64, 2 * UNIT);
        if (a->path == QQ_AVX2) lane_sums_q8_avx2(pq, groups, pc);
        else split_q8_vnni(pq, groups, pc);
    }
}

static void act_task(void *p, size_t b, size_t e) {
    act_ctx *a = (act_ctx *)p;
    const size_t cols = a->cols, groups = a->groups;
    for (size_t t = b; t < e; t++) {
        if (a->format != KERN_Q8) {
            int8_t *q = (int8_t *)a->Xq + t * cols;
            kern_quantize_q8(a->X + t * a->ldx, cols, q, a->Xs + t * groups);
            pack_activations(a, q, a->Xc + t * groups * 8);
            continue;
        }
        int16_t *q = (int16_t *)a->Xq + t * cols;
        kern_quantize_act(a->X + t * a->ldx, cols, q, a->Xs + t * groups);
        if (a->path != QQ_PORTABLE) pack_activations(a, q, a->Xc + t * groups * 8);
    }
}

// ---- f32 / f16 / bf16 ------------------------------------------------------------------------------------------

// Weights of row stride `ld` elements (f32 matrices may be views into a wider tensor; converted ones have ld = cols).
typedef struct {
    int format;
    const void *W; size_t ld, cols;
    const float *X; size_t ldx, T;
    float *Y; size_t ldy; int acc;           // acc: add to Y (panels after the first)
} h_ctx;

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

static void h_task(void *p, size_t r0, size_t r1) { h_range((const h_ctx *)p, r0, r1); }

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

// Activations as bf16: T rows of `ldx2` values (cols rounded up to 32 with zeros, then one line of padding so rows do
// not alias in L1/L2).
typedef struct {
    const void *W; size_t ld, cols;
    const uint16_t *X2; size_t ldx2;
    size_t T;
    float *Y; size_t ldy; int acc;
} bd_ctx;

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

static void bd_task(void *p, size_t r0, size_t r1) { bd_range((const bd_ctx *)p, r0, r1); }

typedef struct { const float *X; size_t ldx, cols; uint16_t *X2; size_t ldx2; } round_ctx;

__attribute__((target(BF16_TARGET)))
static void round_task(void *p, size_t b, size_t e) {
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

// ---- Profile of products by shape (moe-bench model --products) -----------------------------------------------------
// Off unless asked: one relaxed load per product. On, each product is timed whole (activation rounding and the
// pool's fork and join included), as the model pays it.

static atomic_int profiling = 0;
static pthread_mutex_t profile_lock = PTHREAD_MUTEX_INITIALIZER;
static kern_product_stat profile[KERN_PROFILE_SHAPES];
static int profile_count = 0;

void kern_products_profile(int on) {
    pthread_mutex_lock(&profile_lock);
    if (on) profile_count = 0;
    atomic_store(&profiling, on);
    pthread_mutex_unlock(&profile_lock);
}

int kern_products_profile_read(kern_product_stat *out, int max) {
    pthread_mutex_lock(&profile_lock);
    int n = profile_count < max ? profile_count : max;
    memcpy(out, profile, (size_t)n * sizeof(kern_product_stat));
    pthread_mutex_unlock(&profile_lock);
    return n;
}

static void profile_record(int format, size_t rows, size_t cols, size_t T, double seconds) {
    pthread_mutex_lock(&profile_lock);
    int i = 0;
    while (i < profile_count && !(profile[i].format == format && profile[i].rows == rows && profile[i].cols == cols && profile[i].T == T)) i++;
    if (i == profile_count && profile_count < KERN_PROFILE_SHAPES) {
        profile[i] = (kern_product_stat){format, rows, cols, T, 0, 0, 0};
        profile_count++;
    }
    if (i < profile_count) {
        profile[i].calls++;
        profile[i].seconds += seconds;
        profile[i].weight_bytes += (double)rows * (double)kern_format_row_bytes(format, cols);
    }
    pthread_mutex_unlock(&profile_lock);
}

// ---- one product -------------------------------------------------------------------------------------------------

// A product made ready to run over its rows: the activations rounded or packed as its format needs (the scratch it
// owns), and the task that computes any range of its rows (in `c`; for a matrix in panels, `inner` computes one
// panel's share of them from a copy of `c` moved to that panel).
typedef union { qq_ctx q; h_ctx h; bd_ctx b; } product_ctx;

typedef struct {
    kern_product args;                       // kern_gemm_w_mt's arguments
    kern_task_fn fn, inner;
    product_ctx c;
    enum { PRODUCT_QQ, PRODUCT_H, PRODUCT_BD } kind;
    size_t panels;                           // how many (1: rows contiguous)
    void *owned[3];
} prepared;

// Weights of a product: below FEW of them it runs on the calling thread alone.
static size_t work_of(const kern_product *d) { return d->rows * d->cols; }

// Scratch for a product's rounded activations, slot by slot. Up to SCRATCH_KEEP bytes a slot are kept by the calling
// thread from one product to the next (decode runs ~60 products a token, and an aligned_alloc and free each cost
// 0.3–0.8 µs of a product's fixed work); larger ones (prefill) are allocated per product and freed by finish.
#define SCRATCH_KEEP ((size_t)1 << 20)
typedef struct { void *p[3]; size_t cap[3]; } kept_scratch;
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static void kept_free(void *k) {
    kept_scratch *s = (kept_scratch *)k;
    for (int i = 0; i < 3; i++) free(s->p[i]);
    free(s);
}
static void kept_init(void) { pthread_key_create(&kept_key, kept_free); }

static void *scratch_alloc(prepared *p, int slot, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    pthread_once(&kept_once, kept_init);
    kept_scratch *k = (kept_scratch *)pthread_getspecific(kept_key);
    if (!k && bytes <= SCRATCH_KEEP && (k = (kept_scratch *)calloc(1, sizeof *k))) pthread_setspecific(kept_key, k);
    if (!k || bytes > SCRATCH_KEEP) return p->owned[slot] = aligned_alloc(64, bytes);   // owned: freed by finish
    if (k->cap[slot] < bytes) {
        free(k->p[slot]);
        k->p[slot] = aligned_alloc(64, bytes);
        k->cap[slot] = k->p[slot] ? bytes : 0;
    }
    return k->p[slot];
}

// Below this many values a product's inputs are rounded where they are needed (on the calling thread, or by each
// thread for itself, see gemm_one), and below this many weights a product runs on the calling thread alone.
#define FEW 65536

// Rounds or packs T inputs of `cols` values: on the calling thread when small, else over the pool.
static void per_input(size_t T, size_t cols, kern_task_fn fn, void *ctx) {
    if (T * cols < FEW) fn(ctx, 0, T);
    else kern_parallel_for(T, 1, fn, ctx);
}

// Bytes of n stored values (scales apart).
static size_t value_bytes(int format, size_t n) {
    switch (format) {
    case KERN_Q8: return n;
    case KERN_Q4: case KERN_MX4: return n / 2;
    case KERN_Q4Z: return q4z_zero_bytes(n / 32) + n / 2;       // zero points, then codes
    case KERN_F16: case KERN_BF16: return 2 * n;
    default: return 4 * n;
    }
}

// Panel k of a product in panels: its weights (row0's row of it), width and first column, and the same product's
// context moved there, adding to Y after the first panel. Each (row, input) pair then sums its panels in one order
// whatever T and the thread split, so batch invariance holds.
static void panels_of_rows(const prepared *p, size_t r0, size_t r1) {
    const kern_panels L = p->args.panels;
    const int format = p->args.format;
    for (size_t k = 0; k < p->panels; k++) {
        const size_t c0 = k * L.width, w = p->args.cols - c0 < L.width ? p->args.cols - c0 : L.width;
        const size_t wbytes = k * L.rows * value_bytes(format, L.width) + L.row0 * value_bytes(format, w);
        product_ctx c = p->c;
        switch (p->kind) {
        case PRODUCT_QQ:
            c.q.W += wbytes;
            c.q.ws += k * L.rows * (L.width / 32) + L.row0 * (w / 32);
            c.q.rowData = value_bytes(format, w);
            c.q.groups = w / 32;
            c.q.Xq = (const uint8_t *)c.q.Xq + (format == KERN_Q8 ? 2 : 1) * c0;
            c.q.Xs += c0 / 32;
            c.q.Xc += c0 / 32 * 8;
            c.q.acc = k > 0;
            break;
        // f16/bf16 rows (h_ctx, bd_ctx): the panel's rows, w values each, and its columns of the input.
#define TO_PANEL(ctx, X) ((ctx).W = (const char *)(ctx).W + wbytes, (ctx).ld = (ctx).cols = w, (ctx).X += c0, (ctx).acc = k > 0)
        case PRODUCT_H: TO_PANEL(c.h, X); break;
        case PRODUCT_BD: TO_PANEL(c.b, X2); break;
#undef TO_PANEL
        }
        p->inner(&c, r0, r1);
    }
}

// With more input rows than one block takes, the panels go a chunk of PANEL_CHUNK rows at a time, so that the
// outputs each panel adds to (T × chunk floats) stay in L2: over a whole range they were T × range floats read and
// written again per panel (int8 prefill of rows of 14336 values, Mixtral-like model: 145–146 tok/s, 149–150 in
// chunks of 64 rows, 145–147 of 16, 153 of 256, against 157–160 in rows). With
// one block of inputs (decode, verification) each panel goes over the whole range, which is what keeps its input
// columns in L1 over many weight rows.
#define PANEL_CHUNK 64
static void panel_task(void *ctx, size_t r0, size_t r1) {
    const prepared *p = (const prepared *)ctx;
    if (p->args.T <= 4) { panels_of_rows(p, r0, r1); return; }
    for (size_t r = r0; r < r1; r += PANEL_CHUNK) panels_of_rows(p, r, r + PANEL_CHUNK < r1 ? r + PANEL_CHUNK : r1);
}

// The product's own fields, its task and the kind of activations it takes; they are rounded by round_inputs.
static void prepare(prepared *p, const kern_product *d) {
    const size_t T = d->T, cols = d->cols;
    p->args = *d;
    p->panels = d->panels.width && d->panels.width < cols ? (cols + d->panels.width - 1) / d->panels.width : 1;
    p->owned[0] = p->owned[1] = p->owned[2] = NULL;
    if (d->format == KERN_Q8 || d->format == KERN_Q4 || d->format == KERN_MX4 || d->format == KERN_Q4Z) {
        p->kind = PRODUCT_QQ;
        p->inner = qq_task;
    } else if (d->format == KERN_BF16 && bf16_round_activations && has_bf16_dot()) {
        p->kind = PRODUCT_BD;
        p->inner = bd_task;
    } else {
        p->c.h = (h_ctx){d->format, d->w, d->ld, cols, d->X, d->ldx, T, d->Y, d->ldy, 0};
        p->kind = PRODUCT_H;
        p->inner = h_task;
    }
    p->fn = p->panels > 1 ? panel_task : p->inner;
}

// Rounds or packs the inputs as the product's kind needs, into scratch of the calling thread (or owned by p), and
// points p's context at them. f32/f16 products and bf16 ones with f32 activations read X as it is.
static void round_inputs(prepared *p) {
    const kern_product *d = &p->args;
    const size_t T = d->T, cols = d->cols;
    if (p->kind == PRODUCT_QQ) {
        size_t groups = cols / 32, xbytes = d->format == KERN_Q8 ? 2 : 1;
        void *Xq = scratch_alloc(p, 0, T * cols * xbytes);
        float *Xs = scratch_alloc(p, 1, T * groups * sizeof(float));
        int32_t *Xc = scratch_alloc(p, 2, T * groups * 8 * sizeof(int32_t));
        // mxfp4 and int4z have AVX2 and portable kernels (AVX-512 machines run the AVX2 one).
        int path = has_vnni() && d->format != KERN_MX4 && d->format != KERN_Q4Z ? QQ_VNNI
                 : kern_isa_active() >= KERN_ISA_AVX2 ? QQ_AVX2 : QQ_PORTABLE;
        act_ctx a = {d->format, path, d->X, d->ldx, cols, groups, p->panels > 1 ? d->panels.width : 0, Xq, Xs, Xc};
        per_input(T, cols, act_task, &a);
        p->c.q = (qq_ctx){d->format, path, (const uint8_t *)d->w, d->scales, value_bytes(d->format, cols), groups,
                          Xq, Xs, Xc, cols, groups, T, d->Y, d->ldy, 0};
    } else if (p->kind == PRODUCT_BD) {
        size_t ldx2 = ((cols + 31) & ~(size_t)31) + 32;
        uint16_t *X2 = scratch_alloc(p, 0, T * ldx2 * 2);
        round_ctx r = {d->X, d->ldx, cols, X2, ldx2};
        per_input(T, cols, round_task, &r);
        p->c.b = (bd_ctx){d->w, d->ld, cols, X2, ldx2, T, d->Y, d->ldy, 0};
    }
}

static void finish(prepared *p) { for (int i = 0; i < 3; i++) free(p->owned[i]); }

static void run_rows(const prepared *p, size_t r0, size_t r1) {
    if (p->panels > 1) panel_task((void *)p, r0, r1); else p->inner((void *)&p->c, r0, r1);
}

#define MANY_MAX 64      // products kern_gemm_w_many runs in one region

// Prepared products run as one range of rows: product i holds [start[i], start[i] + rows). For products with an
// activation (kern_product.act), the ranges of j each thread applied it to: covered[i][k] for k < ncovered[i].
#define ACT_PARTS 8
typedef struct { size_t lo, hi; } act_range;
typedef struct {
    prepared *p; size_t *start; int n;
    act_range (*covered)[ACT_PARTS];
    atomic_int *ncovered;
} many_ctx;

// SwiGLU of a stacked gate|up product's T rows for j in [lo, hi) (see kern_product.act).
static void activate_range(const kern_product *d, size_t lo, size_t hi) {
    const size_t I = d->rows / 2;
    for (size_t t = 0; t < d->T; t++) kern_swiglu_f32(d->Y + t * d->ldy + lo, d->Y + t * d->ldy + I + lo, d->act + t * I + lo, hi - lo);
}

// After a product's rows [r0, r1) are done on this thread: the activation of the j whose gate and up rows both lie
// there ([r0, r1 − I) within [0, I)), noted in the region's list for the calling thread to complete.
static void activate_own(const many_ctx *m, int i, size_t r0, size_t r1) {
    const kern_product *d = &m->p[i].args;
    const size_t I = d->rows / 2, hi = r1 > I ? r1 - I : 0;     // r1 ≤ 2I, so hi ≤ I
    if (!d->act || r0 >= hi) return;
    const int k = atomic_fetch_add_explicit(&m->ncovered[i], 1, memory_order_relaxed);
    if (k >= ACT_PARTS) return;                  // not noted: the calling thread will do it again, the same way
    activate_range(d, r0, hi);
    m->covered[i][k] = (act_range){r0, hi};
}

// The activation of every j of product i that no thread applied (in order of lo; ranges never overlap).
static void activate_rest(const many_ctx *m, int i) {
    const kern_product *d = &m->p[i].args;
    if (!d->act) return;
    const size_t I = d->rows / 2;
    int n = atomic_load_explicit(&m->ncovered[i], memory_order_relaxed);
    if (n > ACT_PARTS) n = 0;                    // some part not noted: all again (identical values)
    act_range r[ACT_PARTS];
    for (int k = 0; k < n; k++) r[k] = m->covered[i][k];
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && r[b].lo < r[b - 1].lo; b--) { act_range x = r[b]; r[b] = r[b - 1]; r[b - 1] = x; }
    size_t at = 0;
    for (int k = 0; k < n; k++) {
        if (r[k].lo > at) activate_range(d, at, r[k].lo);
        at = r[k].hi;
    }
    if (at < I) activate_range(d, at, I);
}

// Whether two prepared products round the same inputs the same way (a layer's experts' gate|up all take the
// layer's hidden state): then the second can use what the first rounded.
static int same_inputs(const prepared *a, const prepared *b) {
    const kern_product *x = &a->args, *y = &b->args;
    return a->kind == b->kind && a->kind != PRODUCT_H && x->format == y->format && x->X == y->X && x->ldx == y->ldx &&
           x->T == y->T && x->cols == y->cols && a->panels == b->panels && (a->panels == 1 || x->panels.width == y->panels.width);
}

// p's own context, pointed at the inputs `rounded` holds (rounded by round_inputs for a product of the same inputs).
static void use_rounded(prepared *p, const prepared *rounded) {
    const kern_product *d = &p->args;
    p->c = rounded->c;
    if (p->kind == PRODUCT_QQ) {
        p->c.q.W = (const uint8_t *)d->w;
        p->c.q.ws = d->scales;
        p->c.q.Y = d->Y;
        p->c.q.ldy = d->ldy;
    } else {
        p->c.b.W = d->w;
        p->c.b.ld = d->ld;
        p->c.b.Y = d->Y;
        p->c.b.ldy = d->ldy;
    }
}

// A thread's part of the joined range: the rows of each product it overlaps, each product's inputs rounded by this
// thread for itself, once for products that share them (with top-8 of 2 threads, each rounded the hidden state for
// each of the ~4 experts' gate|up it touched).
static void many_task(void *ctx, size_t b, size_t e) {
    const many_ctx *m = (const many_ctx *)ctx;
    prepared rounded;
    int have = 0;
    for (int i = 0; i < m->n; i++) {
        const size_t s0 = m->start[i], s1 = s0 + m->p[i].args.rows;
        if (s1 <= b || s0 >= e) continue;
        const size_t r0 = (b > s0 ? b : s0) - s0, r1 = (e < s1 ? e : s1) - s0;
        if (have && same_inputs(&rounded, &m->p[i])) {
            prepared mine = m->p[i];
            use_rounded(&mine, &rounded);
            run_rows(&mine, r0, r1);
        } else {
            if (have) finish(&rounded);
            rounded = m->p[i];
            round_inputs(&rounded);
            have = rounded.kind != PRODUCT_H;
            run_rows(&rounded, r0, r1);
            if (!have) finish(&rounded);
        }
        activate_own(m, i, r0, r1);
    }
    if (have) finish(&rounded);
}

// Products whose inputs are few (decode, verification: under FEW values each) run in one parallel region with
// each thread rounding the inputs of the products it touches for itself, after the fork: the rounding (0.6–0.7 µs
// a product at 1024 values, 1.7 at 3584, more in this VM's fast-bandwidth minutes) is then not time in which the
// other thread waits, and several products (a layer's experts) pay one fork and join. Both threads round the same
// values the same way.
static int few_inputs(const kern_product *d) { return d->T * d->cols < FEW; }

static void run_together(prepared *p, int n) {
    size_t start[MANY_MAX], total = 0, work = 0;
    act_range covered[MANY_MAX][ACT_PARTS];
    atomic_int ncovered[MANY_MAX];
    for (int i = 0; i < n; i++) {
        start[i] = total;
        total += p[i].args.rows;
        work += work_of(&p[i].args);
        atomic_init(&ncovered[i], 0);
    }
    many_ctx m = {p, start, n, covered, ncovered};
    if (work < FEW) many_task(&m, 0, total);
    else kern_parallel_for(total, 16, many_task, &m);
    for (int i = 0; i < n; i++) activate_rest(&m, i);
}

static void gemm_one(const kern_product *d) {
    prepared p;
    prepare(&p, d);
    if (p.kind != PRODUCT_H && few_inputs(d)) { run_together(&p, 1); return; }
    round_inputs(&p);
    if (work_of(d) < FEW) run_rows(&p, 0, d->rows);
    else kern_parallel_for(d->rows, 16, p.fn, p.panels > 1 ? (void *)&p : (void *)&p.c);
    finish(&p);
    if (d->act) activate_range(d, 0, d->rows / 2);
}

// One product, timed into the profile while profiling.
static void product(const kern_product *d) {
    if (!atomic_load_explicit(&profiling, memory_order_relaxed)) { gemm_one(d); return; }
    const double t0 = kern_monotonic_seconds();
    gemm_one(d);
    profile_record(d->format, d->rows, d->cols, d->T, kern_monotonic_seconds() - t0);
}

void kern_gemm_w_many(const kern_product *ps, int n) {
    int joined = n > 1 && n <= MANY_MAX;
    for (int i = 0; i < n && joined; i++) joined = few_inputs(&ps[i]);
    if (!joined) {
        for (int i = 0; i < n; i++) product(&ps[i]);
        return;
    }
    prepared p[MANY_MAX];
    for (int i = 0; i < n; i++) prepare(&p[i], &ps[i]);
    const int profiled = atomic_load_explicit(&profiling, memory_order_relaxed);
    const double t0 = profiled ? kern_monotonic_seconds() : 0;
    run_together(p, n);
    if (!profiled) return;
    // The region's time, shared among its products in proportion to their weight bytes.
    double seconds = kern_monotonic_seconds() - t0, bytes[MANY_MAX], total = 0;
    for (int i = 0; i < n; i++) total += bytes[i] = (double)ps[i].rows * (double)kern_format_row_bytes(ps[i].format, ps[i].cols);
    for (int i = 0; i < n; i++) profile_record(ps[i].format, ps[i].rows, ps[i].cols, ps[i].T, seconds * bytes[i] / total);
}

void kern_gemm_w_mt(int format, const void *w, size_t ld, const uint16_t *scales, kern_panels panels, const float *X,
                    size_t ldx, size_t T, size_t cols, float *Y, size_t ldy, size_t rows) {
    const kern_product d = {format, w, ld, scales, panels, X, ldx, T, cols, Y, ldy, rows, NULL};
    product(&d);
}
