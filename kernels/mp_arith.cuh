// Multi-precision primitives on little-endian arrays of 32-bit limbs. No __global__ here.
//
// Every function is __host__ __device__: the GPU runs it, and the CPU tests compile the very same
// text with g++ (kernels/host/emulator.cpp) and check it against gmpy2. Sizes are compile-time
// template parameters so loops unroll and arrays stay in registers / local memory.
#pragma once

#if defined(__CUDACC__)
#define HEA_FN __host__ __device__ __forceinline__
// Big routines (a Montgomery multiplication over 64-256 limbs) are called, not inlined: their
// operands live in local memory either way, and inlining every call site multiplies code size
// and compile time (minutes per size class) for no gain.
#define HEA_BIG_FN __host__ __device__ __noinline__
#define HEA_PRAGMA(x) _Pragma(#x)
#define HEA_UNROLL(n) HEA_PRAGMA(unroll n)
// Limb loops unroll by a small factor, never fully: a fully unrolled 128- or 256-limb loop
// keeps every limb live at once (255 registers, spills) and costs minutes of ptxas per class.
#define HEA_LIMB_LOOP HEA_UNROLL(4)
#if defined(__CUDACC_RTC__)
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <cstdint>
#endif
#else
#include "host/cuda_shim.hpp"
#define HEA_FN inline
#define HEA_BIG_FN inline
#define HEA_UNROLL(n)
#define HEA_LIMB_LOOP
#endif

// Apply a kernel-instantiating macro to a size given as a macro (HEA_KEY_CLASS, HEA_MOD_LIMBS):
// the extra level expands the size to its number before X pastes it into kernel names
// (an operand of ## is not macro-expanded, so X(HEA_KEY_CLASS) would name kernels
// paillier_encrypt_HEA_KEY_CLASS).
#define HEA_APPLY(X, size) X(size)

typedef uint32_t limb_t;

namespace hea {

// r = a (L limbs)
template <int L> HEA_FN void mp_copy(limb_t* r, const limb_t* a) {
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) r[i] = a[i];
}

template <int L> HEA_FN void mp_set_ui(limb_t* r, limb_t v) {
  r[0] = v;
  HEA_LIMB_LOOP
  for (int i = 1; i < L; i++) r[i] = 0;
}

// Load an element stored with `stride` limbs into L limbs, zero-extended (stride may be < L).
// requires: stride <= L or the limbs above L are zero (checked by the caller via mp_fits).
template <int L> HEA_FN void mp_load(limb_t* r, const limb_t* src, int stride) {
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) r[i] = i < stride ? src[i] : 0u;
}

// True when the limbs of a stride-wide element above L are all zero.
template <int L> HEA_FN bool mp_fits(const limb_t* src, int stride) {
  limb_t acc = 0;
  HEA_LIMB_LOOP
  for (int i = L; i < stride; i++) acc |= src[i];
  return acc == 0;
}

// Store the low `stride` limbs of r (r < 2^(32*stride) is the caller's precondition).
template <int L> HEA_FN void mp_store(limb_t* dst, const limb_t* r, int stride) {
  HEA_LIMB_LOOP
  for (int i = 0; i < stride; i++) dst[i] = i < L ? r[i] : 0u;
}

// r = a + b, returns the carry out. r may alias a or b.
template <int L> HEA_FN limb_t mp_add(limb_t* r, const limb_t* a, const limb_t* b) {
  uint64_t c = 0;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) {
    c += (uint64_t)a[i] + b[i];
    r[i] = (limb_t)c;
    c >>= 32;
  }
  return (limb_t)c;
}

// r = a - b, returns the borrow out (1 when a < b). r may alias a or b.
template <int L> HEA_FN limb_t mp_sub(limb_t* r, const limb_t* a, const limb_t* b) {
  limb_t borrow = 0;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) {
    uint64_t d = (uint64_t)a[i] - b[i] - borrow;
    r[i] = (limb_t)d;
    borrow = (limb_t)(d >> 32) & 1u;
  }
  return borrow;
}

