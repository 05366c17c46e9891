// Element-wise homomorphic operations (kernel family: homomorphic).
//
//   he_add_LP        E(a + b)   = c1 c2 mod n^2           (also rerandomisation by a given x)
//   he_add_plain_LP  E(a + m)   = c (1 + m n) mod n^2
//   he_mul_scalar_LP E(a k)     = c^|k| mod n^2, or (c^-1)^|k| for negative k
//
// requires: scalars |k| < n given as magnitudes (ks, kstride limbs each) plus sign flags.
// Checks ciphertexts in [1, n^2), plaintexts < n; a non-invertible c with k < 0 reports
// ERR_NOT_INVERTIBLE. Scalars are the caller's own plaintext: public-exponent exponentiation.
#include "paillier.cuh"

using namespace hea;

#define HEA_HOMOMORPHIC_KERNELS(LP)                                                               \
  extern "C" __global__ void he_add_##LP(limb_t* out, const limb_t* as, const limb_t* bs,           \
      unsigned long long count, const limb_t* key, int cs, unsigned long long* err) {               \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t a[2 * LP], b[2 * LP];                                                                  \
      if (!load_ciphertext<LP>(a, as + i * cs, cs, K, i, err)) continue;                            \
      if (!load_ciphertext<LP>(b, bs + i * cs, cs, K, i, err, ERR_SECOND_RANGE)) continue;          \
      to_mont<2 * LP>(a, a, K.n2);                                                                  \
      mont_mul<2 * LP>(a, a, b, K.n2);                                                              \
      mp_store<2 * LP>(out + i * cs, a, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void he_add_plain_##LP(limb_t* out, const limb_t* cts, const limb_t* ms,    \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {       \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t c[2 * LP], g[2 * LP], m[LP];                                                           \
      if (!load_ciphertext<LP>(c, cts + i * cs, cs, K, i, err)) continue;                           \
      if (!load_plaintext<LP>(m, ms + i * ps, ps, K, i, err)) continue;                             \
      g_pow_m<LP>(g, m, K);                                                                         \
      to_mont<2 * LP>(c, c, K.n2);                                                                  \
      mont_mul<2 * LP>(c, c, g, K.n2);                                                              \
      mp_store<2 * LP>(out + i * cs, c, cs);                                                        \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void he_mul_scalar_##LP(limb_t* out, const limb_t* cts, const limb_t* ks,   \
      const limb_t* negative, unsigned long long count, const limb_t* key, int cs, int kstride,     \
      unsigned long long* err) {                                                                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t c[2 * LP];                                                                             \
      if (!load_ciphertext<LP>(c, cts + i * cs, cs, K, i, err)) continue;                           \
      if (negative[i] && !mod_inverse<2 * LP>(c, c, K.n2)) {                                        \
        report_error(err, i, ERR_NOT_INVERTIBLE);                                                   \
        continue;                                                                                   \
      }                                                                                             \
      const limb_t* k = ks + i * kstride;                                                           \
      int kbits = mp_bits(k, kstride);                                                              \
      to_mont<2 * LP>(c, c, K.n2);                                                                  \
      mont_pow_public<2 * LP>(c, c, k, kstride, kbits, K.n2);                                       \
      from_mont<2 * LP>(c, c, K.n2);                                                                \
      mp_store<2 * LP>(out + i * cs, c, cs);                                                        \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_HOMOMORPHIC_KERNELS)
