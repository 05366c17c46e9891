// Homomorphic addition and sums on the cooperative core (kernel family: homomorphic_coop).
//
//   he_add_coop_LP      E(a + b) = c1 c2 mod n^2: to Montgomery form and one product (2 in all)
//   he_mul_scalar_coop_LP  E(a k) = c^k mod n^2 for NON-NEGATIVE k (the host sends batches with a
//                       negative scalar to he_mul_scalar_LP, which inverts c per element): sliding
//                       windows over each k (the caller's own plaintext: public), table in shared
//                       memory
//   he_product_coop_LP  out[t] = prod of in[t*chunk .. min((t+1)*chunk, count)) mod n^2, one
//                       multiplication per input plus one by R^g (r_powers[g], g = the group's
//                       size) that cancels the R^-(g-1) the chain leaves: the device-resident
//                       chain, about one multiplication per addition
//
// Same arguments and results as he_add_LP (homomorphic.cu) and he_product_LP (reduce.cu), and as
// he_mul_scalar_LP without the sign flags (ks: magnitudes, kstride limbs each); one
// number per group of coop_tpi(2 LP) threads. Launch: HEA_COOP_BLOCK (128) threads per block,
// at least (count or groups) * coop_tpi(2 LP) threads (grid-stride over groups). Checks
// ciphertexts in [1, n^2) (he_product_coop only when `check` is set: the first tree level) and
// reports ERR_CIPHERTEXT_RANGE / ERR_SECOND_RANGE through err.
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {

template <int LP>
HEA_FN void add_coop(limb_t* out, const limb_t* as, const limb_t* bs, unsigned long long count, const limb_t* key,
                     int cs, unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], a[LPT], b[LPT];
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    M.m[k] = K.n2.m[g.lane * LPT + k];
    r2[k] = K.n2.r2[g.lane * LPT + k];
  }
  M.minv = K.n2.minv;
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, a, as + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    if (!load_unit_or_report<L, TPI>(g, b, bs + i * (unsigned long long)cs, cs, M, err, i, ERR_SECOND_RANGE)) continue;
    mont_mul<L, TPI>(g, a, a, r2, M);  // a R
    mont_mul<L, TPI>(g, a, a, b, M);   // a b
    store<L, TPI>(g, out + i * (unsigned long long)cs, a, cs);
  }
}

template <int LP>
HEA_FN void mul_scalar_coop(limb_t* out, const limb_t* cts, const limb_t* ks, unsigned long long count,
                            const limb_t* key, int cs, int kstride, unsigned long long* err, limb_t* tab) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI, ENTRIES = coop_pub_entries(L);
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], one[LPT], rmod[LPT], c[LPT];
  load_modulus<L, TPI>(g, M, r2, one, rmod, K.n2);
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, c, cts + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    const limb_t* k = ks + i * (unsigned long long)kstride;
    limb_t x[LPT];  // R^2 and 1 loaded and made again, not kept live: registers bound occupancy
    load<L, TPI>(g, x, K.n2.r2, L);
    mont_mul<L, TPI>(g, c, c, x, M);  // c R
    pow_public<L, TPI, ENTRIES>(g, c, c, rmod, k, mp_bits(k, kstride), tab, M);
    set_one<L, TPI>(g, x);
    mont_mul<L, TPI>(g, c, c, x, M);  // out of Montgomery form
    store<L, TPI>(g, out + i * (unsigned long long)cs, c, cs);
  }
}

template <int LP>
HEA_FN void product_coop(limb_t* out, const limb_t* in, unsigned long long count, unsigned long long chunk,
                         const limb_t* key, const limb_t* r_powers, int cs, int check, unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t acc[LPT], c[LPT];
  load_mod<L, TPI>(g, M, K.n2);
  for_each_chunk<TPI>(count, chunk, [&](unsigned long long t, unsigned long long start, unsigned long long stop) {
    const bool ok = chunk_product<L, TPI>(g, acc, c, start, stop, M, [&](unsigned long long i, limb_t* x) {
      const limb_t* src = in + i * (unsigned long long)cs;
      if (!check) {
        load<L, TPI>(g, x, src, cs);
        return true;
      }
      return load_unit_or_report<L, TPI>(g, x, src, cs, M, err, i, ERR_CIPHERTEXT_RANGE);
    });
    if (!ok) return;
    load<L, TPI>(g, c, r_powers + (stop - start) * (unsigned long long)L, L);
    mont_mul<L, TPI>(g, acc, acc, c, M);
    store<L, TPI>(g, out + t * (unsigned long long)cs, acc, cs);
  });
}

}  // namespace coop
}  // namespace hea

#define HEA_HOMOMORPHIC_COOP_KERNELS(LP)                                                               \
  extern "C" __global__ void he_add_coop_##LP(limb_t* out, const limb_t* as, const limb_t* bs,          \
      unsigned long long count, const limb_t* key, int cs, unsigned long long* err) {                   \
    hea::coop::add_coop<LP>(out, as, bs, count, key, cs, err);                                          \
  }                                                                                                     \
  extern "C" __global__ void HEA_COOP_BOUNDS(2 * LP) he_mul_scalar_coop_##LP(limb_t* out, const limb_t* cts, const limb_t* ks,   \
      unsigned long long count, const limb_t* key, int cs, int kstride, unsigned long long* err) {      \
    __shared__ limb_t tab[hea::coop::coop_pub_entries(2 * LP) * (2 * LP / hea::coop::coop_tpi(2 * LP)) * \
                          HEA_COOP_BLOCK];                                                              \
    hea::coop::mul_scalar_coop<LP>(out, cts, ks, count, key, cs, kstride, err, tab);                    \
  }                                                                                                     \
  extern "C" __global__ void he_product_coop_##LP(limb_t* out, const limb_t* in, unsigned long long count, \
      unsigned long long chunk, const limb_t* key, const limb_t* r_powers, int cs, int check,           \
      unsigned long long* err) {                                                                        \
    hea::coop::product_coop<LP>(out, in, count, chunk, key, r_powers, cs, check, err);                  \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_HOMOMORPHIC_COOP_KERNELS)
