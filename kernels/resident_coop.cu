// Device-resident ciphertexts in Montgomery form on the cooperative core (kernel family:
// resident_coop). A resident array holds x = c R mod n^2 (R = 2^(32 * 2 LP), the key class's
// Montgomery radix) instead of c, so a product of two of them is ONE Montgomery multiplication
// (aR * bR * R^-1 = abR) where the normal form needs two (to Montgomery form, then the product).
// The conversions happen once per chain, on the device:
//
//   he_to_mont_coop_LP       x = c R          (one multiplication by R^2)
//   he_from_mont_coop_LP     c = x R^-1       (one multiplication by 1: REDC)
//   he_add_mont_coop_LP      E(a + b): aR bR R^-1 = abR                     (one multiplication)
//   he_product_mont_coop_LP  out[t] = prod of in[t*chunk .. ) in Montgomery form: one
//                            multiplication per input after the first, no correction by R^g
//   he_mul_scalar_mont_coop_LP  E(a k) = (cR)^k R^(1-k) = c^k R for NON-NEGATIVE k: the sliding
//                            windows of pow_public run on cR as they are (no conversion in or out)
//   he_add_plain_mont_coop_LP   E(a + m): cR (1 + m n) = mont(cR, R + m n R); m n R is one
//                            multiplication of m by n R^2 (two in all, as the normal form's)
//   he_rerandomize_mont_coop_LP c r^n R: r R, (rR)^n by sliding windows, one product with cR
//                            (the normal form: two more, to and from Montgomery form)
//
// Arguments as the normal-form twins (he_add_LP, he_product_LP without r_powers, he_add_plain_LP,
// he_mul_scalar_coop_LP, paillier_rerandomize_LP); one number per group of coop_tpi(2 LP)
// threads. Launch: HEA_COOP_BLOCK (128) threads per block, at least (count or groups) *
// coop_tpi(2 LP) threads (grid-stride over groups). Every input is range-checked: x in
// [1, n^2) (a unit's Montgomery form is a unit, so never 0), ERR_CIPHERTEXT_RANGE /
// ERR_SECOND_RANGE; plaintexts m < n, ERR_PLAINTEXT_RANGE (he_product_mont_coop only when `check`
// is set: the first tree level). requires: r in [1, n) coprime to n, from the host CSPRNG.
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {
namespace resident {

// mode 0: x = c R (by R^2), mode 1: c = x R^-1 (by 1). The one conversion of a chain.
template <int LP>
HEA_FN void convert(limb_t* out, const limb_t* in, unsigned long long count, const limb_t* key, int cs,
                    unsigned long long* err, int mode) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  load_mod<L, TPI>(g, M, K.n2);
  limb_t by[LPT], x[LPT];
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++)
    by[k] = mode == 0 ? K.n2.r2[g.lane * LPT + k] : ((g.lane == 0 && k == 0) ? 1u : 0u);
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, x, in + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    mont_mul<L, TPI>(g, x, x, by, M);
    store<L, TPI>(g, out + i * (unsigned long long)cs, x, cs);
  }
}

template <int LP>
HEA_FN void add(limb_t* out, const limb_t* as, const limb_t* bs, unsigned long long count, const limb_t* key, int cs,
                unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  load_mod<L, TPI>(g, M, K.n2);
  limb_t a[LPT], b[LPT];
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, a, as + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    if (!load_unit_or_report<L, TPI>(g, b, bs + i * (unsigned long long)cs, cs, M, err, i, ERR_SECOND_RANGE)) continue;
    mont_mul<L, TPI>(g, a, a, b, M);  // aR bR R^-1 = abR
    store<L, TPI>(g, out + i * (unsigned long long)cs, a, cs);
  }
}

template <int LP>
HEA_FN void product(limb_t* out, const limb_t* in, unsigned long long count, unsigned long long chunk,
                    const limb_t* key, int cs, int check, unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  load_mod<L, TPI>(g, M, K.n2);
  limb_t acc[LPT], c[LPT];
  for_each_chunk<TPI>(count, chunk, [&](unsigned long long t, unsigned long long start, unsigned long long stop) {
    // stays in Montgomery form: nothing to correct
    const bool ok = chunk_product<L, TPI>(g, acc, c, start, stop, M, [&](unsigned long long i, limb_t* x) {
      const limb_t* src = in + i * (unsigned long long)cs;
      if (!check) {
        load<L, TPI>(g, x, src, cs);
        return true;
      }
      return load_unit_or_report<L, TPI>(g, x, src, cs, M, err, i, ERR_CIPHERTEXT_RANGE);
    });
    if (ok) store<L, TPI>(g, out + t * (unsigned long long)cs, acc, cs);
  });
}

template <int LP>
HEA_FN void mul_scalar(limb_t* out, const limb_t* cts, const limb_t* ks, unsigned long long count, const limb_t* key,
                       int cs, int kstride, unsigned long long* err, limb_t* tab) {
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
    pow_public<L, TPI, ENTRIES>(g, c, c, rmod, k, mp_bits(k, kstride), tab, M);  // c^k R (k = 0: R)
    store<L, TPI>(g, out + i * (unsigned long long)cs, c, cs);
  }
}

