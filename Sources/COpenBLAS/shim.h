// CBLAS from OpenBLAS (pkg-config "openblas", not the reference "blas").
#ifndef MOE_COPENBLAS_SHIM_H
#define MOE_COPENBLAS_SHIM_H
#include <cblas.h>
#endif
