// Batch Paillier encryption and obfuscation (kernel family: encrypt).
//
//   paillier_encrypt_LP      c = (1 + m n) r^n mod n^2            (textbook, public key only)
//   paillier_obfuscate_LP    r^n mod n^2                          (obfuscator pools)
//   paillier_rerandomize_LP  c' = c r^n mod n^2
//   paillier_encrypt_with_LP c = (1 + m n) x mod n^2, x a precomputed obfuscator (or 1)
//   paillier_crt_obfuscate_LP / paillier_crt_encrypt_LP: the key holder's CRT path
//
// requires: r in [1, n) coprime to n, zp in [1, p), zq in [1, q), all drawn by the host CSPRNG.
// Checks plaintexts (< n) and ciphertexts (in [1, n^2)) and reports through err.
// Strides: ps / cs limbs per plaintext / ciphertext element in memory (may be < LP / 2 LP).
#include "paillier.cuh"

using namespace hea;

#define HEA_ENCRYPT_KERNELS(LP)                                                                   \
  extern "C" __global__ void paillier_encrypt_##LP(limb_t* out, const limb_t* ms, const limb_t* rs, \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {       \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t m[LP], g[2 * LP], x[2 * LP], r[LP];                                                    \
      if (!load_plaintext<LP>(m, ms + i * ps, ps, K, i, err)) continue;                             \
      mp_load<LP>(r, rs + i * ps, ps);                                                              \
      r_pow_n_mont<LP>(x, r, K);                                                                    \
      g_pow_m<LP>(g, m, K);                                                                         \
      mont_mul<2 * LP>(x, g, x, K.n2); /* g * (r^n R) / R */                                        \
      mp_store<2 * LP>(out + i * cs, x, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void paillier_obfuscate_##LP(limb_t* out, const limb_t* rs,                 \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {       \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    (void)err; /* nothing to check: r comes from the host CSPRNG */                                 \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t x[2 * LP], r[LP];                                                                      \
      mp_load<LP>(r, rs + i * ps, ps);                                                              \
      r_pow_n_mont<LP>(x, r, K);                                                                    \
      from_mont<2 * LP>(x, x, K.n2);                                                                \
      mp_store<2 * LP>(out + i * cs, x, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void paillier_rerandomize_##LP(limb_t* out, const limb_t* cts,              \
      const limb_t* rs, unsigned long long count, const limb_t* key, int ps, int cs,                \
      unsigned long long* err) {                                                                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t c[2 * LP], x[2 * LP], r[LP];                                                           \
      if (!load_ciphertext<LP>(c, cts + i * cs, cs, K, i, err)) continue;                           \
      mp_load<LP>(r, rs + i * ps, ps);                                                              \
      r_pow_n_mont<LP>(x, r, K);                                                                    \
      mont_mul<2 * LP>(x, c, x, K.n2);                                                              \
      mp_store<2 * LP>(out + i * cs, x, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void paillier_encrypt_with_##LP(limb_t* out, const limb_t* ms,              \
      const limb_t* obf, int has_obf, unsigned long long count, const limb_t* key, int ps, int cs,  \
      unsigned long long* err) {                                                                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t m[LP], g[2 * LP], x[2 * LP];                                                           \
      if (!load_plaintext<LP>(m, ms + i * ps, ps, K, i, err)) continue;                             \
      g_pow_m<LP>(g, m, K);                                                                         \
      if (has_obf) {                                                                                \
        if (!load_ciphertext<LP>(x, obf + i * cs, cs, K, i, err)) continue;                         \
        to_mont<2 * LP>(x, x, K.n2);                                                                \
        mont_mul<2 * LP>(g, g, x, K.n2);                                                            \
      }                                                                                             \
      mp_store<2 * LP>(out + i * cs, g, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void paillier_crt_obfuscate_##LP(limb_t* out, const limb_t* zps,            \
      const limb_t* zqs, unsigned long long count, const limb_t* key, int ps, int cs,               \
      unsigned long long* err) {                                                                    \
    const crt_rec<LP>& K = *reinterpret_cast<const crt_rec<LP>*>(key);                              \
    (void)err;                                                                                      \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t x[2 * LP], zp[LP], zq[LP];                                                             \
      mp_load<LP>(zp, zps + i * ps, ps);                                                            \
      mp_load<LP>(zq, zqs + i * ps, ps);                                                            \
      crt_obfuscator<LP>(x, zp, zq, K);                                                             \
      mp_store<2 * LP>(out + i * cs, x, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void paillier_crt_encrypt_##LP(limb_t* out, const limb_t* ms,               \
      const limb_t* zps, const limb_t* zqs, unsigned long long count, const limb_t* key, int ps,    \
      int cs, unsigned long long* err) {                                                            \
    const crt_rec<LP>& K = *reinterpret_cast<const crt_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t m[LP], g[2 * LP], x[2 * LP], zp[LP], zq[LP];                                           \
      if (!load_plaintext<LP>(m, ms + i * ps, ps, K.pub, i, err)) continue;                         \
      mp_load<LP>(zp, zps + i * ps, ps);                                                            \
      mp_load<LP>(zq, zqs + i * ps, ps);                                                            \
      crt_obfuscator<LP>(x, zp, zq, K);                                                             \
      to_mont<2 * LP>(x, x, K.pub.n2);                                                              \
      g_pow_m<LP>(g, m, K.pub);                                                                     \
      mont_mul<2 * LP>(x, g, x, K.pub.n2);                                                          \
      mp_store<2 * LP>(out + i * cs, x, cs);                                                        \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_ENCRYPT_KERNELS)
