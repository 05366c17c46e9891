// Paillier encryption and obfuscators on the cooperative core (kernel family: paillier_coop).
//
//   paillier_encrypt_coop_LP    c = (1 + m n) r^n mod n^2   (textbook, public key only)
//   paillier_obfuscate_coop_LP  r^n mod n^2                 (obfuscator pools)
//
// Same arguments and results as paillier_encrypt_LP / paillier_obfuscate_LP (paillier_encrypt.cu);
// one number per group of coop_tpi(2 LP) threads. Launch: HEA_COOP_BLOCK (128) threads per
// block, at least count * coop_tpi(2 LP) threads in all (grid-stride over groups).
// requires: r in [1, n) coprime to n, drawn by the host CSPRNG (ps limbs per element, ps <= LP);
// n odd. Checks plaintexts (< n, ps limbs each) and reports ERR_PLAINTEXT_RANGE through err.
// The exponent n is public: sliding windows, the same for every element (no divergence).
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {

// mode 0: r^n (obfuscator); mode 1: (1 + m n) r^n (encryption)
template <int LP>
HEA_FN void paillier_coop(limb_t* out, const limb_t* ms, const limb_t* rs, unsigned long long count,
                          const limb_t* key, int ps, int cs, unsigned long long* err, limb_t* tab, int mode) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI, ENTRIES = coop_pub_entries(L);
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t rmod[LPT], x[LPT], y[LPT];
  load_mod<L, TPI>(g, M, K.n2);
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (mode == 1) {
      bool fits = load<L, TPI>(g, y, ms + i * (unsigned long long)ps, ps, LP);
      load<L, TPI>(g, x, K.n, LP);
      bool below = sub<L, TPI>(g, x, y, x) == 1u;  // borrow: m < n
      if (!fits || !below) {
        if (g.lane == 0) report_error(err, i, ERR_PLAINTEXT_RANGE);
        continue;
      }
    }
    // R^2, m and n are loaded again where they are used, not kept live across the power:
    // registers bound occupancy (HEA_COOP_BOUNDS)
    load<L, TPI>(g, x, rs + i * (unsigned long long)ps, ps, LP);
    load<L, TPI>(g, y, K.n2.r2, L);
    mont_mul<L, TPI>(g, x, x, y, M);  // r R
    set_one<L, TPI>(g, rmod);
    mont_mul<L, TPI>(g, y, y, rmod, M);  // R mod n^2, made per element: nothing held across elements
    pow_public<L, TPI, ENTRIES>(g, x, x, y, K.n, (int)K.n_bits, tab, M);  // r^n R
    if (mode == 1) {
      limb_t n[LPT];
      load<L, TPI>(g, y, ms + i * (unsigned long long)ps, ps, LP);
      load<L, TPI>(g, n, K.n, LP);
      mul_low<L, TPI>(g, y, y, n);     // m n (< n^2 < R: exact)
      add_small<L, TPI>(g, y, 1u);     // g^m = 1 + m n, still < n^2
      mont_mul<L, TPI>(g, x, y, x, M); // (1 + m n) r^n
    } else {
      set_one<L, TPI>(g, y);
      mont_mul<L, TPI>(g, x, x, y, M); // out of Montgomery form
    }
    store<L, TPI>(g, out + i * (unsigned long long)cs, x, cs);
  }
}

}  // namespace coop
}  // namespace hea

#define HEA_PAILLIER_COOP_KERNELS(LP)                                                                   \
  extern "C" __global__ void HEA_COOP_BOUNDS(2 * LP) paillier_encrypt_coop_##LP(limb_t* out, const limb_t* ms, const limb_t* rs, \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {           \
    __shared__ limb_t tab[hea::coop::coop_pub_entries(2 * LP) * (2 * LP / hea::coop::coop_tpi(2 * LP)) *     \
                          HEA_COOP_BLOCK];                                                              \
    hea::coop::paillier_coop<LP>(out, ms, rs, count, key, ps, cs, err, tab, 1);                         \
  }                                                                                                     \
  extern "C" __global__ void HEA_COOP_BOUNDS(2 * LP) paillier_obfuscate_coop_##LP(limb_t* out, const limb_t* rs,                \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {           \
    __shared__ limb_t tab[hea::coop::coop_pub_entries(2 * LP) * (2 * LP / hea::coop::coop_tpi(2 * LP)) *     \
                          HEA_COOP_BLOCK];                                                              \
    hea::coop::paillier_coop<LP>(out, nullptr, rs, count, key, ps, cs, err, tab, 0);                    \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_PAILLIER_COOP_KERNELS)
