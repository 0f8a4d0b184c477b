// Where int8 / int4 values sit in a row as the products read it (private to CKernels; quant.c packs weights this
// way at load, products.c packs activations this way per call).
//
// A row's groups of 32 are taken in pairs. Within a pair the two groups' values alternate in units of one dot lane:
// 2 values for int8 (vpdpwssd / vpmaddwd add pairs of int16 products into an int32 lane), 4 for int4 (vpdpbusd adds
// 4 byte products). So a dot over a pair's vectors leaves group 2p in the even int32 lanes and group 2p + 1 in the
// odd ones, and both groups are scaled by one multiply with their two scales broadcast as one 8-byte pair, with no
// shuffle per row. A last group without a partner stays in value order.
//
//   int8 weights (bytes) and int8-product activations (int16): value j of group 2p + h at 64p + 4(j/2) + 2h + j%2.
//   int4-product activations (int8): value j of group 2p + h at 64p + 8(j/4) + 4h + j%4 (values 16..31 thus fill
//     bytes 32..63 of the pair: the "high" half).
//   int4 weights: the low nibble of byte k of a pair's 32 bytes (k < 32) is the activation at 64p + k, the high
//     nibble the activation at 64p + 32 + k; stored as v + 8. A last group alone: byte j holds value j (low) and
//     j + 16 (high).
#ifndef MOE_CKERNELS_GROUPLAYOUT_H
#define MOE_CKERNELS_GROUPLAYOUT_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/// Values per dot lane: 2 for int8 (KERN_Q8), 4 for int4 (KERN_Q4).
#define Q8_UNIT 2
#define Q4_UNIT 4

/// True for the last group of a row of an odd number of groups: it has no partner and stays in value order.
static inline int lone_group(size_t groups, size_t g) { return (g & 1) == 0 && g + 1 >= groups; }

/// Index (in values) of value j of group g in a row of `groups` groups packed with `unit` values per lane.
static inline size_t group_pos(size_t groups, size_t g, size_t j, size_t unit) {
    if (lone_group(groups, g)) return g * 32 + j;
    size_t h = g & 1;
    return (g - h) * 32 + (2 * (j / unit) + h) * unit + j % unit;
}

/// out = a[0] b[0] a[1] b[1] …: n units of `unit` bytes from a and from b alternately (out must not overlap a, b).
static inline void interleave_units(const uint8_t *a, const uint8_t *b, size_t unit, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        memcpy(out + 2 * i * unit, a + i * unit, unit);
        memcpy(out + (2 * i + 1) * unit, b + i * unit, unit);
    }
}

/// Rewrites a row of `groups` groups of `gbytes` bytes each, every group in value order, into the paired order above:
/// each pair's two groups alternate in units of `ubytes` bytes (int8 weights 32, 2; int4 weights 16, 4; int16
/// activations 64, 4; int8 activations 32, 4). A last group alone stays as it is.
static inline void pack_groups(uint8_t *row, size_t groups, size_t gbytes, size_t ubytes) {
    uint8_t pair[128];
    for (size_t g = 0; g + 2 <= groups; g += 2) {
        interleave_units(row + g * gbytes, row + (g + 1) * gbytes, ubytes, gbytes / ubytes, pair);
        memcpy(row + g * gbytes, pair, 2 * gbytes);
    }
}

/// Value j of group g of an int4 weight row (−8…7).
static inline int q4_value(const uint8_t *row, size_t groups, size_t g, size_t j) {
    if (lone_group(groups, g)) {
        uint8_t b = row[g * 16 + j % 16];
        return (j < 16 ? (b & 15) : (b >> 4)) - 8;
    }
    size_t k = group_pos(groups, g, j, Q4_UNIT), pair = k / 64, in = k % 64;
    uint8_t b = row[pair * 32 + in % 32];
    return (in < 32 ? (b & 15) : (b >> 4)) - 8;
}

#endif
