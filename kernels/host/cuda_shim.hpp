// Just enough of the CUDA programming model for g++ to compile the kernels as host code
// (kernels/host/emulator.cpp). Each emulated thread sets blockIdx/threadIdx, then runs the body.
#pragma once
#include <cstdint>

#define __global__
#define __host__
#define __device__
#define __forceinline__ inline

struct hea_dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local hea_dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void hea_host_atomic_min(unsigned long long* p, unsigned long long v) {
  unsigned long long cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}
