// DJN fast encryption with fixed-base tables (kernel family: djn). Opt-in.
//
//   c = (1 + m n) * hs^r mod n^2,  hs = h^n mod n^2 public, r of `windows * W` bits
//
// Damgard-Jurik-Nielsen: hs^r is an n-th residue like r'^n, so ciphertexts are standard Paillier
// (any peer decrypts them); the short r (|n|/2 bits by default) needs the short-exponent
// assumption on top of DCRA. Because hs is fixed, a comb table T[k][d] = hs^(d 2^(W k)) (Montgomery
// form, resident on the device) turns hs^r into `windows` multiplications and no squarings.
//   djn_table_LP    thread k builds row k (hs_m: hs in Montgomery form)
//   djn_encrypt_LP  per element; r is secret, so every table row is read whole and one entry kept
//                   by mask (no secret-dependent address). has_m = 0 gives the obfuscator alone.
// requires: table of windows * 2^W entries of 2 LP limbs; r of rstride limbs from the host CSPRNG.
#include "paillier.cuh"

using namespace hea;

#define HEA_DJN_KERNELS(LP)                                                                       \
  extern "C" __global__ void djn_table_##LP(limb_t* table, const limb_t* hs_m, int windows,         \
      const limb_t* key) {                                                                          \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    const int W = HEA_WINDOW, T = 1 << HEA_WINDOW;                                                  \
    HEA_FOR_EACH_ELEMENT(k, windows) {                                                              \
      limb_t base[2 * LP];                                                                          \
      mp_copy<2 * LP>(base, hs_m);                                                                  \
      for (unsigned long long s = 0; s < W * k; s++) mont_mul<2 * LP>(base, base, base, K.n2);      \
      window_table<2 * LP>(table + k * T * (2 * LP), base, K.n2);                                   \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void djn_encrypt_##LP(limb_t* out, const limb_t* ms, int has_m,             \
      const limb_t* rs, unsigned long long count, const limb_t* table, int windows,                 \
      const limb_t* key, int ps, int rstride, int cs, unsigned long long* err) {                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    const int W = HEA_WINDOW, T = 1 << HEA_WINDOW;                                                  \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t m[LP], acc[2 * LP], pick[2 * LP], g[2 * LP];                                           \
      if (has_m && !load_plaintext<LP>(m, ms + i * ps, ps, K, i, err)) continue;                    \
      const limb_t* r = rs + i * rstride;                                                           \
      mont_one<2 * LP>(acc, K.n2);                                                                  \
      for (int k = 0; k < windows; k++) {                                                           \
        select_entry<2 * LP>(pick, table + (unsigned long long)k * T * (2 * LP),                    \
                             mp_window(r, rstride, k * W, W));                                      \
        mont_mul<2 * LP>(acc, acc, pick, K.n2);                                                     \
      }                                                                                             \
      if (has_m) {                                                                                  \
        g_pow_m<LP>(g, m, K);                                                                       \
        mont_mul<2 * LP>(acc, g, acc, K.n2);                                                        \
      } else {                                                                                      \
        from_mont<2 * LP>(acc, acc, K.n2);                                                          \
      }                                                                                             \
      mp_store<2 * LP>(out + i * cs, acc, cs);                                                      \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_DJN_KERNELS)
