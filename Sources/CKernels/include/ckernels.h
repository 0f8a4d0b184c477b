// Hot numeric kernels for the CPU, with run-time dispatch between AVX-512, AVX2+FMA and portable C.
// Matrices are row-major; a "row stride" is counted in elements. All sizes are element counts.
#ifndef MOE_CKERNELS_H
#define MOE_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- CPU features -------------------------------------------------------------------------------------------
enum { KERN_ISA_PORTABLE = 0, KERN_ISA_AVX2 = 1, KERN_ISA_AVX512 = 2 };
/// The best instruction set this CPU supports (detected once).
int kern_isa_detected(void);
/// The instruction set the kernels use now (defaults to the detected one).
int kern_isa_active(void);
/// Forces a lower instruction set in the calling thread only (tests of the portable path, with kernels that run in
/// the caller's thread). Values above the detected one are clamped; -1 restores the detected one.
void kern_isa_force(int isa);
const char *kern_isa_name(int isa);

// ---- Threads --------------------------------------------------------------------------------------------------
/// A task receives its context and a half-open range of work items.
typedef void (*kern_task_fn)(void *ctx, size_t begin, size_t end);
/// Starts the pool with `n` threads in all (the caller counts as one). Calling again resizes it.
void kern_threads_init(int n);
int kern_threads_count(void);
/// Runs fn over [0, n) split into contiguous chunks (multiples of `grain`), one per thread in proportion to its
/// learnt speed (kern_split), and waits.
/// Runs serially in the caller when the pool is busy (another thread is using it) or when nested.
void kern_parallel_for(size_t n, size_t grain, kern_task_fn fn, void *ctx);
/// How kern_parallel_for splits [0, n) over `parts` threads of relative speeds `speeds`: bounds[0..parts], each a
/// multiple of `grain` (or n), part i [bounds[i], bounds[i + 1]) in proportion to speeds[i]. The pool learns each
/// thread's speed from the jobs it runs (a vCPU can run at half speed for seconds when its core is shared).
void kern_split(size_t n, size_t grain, int parts, const double *speeds, size_t *bounds);
/// Mean time (ns) of a cache line's round trip between the calling thread and a pool worker, over `rounds` round
/// trips inside one job; negative with one thread, when the pool is busy, or when the worker did not answer in time
/// (50 ms plus 2 µs a round).
double kern_thread_round_trip_ns(int rounds);

// ---- Conversions ------------------------------------------------------------------------------------------------
void kern_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void kern_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Round to nearest even; NaN stays NaN.
void kern_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void kern_f32_to_f16(const float *src, uint16_t *dst, size_t n);

// ---- Vector ops ------------------------------------------------------------------------------------------------
float kern_dot_f32(const float *a, const float *b, size_t n);
/// y += a * x
void kern_axpy_f32(float *y, float a, const float *x, size_t n);
/// y = x * rsqrt(mean(x^2) + eps) * w   (w may be NULL for no weight)
void kern_rmsnorm_f32(const float *x, const float *w, float *y, size_t n, float eps);
/// out[i] = silu(g[i]) * u[i]
void kern_swiglu_f32(const float *g, const float *u, float *out, size_t n);
/// row[i] = exp(scale·row[i] − max) / Σ over the n values, in place.
void kern_softmax_scaled_f32(float *row, size_t n, float scale);
/// The same with one more logit `sink` in the softmax whose probability is dropped: row[i] = exp(scale·row[i]) /
/// (Σ exp(scale·row) + exp(sink)), computed against the row's max. sink −∞ is kern_softmax_scaled_f32.
void kern_softmax_sink_f32(float *row, size_t n, float scale, float sink);
/// row[i] = e^(scale·row[i] − max) in place, unnormalised: returns Σ and writes the max (of scale·row) to *max_out
/// (−∞ and 0 for an empty row). kern_softmax_scaled_f32 is this, then each value times 1/Σ.
float kern_exp_scaled_f32(float *row, size_t n, float scale, float *max_out);

// ---- Bandwidth ---------------------------------------------------------------------------------------------------
/// Reads a[0..<n) once over the thread pool (read-bandwidth measurement); returns a checksum.
long long kern_read_mt(const float *a, size_t n);
/// a[i] = b[i] + s·c[i] over the thread pool (memory-bandwidth measurement).
void kern_triad_mt(float *a, const float *b, const float *c, float s, size_t n);

