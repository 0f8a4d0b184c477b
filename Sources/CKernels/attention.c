// Scaled dot-product attention of one query head over a paged KV cache (f32 entries).
#include "ckernels.h"
#include <math.h>

void kern_attend_f32(const float *q, const float *kpool, const float *vpool, const int32_t *blocks,
                     int block_size, int kv_heads, int head_dim, int kv_head, int p0, int p1, float scale,
                     float *scores, float *out) {
    int n = p1 - p0;
    for (int d = 0; d < head_dim; d++) out[d] = 0;
    if (n <= 0) return;
    size_t row = (size_t)head_dim;
    size_t blockStride = (size_t)kv_heads * block_size * row;
    float maxv = -INFINITY;
    for (int p = p0; p < p1; p++) {
        const float *k = kpool + (size_t)blocks[p / block_size] * blockStride + (size_t)kv_head * block_size * row +
                         (size_t)(p % block_size) * row;
        float s = kern_dot_f32(q, k, row) * scale;
        scores[p - p0] = s;
        if (s > maxv) maxv = s;
    }
    float sum = 0;
    for (int i = 0; i < n; i++) { scores[i] = expf(scores[i] - maxv); sum += scores[i]; }
    float inv = 1.0f / sum;
    for (int p = p0; p < p1; p++) {
        const float *v = vpool + (size_t)blocks[p / block_size] * blockStride + (size_t)kv_head * block_size * row +
                         (size_t)(p % block_size) * row;
        kern_axpy_f32(out, scores[p - p0] * inv, v, row);
    }
}
