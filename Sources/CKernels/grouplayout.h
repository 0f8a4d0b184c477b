// Where int8 / int4 values sit in a row as the products read it (private to CKernels; quant.c packs weights this
// way at load, groupinputs.c packs activations this way per call).
//
// A row's groups of 32 are taken in blocks whose groups' values take turns in units of one dot lane, 4 values
// (vpdpbusd adds 4 byte products into an int32 lane): first "spans" of 16 groups, then "quads" of 4 for what is left,
// then the last groups%4 groups (a tail of 1–3) each in value order (a block of 1). In a block of S groups, value j
// of group h sits at (S·(j/4) + h)·4 + j%4: a 512-bit dot over a span's vectors leaves group h in int32 lane h, so
// the span's 16 groups are scaled by one multiply with their 16 scales as stored (one load, no shuffle); over a
// quad's vectors it leaves group h in the lanes l with l mod 4 = h (its four scales broadcast as one 16-byte block).
// Against quads alone, spans take a quarter of the conversions and scale multiplies per weight byte.
//
//   int8 weights (bytes, stored as v + 128: vpdpbusd's unsigned operand), int8-product activations (int16, then
//   for VNNI their high and low bytes, see products.h) and int4-product activations (int8): at the position above.
//   int4 weights: a block of S groups is S·16 bytes; the low nibble of its byte k holds the value at position k, the
//   high nibble the value at position S·16 + k; stored as v + 8. (A tail group: byte j holds value j and j + 16.)
#ifndef MOE_CKERNELS_GROUPLAYOUT_H
#define MOE_CKERNELS_GROUPLAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/// Values per dot lane.
#define UNIT 4
/// Groups in a span and in a quad.
#define SPAN 16
#define QUAD 4

/// End of the groups taken in spans, and of those taken in quads (the rest, groups % 4, form the tail).
static inline size_t span_groups(size_t groups) { return groups - groups % SPAN; }
static inline size_t quad_groups(size_t groups) { return groups - groups % QUAD; }

/// The block holding group g: its first group and its size (SPAN, QUAD or 1).
static inline size_t block_of(size_t groups, size_t g, size_t *size) {
    size_t spans = span_groups(groups);
    if (g < spans) { *size = SPAN; return g - g % SPAN; }
    if (g < quad_groups(groups)) { *size = QUAD; return g - (g - spans) % QUAD; }
    *size = 1;
    return g;
}

/// Index (in values) of value j of group g in a row of `groups` groups.
static inline size_t group_pos(size_t groups, size_t g, size_t j) {
    size_t S, b = block_of(groups, g, &S);
    return b * 32 + (S * (j / UNIT) + (g - b)) * UNIT + j % UNIT;
}

/// Rewrites a row of `groups` groups of `gbytes` bytes each, every group in value order, into the order above:
/// each block's groups take turns in units of `ubytes` bytes (int8 weights and int4 products' activations 32, 4;
/// int4 weights 16, 4; int8 products' activations 64, 8). The tail stays as it is.
static inline void pack_groups(uint8_t *row, size_t groups, size_t gbytes, size_t ubytes) {
    uint8_t block[SPAN * 64];
    for (size_t g = 0, S; g < quad_groups(groups); g += S) {
        block_of(groups, g, &S);
        const uint8_t *src = row + g * gbytes;
        for (size_t u = 0; u < gbytes / ubytes; u++)
            for (size_t h = 0; h < S; h++) memcpy(block + (S * u + h) * ubytes, src + h * gbytes + u * ubytes, ubytes);
        memcpy(row + g * gbytes, block, S * gbytes);
    }
}

/// Value j of group g of an int8 weight row (−127…127).
static inline int q8_value(const uint8_t *row, size_t groups, size_t g, size_t j) {
    return (int)row[group_pos(groups, g, j)] - 128;
}

/// The 4-bit code of value j of group g of an int4, int4z or mxfp4 weight row.
static inline int q4_code(const uint8_t *row, size_t groups, size_t g, size_t j) {
    size_t S, b = block_of(groups, g, &S), k = group_pos(groups, g, j) - b * 32, half = S * 16;
    uint8_t byte = row[b * 16 + k % half];
    return k < half ? (byte & 15) : (byte >> 4);
}

/// Value j of group g of an int4 weight row (−8…7).
static inline int q4_value(const uint8_t *row, size_t groups, size_t g, size_t j) { return q4_code(row, groups, g, j) - 8; }

/// Bytes of an int4z row's zero points, one per group, which come before its codes: padded to a multiple of 32 so the
/// codes' 32-byte loads never straddle a cache line, and first so that the row is read front to back in one stream.
static inline size_t q4z_zero_bytes(size_t groups) { return (groups + 31) / 32 * 32; }

/// Value j of group g of an int4z weight row (−15…15): its code (int4's layout, after the zero points) less the
/// group's zero point row[g].
static inline int q4z_value(const uint8_t *row, size_t groups, size_t g, size_t j) {
    return q4_code(row + q4z_zero_bytes(groups), groups, g, j) - (int)row[g];
}

/// Twice the e2m1 value of each mxfp4 code (−12…12), and that plus 12 (0…24: the unsigned operand the products
/// multiply, their dots starting from −12 · Σx).
static const int8_t MX4_TWICE[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
#define MX4_OFFSET 12

/// Value j of group g of an mxfp4 weight row, doubled (−12…12).
static inline int mx4_value(const uint8_t *row, size_t groups, size_t g, size_t j) { return MX4_TWICE[q4_code(row, groups, g, j)]; }

#endif
