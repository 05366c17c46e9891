// Homomorphic sums (kernel family: reduce): products of ciphertexts mod n^2.
//
//   he_product_LP: out[t] = prod of in[t*chunk .. min((t+1)*chunk, count)) mod n^2
//
// The host launches it repeatedly (chunk = 8..64) until one ciphertext is left: a tree
// reduction whose every level is a plain batch kernel. Multiplying plain values with mont_mul
// leaves prod * R^-(g-1) for a group of g; one final mont_mul by R^g mod n^2 (r_powers[g], from
// the host, g = 0..chunk) restores the product: g + 1 multiplications per group.
// requires chunk >= 1; checks inputs in [1, n^2) when `check` is set (the first level); later
// levels read our own outputs.
#include "paillier.cuh"

using namespace hea;

#define HEA_REDUCE_KERNELS(LP)                                                                    \
  extern "C" __global__ void he_product_##LP(limb_t* out, const limb_t* in, unsigned long long count, \
      unsigned long long chunk, const limb_t* key, const limb_t* r_powers, int cs, int check,       \
      unsigned long long* err) {                                                                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    unsigned long long groups = (count + chunk - 1) / chunk;                                        \
    HEA_FOR_EACH_ELEMENT(t, groups) {                                                               \
      limb_t acc[2 * LP], c[2 * LP];                                                                \
      unsigned long long start = t * chunk, stop = start + chunk < count ? start + chunk : count;   \
      bool ok = true;                                                                               \
      for (unsigned long long i = start; i < stop; i++) {                                           \
        if (check) {                                                                                \
          if (!load_ciphertext<LP>(c, in + i * cs, cs, K, i, err)) { ok = false; break; }           \
        } else {                                                                                    \
          mp_load<2 * LP>(c, in + i * cs, cs);                                                      \
        }                                                                                           \
        if (i == start) mp_copy<2 * LP>(acc, c);                                                    \
        else mont_mul<2 * LP>(acc, acc, c, K.n2);                                                   \
      }                                                                                             \
      if (!ok) continue;                                                                            \
      mont_mul<2 * LP>(acc, acc, r_powers + (stop - start) * (2 * LP), K.n2);                       \
      mp_store<2 * LP>(out + t * cs, acc, cs);                                                      \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_REDUCE_KERNELS)
