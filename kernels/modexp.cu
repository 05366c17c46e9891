// Generic batch modular exponentiation (kernel family: modexp): the raw powmod of the API.
//
//   powmod_L: out_i = b_i^e_i mod m, or (b_i^-1)^|e_i| for negative e_i
//
// requires: m odd (Montgomery; the host sends even moduli to the CPU), m < 2^(32 L), bases
// already reduced (< m, bstride limbs each), exponent magnitudes of el limbs plus sign flags.
// `secret` selects the constant-time ladder over all 32*el exponent bits (no exponent-dependent
// branch or table address); otherwise windows start at each exponent's top bit.
// Reports ERR_MODULUS_EVEN, ERR_INPUT_RANGE (base >= m) and ERR_NOT_INVERTIBLE through err.
#include "errors.cuh"
#include "montgomery.cuh"

using namespace hea;

#define HEA_MODEXP_KERNELS(L)                                                                     \
  extern "C" __global__ void powmod_##L(limb_t* out, const limb_t* bases, const limb_t* exps,       \
      const limb_t* negative, unsigned long long count, const limb_t* modulus, int bstride, int el,  \
      int secret, unsigned long long* err) {                                                        \
    const mod_rec<L>& M = *reinterpret_cast<const mod_rec<L>*>(modulus);                            \
    if ((M.m[0] & 1u) == 0) {                                                                       \
      if (blockIdx.x == 0 && threadIdx.x == 0) report_error(err, 0, ERR_MODULUS_EVEN);              \
      return;                                                                                       \
    }                                                                                               \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t b[L];                                                                                  \
      bool fits = mp_fits<L>(bases + i * bstride, bstride);                                         \
      mp_load<L>(b, bases + i * bstride, bstride);                                                  \
      if (!fits || mp_cmp<L>(b, M.m) >= 0) { report_error(err, i, ERR_INPUT_RANGE); continue; }    \
      if (negative[i] && !mod_inverse<L>(b, b, M)) { report_error(err, i, ERR_NOT_INVERTIBLE); continue; } \
      const limb_t* e = exps + i * el;                                                              \
      to_mont<L>(b, b, M);                                                                          \
      if (secret) mont_pow_secret<L>(b, b, e, el, 32 * el, M);                                      \
      else mont_pow_public<L>(b, b, e, el, mp_bits(e, el), M);                                      \
      from_mont<L>(b, b, M);                                                                        \
      mp_store<L>(out + i * L, b, L);                                                               \
    }                                                                                               \
  }

// Moduli up to 1024, 2048, 3072, 4096, 6144 and 8192 bits (n^2 of a 4096-bit key); the run-time
// compiler defines HEA_MOD_LIMBS to build one size.
#if defined(HEA_MOD_LIMBS)
HEA_APPLY(HEA_MODEXP_KERNELS, HEA_MOD_LIMBS)
#else
HEA_MODEXP_KERNELS(32)
HEA_MODEXP_KERNELS(64)
HEA_MODEXP_KERNELS(96)
HEA_MODEXP_KERNELS(128)
HEA_MODEXP_KERNELS(192)
HEA_MODEXP_KERNELS(256)
#endif