template <int LP>
HEA_FN void add_plain(limb_t* out, const limb_t* cts, const limb_t* ms, unsigned long long count, const limb_t* key,
                      int ps, int cs, unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], one[LPT], rmod[LPT], n_r2[LPT], c[LPT], m[LPT], x[LPT];
  load_modulus<L, TPI>(g, M, r2, one, rmod, K.n2);
  load<L, TPI>(g, x, K.n, LP);
  mont_mul<L, TPI>(g, n_r2, x, r2, M);     // n R
  mont_mul<L, TPI>(g, n_r2, n_r2, r2, M);  // n R^2: once per thread, not per element
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, c, cts + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    bool fits = load<L, TPI>(g, m, ms + i * (unsigned long long)ps, ps, LP);
    load<L, TPI>(g, x, K.n, LP);
    bool below = sub<L, TPI>(g, x, m, x) == 1u;  // borrow: m < n
    if (!fits || !below) {
      if (g.lane == 0) report_error(err, i, ERR_PLAINTEXT_RANGE);
      continue;
    }
    mont_mul<L, TPI>(g, m, m, n_r2, M);   // m n R mod n^2
    mod_add<L, TPI>(g, m, m, rmod, M);    // (1 + m n) R
    mont_mul<L, TPI>(g, c, c, m, M);      // c (1 + m n) R
    store<L, TPI>(g, out + i * (unsigned long long)cs, c, cs);
  }
}

template <int LP>
HEA_FN void rerandomize(limb_t* out, const limb_t* cts, const limb_t* rs, unsigned long long count, const limb_t* key,
                        int ps, int cs, unsigned long long* err, limb_t* tab) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI, ENTRIES = coop_pub_entries(L);
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t c[LPT], x[LPT], y[LPT];
  load_mod<L, TPI>(g, M, K.n2);
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (!load_unit_or_report<L, TPI>(g, c, cts + i * (unsigned long long)cs, cs, M, err, i, ERR_CIPHERTEXT_RANGE))
      continue;
    // R^2, R mod n^2 and c loaded or made where used, not held across the power: registers
    // bound occupancy (HEA_COOP_BOUNDS)
    load<L, TPI>(g, x, rs + i * (unsigned long long)ps, ps, LP);
    load<L, TPI>(g, y, K.n2.r2, L);
    mont_mul<L, TPI>(g, x, x, y, M);                                           // r R
    set_one<L, TPI>(g, c);
    mont_mul<L, TPI>(g, y, y, c, M);                                           // R mod n^2
    pow_public<L, TPI, ENTRIES>(g, x, x, y, K.n, (int)K.n_bits, tab, M);     // r^n R (n public)
    load<L, TPI>(g, c, cts + i * (unsigned long long)cs, cs);                  // checked above
    mont_mul<L, TPI>(g, c, c, x, M);                                           // c r^n R
    store<L, TPI>(g, out + i * (unsigned long long)cs, c, cs);
  }
}

}  // namespace resident
}  // namespace coop
}  // namespace hea

#define HEA_RESIDENT_TABLE(LP) \
  __shared__ limb_t tab[hea::coop::coop_pub_entries(2 * LP) * (2 * LP / hea::coop::coop_tpi(2 * LP)) * HEA_COOP_BLOCK]

#define HEA_RESIDENT_COOP_KERNELS(LP)                                                                  \
  extern "C" __global__ void he_to_mont_coop_##LP(limb_t* out, const limb_t* cs_in, unsigned long long count, \
      const limb_t* key, int cs, unsigned long long* err) {                                            \
    hea::coop::resident::convert<LP>(out, cs_in, count, key, cs, err, 0);                              \
  }                                                                                                    \
  extern "C" __global__ void he_from_mont_coop_##LP(limb_t* out, const limb_t* xs, unsigned long long count, \
      const limb_t* key, int cs, unsigned long long* err) {                                            \
    hea::coop::resident::convert<LP>(out, xs, count, key, cs, err, 1);                                 \
  }                                                                                                    \
  extern "C" __global__ void he_add_mont_coop_##LP(limb_t* out, const limb_t* as, const limb_t* bs,     \
      unsigned long long count, const limb_t* key, int cs, unsigned long long* err) {                  \
    hea::coop::resident::add<LP>(out, as, bs, count, key, cs, err);                                    \
  }                                                                                                    \
  extern "C" __global__ void he_product_mont_coop_##LP(limb_t* out, const limb_t* in,                  \
      unsigned long long count, unsigned long long chunk, const limb_t* key, int cs, int check,        \
      unsigned long long* err) {                                                                       \
    hea::coop::resident::product<LP>(out, in, count, chunk, key, cs, check, err);                      \
  }                                                                                                    \
  extern "C" __global__ void HEA_COOP_BOUNDS(2 * LP) he_mul_scalar_mont_coop_##LP(limb_t* out, const limb_t* cts, const limb_t* ks, \
      unsigned long long count, const limb_t* key, int cs, int kstride, unsigned long long* err) {     \
    HEA_RESIDENT_TABLE(LP);                                                                            \
    hea::coop::resident::mul_scalar<LP>(out, cts, ks, count, key, cs, kstride, err, tab);              \
  }                                                                                                    \
  extern "C" __global__ void he_add_plain_mont_coop_##LP(limb_t* out, const limb_t* cts, const limb_t* ms, \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {          \
    hea::coop::resident::add_plain<LP>(out, cts, ms, count, key, ps, cs, err);                         \
  }                                                                                                    \
  extern "C" __global__ void HEA_COOP_BOUNDS(2 * LP) he_rerandomize_mont_coop_##LP(limb_t* out, const limb_t* cts, const limb_t* rs, \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {          \
    HEA_RESIDENT_TABLE(LP);                                                                            \
    hea::coop::resident::rerandomize<LP>(out, cts, rs, count, key, ps, cs, err, tab);                  \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_RESIDENT_COOP_KERNELS)
