// Run-time instruction-set selection. Kernels branch on kern_isa_active() once per call, not per element.
#include "ckernels.h"
#include <stdatomic.h>

static atomic_int detected = -1;
// Per thread: a test that forces the portable path must not change the kernels other threads run meanwhile.
static _Thread_local int forced = -1;

int kern_isa_detected(void) {
    int d = atomic_load(&detected);
    if (d >= 0) return d;
    __builtin_cpu_init();
    d = KERN_ISA_PORTABLE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        d = KERN_ISA_AVX2;
    if (d == KERN_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        d = KERN_ISA_AVX512;
    atomic_store(&detected, d);
    return d;
}

int kern_isa_active(void) {
    int f = forced;
    int d = kern_isa_detected();
    return (f >= 0 && f < d) ? f : d;
}

void kern_isa_force(int isa) { forced = isa; }

const char *kern_isa_name(int isa) {
    switch (isa) {
    case KERN_ISA_AVX512: return "avx512";
    case KERN_ISA_AVX2: return "avx2+fma";
    default: return "portable";
    }
}
