// What the product kernels share (private to CKernels): the inputs each kind of kernel takes, the tasks that run a
// range of a product's rows, and the row blocking they all use. groupdots.c holds the int8 / int4 / int4z / mxfp4
// kernels, floatdots.c the f32 / f16 / bf16 ones, products.c one product or many over the pool.
//
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
// bf16 products use vdpbf16ps on bf16-rounded activations instead (floatdots.c).
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
#ifndef MOE_CKERNELS_PRODUCTS_H
#define MOE_CKERNELS_PRODUCTS_H
#include "ckernels.h"
#include <immintrin.h>
#include "simd.h"
#include "grouplayout.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

// The path an int8 / int4 / int4z / mxfp4 product runs on this CPU (QQ_…), which decides how kern_act_task packs its
// activations.
int kern_qq_path(int format);
// Rows [r0, r1) of the product in `ctx` (a qq_ctx).
void kern_qq_task(void *ctx, size_t r0, size_t r1);

// Activations of an int8 product as int16 (see qq_ctx for how each path holds them), of an int4 product as int8
// (vpdpbusd multiplies unsigned 4-bit weights by signed bytes, 32 per instruction; the int8 rounding, 2^-8 of a
// group's largest value, is far below int4's own).
typedef struct {
    int format, path; const float *X; size_t ldx, cols, groups, panel; void *Xq; float *Xs; int32_t *Xc;
} act_ctx;
// Rounds and packs inputs [b, e) of the act_ctx `ctx`.
void kern_act_task(void *ctx, size_t b, size_t e);

// ---- f32 / f16 / bf16 ------------------------------------------------------------------------------------------

// Weights of row stride `ld` elements (f32 matrices may be views into a wider tensor; converted ones have ld = cols).
typedef struct {
    int format;
    const void *W; size_t ld, cols;
    const float *X; size_t ldx, T;
    float *Y; size_t ldy; int acc;           // acc: add to Y (panels after the first)
} h_ctx;
// Rows [r0, r1) of the product in `ctx` (an h_ctx).
void kern_h_task(void *ctx, size_t r0, size_t r1);

// bf16 weights × bf16-rounded activations (vdpbf16ps; floatdots.c says when).
// Activations as bf16: T rows of `ldx2` values (cols rounded up to 32 with zeros, then one line of padding so rows do
// not alias in L1/L2).
typedef struct {
    const void *W; size_t ld, cols;
    const uint16_t *X2; size_t ldx2;
    size_t T;
    float *Y; size_t ldy; int acc;
} bd_ctx;
// Rows [r0, r1) of the product in `ctx` (a bd_ctx).
void kern_bd_task(void *ctx, size_t r0, size_t r1);
// Inputs to round to bf16 for a bd_ctx product.
typedef struct { const float *X; size_t ldx, cols; uint16_t *X2; size_t ldx2; } round_ctx;
// Rounds inputs [b, e) of the round_ctx `ctx` to bf16.
void kern_round_bf16_task(void *ctx, size_t b, size_t e);
// Whether bf16 products on the calling thread take the bd_ctx path (kern_bf16_activations(1) on a CPU with it).
int kern_bf16_dot_on(void);

#endif
