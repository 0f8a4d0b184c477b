// Where int8 / int4 values sit in a row as the products read it (private to CKernels; quant.c packs weights this
// way at load, products.c packs activations this way per call).
//
// A row's groups of 32 are taken in fours (a "quad"). Within a quad the four groups' values take turns in units of
// one dot lane, 4 values (vpdpbusd adds 4 byte products into an int32 lane). So a 512-bit dot over a quad's vectors
// leaves group 4q + h in the int32 lanes l with l mod 4 = h, and the four groups are scaled by one multiply with
// their four scales broadcast as one 16-byte block, with no shuffle per row. The last groups%4 groups of a row (a
// tail of 1–3 groups) stay each in value order.
//
//   int8 weights (bytes, stored as v + 128: vpdpbusd's unsigned operand), int8-product activations (int16, then
//   for VNNI their high and low bytes, see products.c) and int4-product activations (int8): value j of group 4q + h
//   at 128q + 16(j/4) + 4h + j%4 (values 16..31 of the groups thus fill values 64..127 of the quad: its "high" half).
//   int4 weights: the low nibble of byte k of a quad's 64 bytes is the activation at 128q + k, the high nibble the
//     activation at 128q + 64 + k; stored as v + 8. A tail group: byte j holds value j (low) and j + 16 (high).
#ifndef MOE_CKERNELS_GROUPLAYOUT_H
#define MOE_CKERNELS_GROUPLAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/// Values per dot lane.
#define UNIT 4
/// Groups whose values take turns.
#define QUAD 4

/// The groups of a row that are taken in fours (the rest, groups % 4, form the tail).
static inline size_t quad_groups(size_t groups) { return groups - groups % QUAD; }

/// True for a group of the tail: it stays in value order.
static inline int tail_group(size_t groups, size_t g) { return g >= quad_groups(groups); }

/// Index (in values) of value j of group g in a row of `groups` groups.
static inline size_t group_pos(size_t groups, size_t g, size_t j) {
    if (tail_group(groups, g)) return g * 32 + j;
    size_t h = g % QUAD;
    return (g - h) * 32 + (QUAD * (j / UNIT) + h) * UNIT + j % UNIT;
}

/// Rewrites a row of `groups` groups of `gbytes` bytes each, every group in value order, into the order above:
/// each quad's four groups take turns in units of `ubytes` bytes (int8 weights and int4 products' activations 32,
/// 4; int4 weights 16, 4; int8 products' activations 64, 8). The tail stays as it is.
static inline void pack_groups(uint8_t *row, size_t groups, size_t gbytes, size_t ubytes) {
    uint8_t quad[QUAD * 64];
    for (size_t g = 0; g < quad_groups(groups); g += QUAD) {
        const uint8_t *src = row + g * gbytes;
        for (size_t u = 0; u < gbytes / ubytes; u++)
            for (size_t h = 0; h < QUAD; h++)
                memcpy(quad + (QUAD * u + h) * ubytes, src + h * gbytes + u * ubytes, ubytes);
        memcpy(row + g * gbytes, quad, QUAD * gbytes);
    }
}

/// Value j of group g of an int8 weight row (−127…127).
static inline int q8_value(const uint8_t *row, size_t groups, size_t g, size_t j) {
    return (int)row[group_pos(groups, g, j)] - 128;
}

/// Value j of group g of an int4 weight row (−8…7).
static inline int q4_value(const uint8_t *row, size_t groups, size_t g, size_t j) {
    if (tail_group(groups, g)) {
        uint8_t b = row[g * 16 + j % 16];
        return (j < 16 ? (b & 15) : (b >> 4)) - 8;
    }
    size_t k = group_pos(groups, g, j), quad = k / 128, in = k % 128;
    uint8_t b = row[quad * 64 + in % 64];
    return (in < 64 ? (b & 15) : (b >> 4)) - 8;
}

#endif
