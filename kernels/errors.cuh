// Error reporting for batch kernels: one 64-bit word per launch, never printf.
//
// The word holds (index << 8) | code of the failing element with the lowest index; the host
// initialises it to all ones and raises a ValueError naming that element. Codes are mirrored
// in accel/gpu/errors.py.
#pragma once
#include "mp_arith.cuh"

// Grid-stride loop over a batch.
#define HEA_FOR_EACH_ELEMENT(i, count)                                              \
  for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; \
       i < (unsigned long long)(count); i += (unsigned long long)blockDim.x * gridDim.x)

namespace hea {

enum error_code_t : limb_t {
  ERR_NONE = 0,
  ERR_PLAINTEXT_RANGE = 1,   // plaintext >= n
  ERR_CIPHERTEXT_RANGE = 2,  // ciphertext == 0 or >= n^2
  ERR_NOT_INVERTIBLE = 3,    // no inverse modulo the modulus (negative scalar or exponent)
  ERR_MODULUS_EVEN = 4,      // Montgomery arithmetic needs an odd modulus
  ERR_INPUT_RANGE = 5,       // generic input >= modulus
  ERR_SECOND_RANGE = 6,      // the second ciphertext operand == 0 or >= n^2
};

HEA_FN void report_error(unsigned long long* err, unsigned long long index, limb_t code) {
  unsigned long long word = (index << 8) | code;
#if defined(__CUDA_ARCH__)
  atomicMin(err, word);
#else
  hea_host_atomic_min(err, word);
#endif
}

}  // namespace hea
