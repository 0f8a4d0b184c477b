// An int8 / int4 / int4z / mxfp4 product's activations: each input row rounded per group of 32 (int16 for int8
// weights, int8 for the 4-bit ones), packed in the weights' order (grouplayout.h), with the lane sums that start each
// group dot (groupdots.c multiplies them; products.h says how each path holds them).
#include "products.h"

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

void kern_act_task(void *p, size_t b, size_t e) {
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
