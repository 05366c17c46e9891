// Just enough of the CUDA programming model for g++ to compile the kernels as host code
// (kernels/host/emulator.cpp). Each emulated thread sets blockIdx/threadIdx, then runs the body.
//
// Warp-collective code (coop_mont.cuh) runs under the lockstep launcher (lockstep.hpp): every
// thread of a block is a fiber, and __shfl*_sync / __ballot_sync / __syncwarp / __syncthreads
// block until every lane named in the mask has reached the same intrinsic, so a shuffle reads
// the value its source lane offered at that very step, as on the GPU. Calling an intrinsic
// outside that launcher, with lanes at different intrinsics, or naming a lane that has exited
// or is not in the mask is an error (the launch fails with a message) rather than undefined.
#pragma once
#include <cstdint>
#include <cstring>

#define __global__
#define __host__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Shared memory is per block; the lockstep launcher runs one block at a time per host thread
// (all of its fibers on that thread), so thread_local storage is exactly one copy per block.
#define __shared__ static thread_local

struct hea_dim3 {
  unsigned x = 1, y = 1, z = 1;
};

inline thread_local hea_dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void hea_host_atomic_min(unsigned long long* p, unsigned long long v) {
  unsigned long long cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

namespace hea_emu {

enum collective_op : int { OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_SYNCWARP, OP_SYNCTHREADS };

// Implemented by lockstep.hpp: offer this lane's value to a collective and return its result.
inline uint64_t collective(collective_op op, unsigned mask, uint64_t value, int arg, int width);

template <typename T> inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T> inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace hea_emu

template <typename T> inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return hea_emu::from_bits<T>(hea_emu::collective(hea_emu::OP_SHFL, mask, hea_emu::to_bits(var), src_lane, width));
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return hea_emu::from_bits<T>(hea_emu::collective(hea_emu::OP_SHFL_UP, mask, hea_emu::to_bits(var), (int)delta, width));
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return hea_emu::from_bits<T>(
      hea_emu::collective(hea_emu::OP_SHFL_DOWN, mask, hea_emu::to_bits(var), (int)delta, width));
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return hea_emu::from_bits<T>(hea_emu::collective(hea_emu::OP_SHFL_XOR, mask, hea_emu::to_bits(var), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return (unsigned)hea_emu::collective(hea_emu::OP_BALLOT, mask, predicate != 0, 0, 32);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { hea_emu::collective(hea_emu::OP_SYNCWARP, mask, 0, 0, 32); }
inline void __syncthreads() { hea_emu::collective(hea_emu::OP_SYNCTHREADS, 0xffffffffu, 0, 0, 32); }

#include "lockstep.hpp"
