// Seconds on the monotonic clock, for the kernels' own timings (the products' profile, the pool's round-trip probe).
#pragma once
#include <time.h>

static inline double kern_monotonic_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