// ---- Weight formats and products --------------------------------------------------------------------------------
// int8 / int4: groups of 32 along a row, one f16 scale per group (as llama.cpp's q8_0 and q4_0: 34 and 18 bytes per
// 32 values; rows contiguous, scales in a separate array).
// f16 / bf16: rows of 16-bit values, no scales. f32: rows of floats, row stride `ld`.
// mxfp4: OCP MXFP4's e2m1 values (sign, 2 exponent bits, 1 mantissa bit: 0, ±0.5 … ±6) as int4's 4-bit codes, laid
// out as int4's, each group's power of two 2^e stored as the f16 2^(e−1) (so that 2 · e2m1, an integer of −12…12,
// times it is the value): 18 bytes per 32 values, gpt-oss's experts held as released.
enum { KERN_F32 = 0, KERN_Q8 = 1, KERN_Q4 = 2, KERN_F16 = 3, KERN_BF16 = 4, KERN_MX4 = 5, KERN_Q4Z = 6 };
/// Bytes one row of `cols` values occupies in `format` (scales included).
size_t kern_format_row_bytes(int format, size_t cols);
/// n must be a multiple of 32. n int8 values in order, n/32 scales (amax/127, round half to even): the activations
/// of int4 products.
void kern_quantize_q8(const float *src, size_t n, int8_t *q, float *scales);
/// One row of n weights (a multiple of 32) as KERN_Q8 (n bytes, v + 128, scale amax/127; a group whose values are
/// multiples of one power of two, at most 127 of them, exactly with that scale: MXFP4's groups; one of k · s for
/// k in −15 … 15 and an f16 s exactly with s: a 4-bit checkpoint's) or KERN_Q4 (n/2 bytes, v + 8, amax/7; k · s for
/// k in −8 … 7 exactly with s) with n/32 f16 scales (rounded up, the values rounded against them), in the order the products read (groups
/// in spans of 16, then fours, see grouplayout.h); kern_dequantize gives them back in order. Returns 0, or −1 (nothing
/// written) when a group's scale would exceed KERN_Q_MAX_SCALE (|w| over 8.3e6 for int8, 4.6e5 for int4; 3.9e5,
/// 6 · 2^16, for mxfp4) or a value is not finite.
/// KERN_MX4: each group's e the smallest with amax ≤ 6 · 2^e, each value the nearest e2m1 times 2^e (ties to the even
/// code), so an MXFP4 group is held exactly; its scale 2^(e−1) must be an f16 (e from −23 to 16; a group of values
/// below 6 · 2^-24 is rounded against e = −23).
/// KERN_Q4Z: n/32 zero-point bytes z (0…15), padded to a multiple of 32 bytes, then int4's codes (0…15, n/2 bytes
/// in its layout), each value (code − z) × the group's f16 scale. A group of k · s (k integers spanning at most 15,
/// s an f16: an asymmetric 4-bit checkpoint's group) is held exactly; others with scale (max − min)/15 rounded up to
/// an f16 and z the rounded −min/scale (0…15), each code the rounded value / scale + z, clamped to 0…15. Its
/// products start each dot from −z · Σx (lane sums at factor −1 times each lane's group's z).
int kern_quantize_weights(int format, const float *src, size_t n, void *q, uint16_t *scales);
void kern_dequantize(int format, const void *q, const uint16_t *scales, size_t n, float *out);
/// The largest finite f16: the largest group scale int8/int4 weights can hold.
#define KERN_Q_MAX_SCALE 65504.0f
/// The largest magnitude of an int8 product's int16 activations: 127 · 256 + 127, so that each splits into two signed
/// bytes (a high and a low one, which AVX-512 VNNI multiplies by the weights with vpdpbusd).
#define KERN_Q8_ACT_LEVELS 32639
/// Activations to int16 with one scale per group of 32 (amax/KERN_Q8_ACT_LEVELS, round half to even). n a multiple
/// of 32.
void kern_quantize_act(const float *x, size_t n, int16_t *q, float *scales);
/// Y[t, r] = dot(W[r, :], X[t, :]) for a W of `rows` rows stored in `format`, over the pool. `ld` is the row stride
/// in elements (f32 only; converted formats are contiguous or in `panels`, below). Q8 rounds X to int16, Q4 to int8,
/// per group of 32, and both multiply in integer lanes. Each output element is computed the same way whatever T is and however rows are split.
/// On the calling thread, from now on: 1 makes bf16 products (on CPUs with AVX512_BF16) multiply activations
/// rounded to bf16, one vdpbf16ps per 32 values, at twice the arithmetic rate (as llama.cpp's bf16 does; for draft
/// models); 0 (the default) multiplies the f32 activations. Returns the previous setting. Other formats ignore it.
int kern_bf16_activations(int on);
/// 1 when bf16 products under kern_bf16_activations(1) use vdpbf16ps (AVX512_BF16 present, AVX-512 kernels active).
int kern_has_bf16_dot(void);
/// How a converted matrix holds its columns. width 0 (or ≥ cols): rows one after another. Otherwise in panels of
/// `width` columns (a multiple of 128; the last panel narrower when width does not divide cols): each panel holds
/// its columns of every row of the allocation (`rows` rows, row-major, rows of the panel's width), one panel after
/// another; int8/int4 scales likewise, per panel. A product then reads rows [row0, row0 + its rows) of each panel,
/// with `w` and `scales` pointing at the allocation's start. Each panel's input columns stay in L1 while its weight
/// rows stream, where a long row's input (16 KB and more of f32 for rows of 4096 values) is evicted by them.
typedef struct { size_t width, rows, row0; } kern_panels;
void kern_gemm_w_mt(int format, const void *w, size_t ld, const uint16_t *scales, kern_panels panels, const float *X,
                    size_t ldx, size_t T, size_t cols, float *Y, size_t ldy, size_t rows);
