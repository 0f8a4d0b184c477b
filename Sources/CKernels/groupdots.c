// int8 / int4 / int4z / mxfp4 weights (groups of 32, one f16 scale each, laid out as grouplayout.h says): each group's
// dot in integer lanes against activations rounded per group, with AVX-512 VNNI, AVX2 or portable C. products.h says
// how their inputs are held.
#include "products.h"

AVX512_EXTENSION(has_vnni, "avx512vnni")

// int8 and int4 rows are read 256 bytes ahead of use (a quad of groups, 2 cache lines of int8 or 1 of int4, at a
// time): at one input row their loops are short enough per byte that the hardware prefetcher alone leaves them
// waiting (int4 with groups in pairs: decode +4%, 6 of 8 A/B pairs; 1024 bytes ahead was slower; with quads 512
// ahead was 0.986×. int8 with quads, as loaded by vpdpbusd: 1.16× at four input rows and 1.00× at one in minutes
// at 60+ GB/s, where without it one row ran at 0.96–0.98×, and 384 or 512 ahead at 0.97× and 0.92×).
#define Q_PREFETCH 256


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

void kern_qq_task(void *p, size_t r0, size_t r1) {
    const qq_ctx *c = (const qq_ctx *)p;
    int q8 = c->format == KERN_Q8;
    if (c->path == QQ_VNNI) { if (q8) qq_range_vnni_q8(c, r0, r1); else qq_range_vnni_q4(c, r0, r1); }
    else if (c->path == QQ_AVX2 && c->format == KERN_MX4) qq_range_avx2_mx4(c, r0, r1);
    else if (c->path == QQ_AVX2 && c->format == KERN_Q4Z) qq_range_avx2_q4z(c, r0, r1);
    else if (c->path == QQ_AVX2) { if (q8) qq_range_avx2_q8(c, r0, r1); else qq_range_avx2_q4(c, r0, r1); }
    else qq_range_portable(c, r0, r1);
}

int kern_qq_path(int format) {
    // mxfp4 and int4z have AVX2 and portable kernels (AVX-512 machines run the AVX2 one).
    return has_vnni() && format != KERN_MX4 && format != KERN_Q4Z ? QQ_VNNI
         : kern_isa_active() >= KERN_ISA_AVX2 ? QQ_AVX2 : QQ_PORTABLE;
}