// r = a + v (single limb), returns the carry.
template <int L> HEA_FN limb_t mp_add_ui(limb_t* r, const limb_t* a, limb_t v) {
  uint64_t c = v;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) {
    c += a[i];
    r[i] = (limb_t)c;
    c >>= 32;
  }
  return (limb_t)c;
}

// Branch-free select: r = flag ? a : b, flag in {0, 1}. Used where the flag is secret.
template <int L> HEA_FN void mp_select(limb_t* r, limb_t flag, const limb_t* a, const limb_t* b) {
  limb_t mask = 0u - flag;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) r[i] = (a[i] & mask) | (b[i] & ~mask);
}

// -1 / 0 / +1 for a < b, a == b, a > b (variable time: public data only).
template <int L> HEA_FN int mp_cmp(const limb_t* a, const limb_t* b) {
  HEA_LIMB_LOOP
  for (int i = L - 1; i >= 0; i--) {
    if (a[i] != b[i]) return a[i] > b[i] ? 1 : -1;
  }
  return 0;
}

template <int L> HEA_FN bool mp_is_zero(const limb_t* a) {
  limb_t acc = 0;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) acc |= a[i];
  return acc == 0;
}

template <int L> HEA_FN bool mp_is_one(const limb_t* a) {
  limb_t acc = a[0] ^ 1u;
  HEA_LIMB_LOOP
  for (int i = 1; i < L; i++) acc |= a[i];
  return acc == 0;
}

// Significant bits of one nonzero limb.
HEA_FN int limb_bits(limb_t v) {
#if defined(__CUDA_ARCH__)
  return 32 - __clz(v);
#else
  return 32 - __builtin_clz(v);
#endif
}

// Number of significant bits of the n-limb number a (0 for a == 0). Variable time.
HEA_FN int mp_bits(const limb_t* a, int n) {
  HEA_LIMB_LOOP
  for (int i = n - 1; i >= 0; i--) {
    if (a[i]) return 32 * i + limb_bits(a[i]);
  }
  return 0;
}

// Bits [pos, pos+w) of the n-limb number a (w <= 8; bits past the top read as zero).
HEA_FN limb_t mp_window(const limb_t* a, int n, int pos, int w) {
  int li = pos >> 5, sh = pos & 31;
  uint64_t v = li < n ? a[li] : 0u;
  if (li + 1 < n) v |= (uint64_t)a[li + 1] << 32;
  return (limb_t)(v >> sh) & ((1u << w) - 1u);
}

// r = a >> 1 with `top` shifted into the most significant bit.
template <int L> HEA_FN void mp_shr1(limb_t* r, const limb_t* a, limb_t top) {
  HEA_LIMB_LOOP
  for (int i = 0; i < L - 1; i++) r[i] = (a[i] >> 1) | (a[i + 1] << 31);
  r[L - 1] = (a[L - 1] >> 1) | (top << 31);
}

// r (LA+LB limbs) = a * b, schoolbook. r must not alias a or b.
template <int LA, int LB> HEA_FN void mp_mul(limb_t* r, const limb_t* a, const limb_t* b) {
  HEA_LIMB_LOOP
  for (int i = 0; i < LA + LB; i++) r[i] = 0;
  HEA_UNROLL(1)
  for (int i = 0; i < LA; i++) {
    uint64_t c = 0;
    limb_t ai = a[i];
    HEA_LIMB_LOOP
    for (int j = 0; j < LB; j++) {
      c += (uint64_t)ai * b[j] + r[i + j];
      r[i + j] = (limb_t)c;
      c >>= 32;
    }
    r[i + LB] = (limb_t)c;
  }
}

// r = (a * b) mod 2^(32L): the low half only (exact division by an odd divisor uses this).
template <int L> HEA_FN void mp_mul_low(limb_t* r, const limb_t* a, const limb_t* b) {
  limb_t t[L];
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) t[i] = 0;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) {
    uint64_t c = 0;
    limb_t ai = a[i];
    HEA_LIMB_LOOP
    for (int j = 0; j + i < L; j++) {
      c += (uint64_t)ai * b[j] + t[i + j];
      t[i + j] = (limb_t)c;
      c >>= 32;
    }
  }
  mp_copy<L>(r, t);
}

}  // namespace hea