/// One product of kern_gemm_w_many: the arguments of kern_gemm_w_mt, and `act`: NULL, or (for an MLP's stacked
/// gate|up product, `rows` = 2I: gate rows then up rows) where its SwiGLU goes, T rows of I values:
/// act[t·I + j] = silu(Y[t·ldy + j]) · Y[t·ldy + I + j], as kern_swiglu_f32 computes it. A thread that computed
/// both rows j and I + j applies it to them at once, from its own cache; the calling thread does the rest.
typedef struct {
    int format; const void *w; size_t ld; const uint16_t *scales; kern_panels panels;
    const float *X; size_t ldx, T, cols; float *Y; size_t ldy, rows;
    float *act;
} kern_product;
/// n independent products in one parallel region when each has few inputs (T · cols < 65536: decode,
/// verification): their rows are split over the threads as one range, so small products (a fine-grained MoE's
/// experts) pay one fork and join, and one thread's imbalance, per region instead of each. Every output equals
/// kern_gemm_w_mt's for that product alone. Otherwise the products run one after another.
void kern_gemm_w_many(const kern_product *products, int n);
/// Products of one shape (format, rows × cols, T input rows) while profiling: calls, seconds inside
/// kern_gemm_w_mt (the pool's fork and join included) and weight bytes read.
typedef struct { int format; size_t rows, cols, T; unsigned long calls; double seconds, weight_bytes; } kern_product_stat;
/// Shapes the profile holds; products of further shapes are not recorded.
enum { KERN_PROFILE_SHAPES = 64 };
/// on = 1 clears the profile and records every product from then on; on = 0 stops recording.
void kern_products_profile(int on);
/// Copies up to `max` shapes, in the order first seen; returns how many.
int kern_products_profile_read(kern_product_stat *out, int max);
/// y[r] = dot(W[r, :], x) for r in [r0, r1) of an f32 W with row stride `ld`, in the caller's thread (the same
/// arithmetic per row as kern_gemm_w_mt).
void kern_gemv_f32(const float *W, size_t ld, const float *x, size_t cols, float *y, size_t r0, size_t r1);

// ---- Attention over a paged KV cache ------------------------------------------------------------------------------
/// KV-cache storage types. A slot is (block, kv head, position in block): slot = (block*kv_heads + head)*block_size + s.
/// V pool of one layer: element (slot, dim d) at slot*head_dim + d. K pool: each (block, head) group of block_size
/// slots stored transposed, element (slot, d) at (slot - s)*head_dim + d*block_size + s. int8 rows carry
/// kscale/vscale[slot].
enum { KERN_KV_F32 = 0, KERN_KV_F16 = 1, KERN_KV_I8 = 2 };
/// The `nq` query heads that share KV head `kv_head` (rows q + g*q_stride, g < nq) against positions [p0, p1) of
/// one sequence, whose `blocks` map position/block_size to a block id. Writes out + g*out_stride [head_dim].
/// `scores` needs room for nq * (p1 - p0) floats. vpool NULL: the keys are the values (vscale unused). sinks (NULL for
/// none): a logit per query head that joins its softmax as one more position whose value is zero (gpt-oss).
void kern_attend_group(int kvtype, const float *q, size_t q_stride, int nq, const void *kpool, const void *vpool,
                       const float *kscale, const float *vscale, const int32_t *blocks, int block_size, int kv_heads,
                       int head_dim, int kv_head, int p0, int p1, float scale, const float *sinks, float *scores,
                       float *out, size_t out_stride);
/// Writes one head's row of head_dim floats into slot `slot` of a pool (int8: symmetric per-row scale into scales):
/// as a row (block_size 0: values) or as column s of its transposed group (block_size: keys).
void kern_kv_store(int kvtype, const float *src, void *pool, float *scales, size_t slot, int head_dim, int block_size);

/// Asks the kernel to SIGKILL this process when its parent (mpirun or orted) dies, so a job killed with -9 leaves
/// no orphan ranks. Returns 0, -1 on failure, -2 when the parent is already gone.
int kern_die_with_parent(void);
/// Returns the heap's free pages to the system (after loading, whose temporaries the heap would otherwise keep).
void kern_return_free_memory(void);

#ifdef __cplusplus
}
#endif
#endif
