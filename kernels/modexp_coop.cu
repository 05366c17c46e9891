// Generic batch modular exponentiation, cooperative (kernel family: modexp_coop).
//
//   powmod_coop_L: out_i = b_i^e_i mod m, e_i >= 0, one number per group of coop_tpi(L) threads
//
// Launch: HEA_COOP_BLOCK (128) threads per block, at least count * coop_tpi(L) threads in all
// (grid-stride over groups). requires: m odd (Montgomery; the host sends even moduli to the
// CPU), m < 2^(32 L), bases of bstride limbs (limbs above L must be zero, checked) and < m
// (checked), exponents of el limbs, non-negative (the host sends negative exponents to the
// one-thread-per-number powmod_L, which inverts the base). `secret` selects fixed windows over
// all 32*el exponent bits with masked table reads (constant time); otherwise sliding windows
// start at each exponent's top bit. Reports ERR_MODULUS_EVEN and ERR_INPUT_RANGE through err.
#include "coop_mont.cuh"
#include "errors.cuh"

namespace hea {
namespace coop {

template <int L>
HEA_FN void powmod_coop(limb_t* out, const limb_t* bases, const limb_t* exps, unsigned long long count,
                        const limb_t* modulus_rec, int bstride, int el, int secret, unsigned long long* err,
                        limb_t* tab) {
  constexpr int TPI = coop_tpi(L), LPT = L / TPI, PUBLIC = coop_pub_entries(L), SECRET = coop_entries(L);
  const mod_rec<L>& rec = *reinterpret_cast<const mod_rec<L>*>(modulus_rec);
  if ((rec.m[0] & 1u) == 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0) report_error(err, 0, ERR_MODULUS_EVEN);
    return;
  }
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t rmod[LPT], b[LPT], x[LPT];
  load_mod<L, TPI>(g, M, rec);
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    bool fits = load<L, TPI>(g, b, bases + i * (unsigned long long)bstride, bstride);
    bool below = sub<L, TPI>(g, x, b, M.m) == 1u;  // borrow: b < m
    if (!fits || !below) {
      if (g.lane == 0) report_error(err, i, ERR_INPUT_RANGE);
      continue;
    }
    const limb_t* e = exps + i * (unsigned long long)el;
    // R^2, R mod m and 1 made per element, not held across elements: registers bound
    // occupancy (HEA_COOP_BOUNDS)
    load<L, TPI>(g, x, rec.r2, L);
    mont_mul<L, TPI>(g, b, b, x, M);        // to Montgomery form
    set_one<L, TPI>(g, rmod);
    mont_mul<L, TPI>(g, x, x, rmod, M);     // R mod m
    if (secret) pow_secret<L, TPI, SECRET>(g, b, b, x, e, el, 32 * el, tab, M);
    else pow_public<L, TPI, PUBLIC>(g, b, b, x, e, mp_bits(e, el), tab, M);
    set_one<L, TPI>(g, x);
    mont_mul<L, TPI>(g, b, b, x, M);        // out of Montgomery form
    store<L, TPI>(g, out + i * L, b, L);
  }
}

}  // namespace coop
}  // namespace hea

#define HEA_MODEXP_COOP_KERNELS(L)                                                                   \
  extern "C" __global__ void HEA_COOP_BOUNDS(L) powmod_coop_##L(limb_t* out, const limb_t* bases, const limb_t* exps,    \
      unsigned long long count, const limb_t* modulus, int bstride, int el, int secret,               \
      unsigned long long* err) {                                                                      \
    __shared__ limb_t tab[hea::coop::coop_table_entries(L) * (L / hea::coop::coop_tpi(L)) * HEA_COOP_BLOCK]; \
    hea::coop::powmod_coop<L>(out, bases, exps, count, modulus, bstride, el, secret, err, tab);      \
  }

// Moduli up to 1024 ... 8192 bits, as modexp.cu; the run-time compiler defines HEA_MOD_LIMBS.
#if defined(HEA_MOD_LIMBS)
HEA_APPLY(HEA_MODEXP_COOP_KERNELS, HEA_MOD_LIMBS)
#else
HEA_MODEXP_COOP_KERNELS(32)
HEA_MODEXP_COOP_KERNELS(64)
HEA_MODEXP_COOP_KERNELS(96)
HEA_MODEXP_COOP_KERNELS(128)
HEA_MODEXP_COOP_KERNELS(192)
HEA_MODEXP_COOP_KERNELS(256)
#endif
