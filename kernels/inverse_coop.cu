// Batch inversion mod n^2 on the cooperative core, by Montgomery's trick (kernel family: inverse_coop).
//
//   he_inverse_prefix_coop_LP  per chunk t of `chunk` elements x_start .. x_last: the running
//                              products P_k = x_start ... x_k R^-(k - start) (a mont_mul chain,
//                              one multiplication per element) into prefix[k] for k < last, and
//                              the chunk's total P_last into totals[t]
//   he_inverse_back_coop_LP    per chunk t, from J = totals[t]^-1 (a plain inverse): walking down
//                              from the last element, y_k = J P_{k-1} R^-1 = x_k^-1 and
//                              J <- J x_k R^-1; y_start = J (two multiplications per element).
//                              Writes y_k over x_k, or, with `factors`, factors[k] x_k^-1 (two more)
//
// The host (Launcher.inverse, accel/gpu/launch.py) runs prefix levels until one total is left
// (each level's totals are the next level's elements), inverts that one number, then runs the back
// passes from the top level down: a level's back pass turns its elements, the totals of the level
// below, into their inverses in place, which that level's back pass starts from. So a batch of N
// costs about 3 N (1 + 1/chunk + ...) multiplications, one inversion and two launches per level,
// with no per-element inversion (the divergent binary GCD of mod_inverse) and no branch on values.
//
// Why no conversion to or from Montgomery form is needed: within a chunk P_k = (x_0..x_k) R^-k
// (k counted from the chunk's start), so J_last = P_last^-1 = (x_0..x_last)^-1 R^last; by
// induction J_k = (x_0..x_k)^-1 R^k, hence J_k P_{k-1} R^-1 = x_k^-1 and J_k x_k R^-1 = J_{k-1}.
// Plain values in, plain inverses out, at every level.
//
// requires: every x in [0, n^2) (mont_mul's bound; level 0 checks it when `check` is set and
// reports ERR_CIPHERTEXT_RANGE at the element's row); chunk >= 1; count >= 1; prefix has count rows
// and totals ceil(count / chunk) rows, all of cs limbs like xs; idx (level 0 only, may be null):
// element i is row idx[i] of xs (distinct rows), else row i. An element that is not a unit mod n^2
// (0, or a multiple of p or q: never an honest ciphertext) makes its chunk's total and the top
// total non-units; the kernels compute on regardless (no branch, no hang) and the host, whose
// inversion of the top then fails, names the first such element. factors (may be null) has a row
// per element in [0, n^2), read at the element's row like xs. Ciphertexts are public: no
// constant-time requirement, but nothing here branches on values anyway.
// Launch: HEA_COOP_BLOCK (128) threads per block, at least ceil(count / chunk) * coop_tpi(2 LP)
// threads (grid-stride over chunks).
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {

HEA_FN unsigned long long element_row(const unsigned long long* idx, unsigned long long i) { return idx ? idx[i] : i; }

template <int LP>
HEA_FN void inverse_prefix(limb_t* prefix, limb_t* totals, const limb_t* xs, const unsigned long long* idx,
                           unsigned long long count, unsigned long long chunk, const limb_t* key, int cs, int check,
                           unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t acc[LPT], x[LPT], d[LPT];
  load_mod<L, TPI>(g, M, K.n2);
  for_each_chunk<TPI>(count, chunk, [&](unsigned long long t, unsigned long long start, unsigned long long stop) {
    const bool ok = chunk_product<L, TPI>(g, acc, x, start, stop, M, [&](unsigned long long i, limb_t* y) {
      if (i > start) store<L, TPI>(g, prefix + (i - 1) * (unsigned long long)cs, acc, cs);  // x_start .. x_(i-1)
      unsigned long long row = element_row(idx, i);
      bool fits = load<L, TPI>(g, y, xs + row * (unsigned long long)cs, cs);
      if (!check || (fits && sub<L, TPI>(g, d, y, M.m) == 1u)) return true;
      if (g.lane == 0) report_error(err, row, ERR_CIPHERTEXT_RANGE);
      return false;
    });
    if (ok) store<L, TPI>(g, totals + t * (unsigned long long)cs, acc, cs);
  });
}

template <int LP>
HEA_FN void inverse_back(limb_t* xs, const unsigned long long* idx, const limb_t* prefix, const limb_t* inv_totals,
                         const limb_t* factors, unsigned long long count, unsigned long long chunk, const limb_t* key,
                         int cs) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t J[LPT], x[LPT], y[LPT];
  load_mod<L, TPI>(g, M, K.n2);
  for_each_chunk<TPI>(count, chunk, [&](unsigned long long t, unsigned long long start, unsigned long long stop) {
    load<L, TPI>(g, J, inv_totals + t * (unsigned long long)cs, cs);
    for (unsigned long long i = stop; i-- > start;) {
      unsigned long long row = element_row(idx, i);
      limb_t* dst = xs + row * (unsigned long long)cs;
      if (i > start) {
        load<L, TPI>(g, x, dst, cs);
        load<L, TPI>(g, y, prefix + (i - 1) * (unsigned long long)cs, cs);
        mont_mul<L, TPI>(g, y, J, y, M);  // x_i^-1
        mont_mul<L, TPI>(g, J, J, x, M);  // J_{i-1}
      } else {
        HEA_UNROLL_ALL
        for (int k = 0; k < LPT; k++) y[k] = J[k];
      }
      if (factors) {  // f x^-1 = (x^-1 R^2 R^-1) f R^-1; R^2 read here, not held (registers)
        load<L, TPI>(g, x, K.n2.r2, L);
        mont_mul<L, TPI>(g, y, y, x, M);
        load<L, TPI>(g, x, factors + row * (unsigned long long)cs, cs);
        mont_mul<L, TPI>(g, y, y, x, M);
      }
      store<L, TPI>(g, dst, y, cs);
    }
  });
}

}  // namespace coop
}  // namespace hea

#define HEA_INVERSE_COOP_KERNELS(LP)                                                                   \
  extern "C" __global__ void he_inverse_prefix_coop_##LP(limb_t* prefix, limb_t* totals, const limb_t* xs, \
      const unsigned long long* idx, unsigned long long count, unsigned long long chunk, const limb_t* key, \
      int cs, int check, unsigned long long* err) {                                                     \
    hea::coop::inverse_prefix<LP>(prefix, totals, xs, idx, count, chunk, key, cs, check, err);          \
  }                                                                                                     \
  extern "C" __global__ void he_inverse_back_coop_##LP(limb_t* xs, const unsigned long long* idx,       \
      const limb_t* prefix, const limb_t* inv_totals, const limb_t* factors, unsigned long long count,  \
      unsigned long long chunk, const limb_t* key, int cs) {                                            \
    hea::coop::inverse_back<LP>(xs, idx, prefix, inv_totals, factors, count, chunk, key, cs);           \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_INVERSE_COOP_KERNELS)
