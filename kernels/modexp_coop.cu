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

// Threads per number: four limbs per lane up to 4096-bit moduli (3 at 3072), then a full warp.
// Mirrored by accel/gpu/build.py COOP_TPI (a test checks that they agree).
__host__ __device__ constexpr int coop_tpi(int L) { return L <= 32 ? 8 : (L <= 64 ? 16 : 32); }
// Exponent-table entries per number: 8 (sliding windows of 4 bits over odd powers for public
// exponents, fixed 3-bit windows for secret ones). The table takes ENTRIES * L * 4 bytes of
// shared memory per number: 16 KB per block of 128 threads at four limbs per lane, which keeps
// 8 blocks (32 warps, 50%) per sm_90 SM where 16 entries (32 KB + 1 KB reserved) would keep 6.
// A 5-bit window saves about 2.5% of the multiplications of a 2048-bit exponent.
#ifndef HEA_COOP_ENTRIES
#define HEA_COOP_ENTRIES 8
#endif
__host__ __device__ constexpr int coop_entries(int) { return HEA_COOP_ENTRIES; }

template <int L>
HEA_FN void powmod_coop(limb_t* out, const limb_t* bases, const limb_t* exps, unsigned long long count,
                        const limb_t* modulus_rec, int bstride, int el, int secret, unsigned long long* err,
                        limb_t* tab) {
  constexpr int TPI = coop_tpi(L), LPT = L / TPI, ENTRIES = coop_entries(L);
  const mod_rec<L>& rec = *reinterpret_cast<const mod_rec<L>*>(modulus_rec);
  if ((rec.m[0] & 1u) == 0) {
    if (blockIdx.x == 0 && threadIdx.x == 0) report_error(err, 0, ERR_MODULUS_EVEN);
    return;
  }
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], one[LPT], b[LPT], x[LPT];
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    M.m[k] = rec.m[g.lane * LPT + k];
    r2[k] = rec.r2[g.lane * LPT + k];
    one[k] = (g.lane == 0 && k == 0) ? 1u : 0u;
  }
  M.minv = rec.minv;
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    const limb_t* src = bases + i * (unsigned long long)bstride;
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) {
      int idx = (int)g.lane * LPT + k;
      b[k] = idx < bstride ? src[idx] : 0u;
    }
    limb_t wide = 0u;  // any nonzero limb above L
    for (int idx = L + (int)g.lane; idx < bstride; idx += TPI) wide |= src[idx];
    bool fits = __ballot_sync(g.mask, wide != 0u) == 0u;
    bool below = sub<L, TPI>(g, x, b, M.m) == 1u;  // borrow: b < m
    if (!fits || !below) {
      if (g.lane == 0) report_error(err, i, ERR_INPUT_RANGE);
      continue;
    }
    const limb_t* e = exps + i * (unsigned long long)el;
    limb_t rmod[LPT];
    mont_mul<L, TPI>(g, rmod, r2, one, M);  // R mod m: the Montgomery form of 1
    mont_mul<L, TPI>(g, b, b, r2, M);       // to Montgomery form
    if (secret) pow_secret<L, TPI, ENTRIES>(g, b, b, rmod, e, el, 32 * el, tab, M);
    else pow_public<L, TPI, ENTRIES>(g, b, b, rmod, e, mp_bits(e, el), tab, M);
    mont_mul<L, TPI>(g, b, b, one, M);      // out of Montgomery form
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) out[i * L + g.lane * LPT + k] = b[k];
  }
}

}  // namespace coop
}  // namespace hea

#define HEA_MODEXP_COOP_KERNELS(L)                                                                   \
  extern "C" __global__ void powmod_coop_##L(limb_t* out, const limb_t* bases, const limb_t* exps, unsigned long long count,    \
                  const limb_t* modulus, int bstride, int el, int secret, unsigned long long* err) {  \
    __shared__ limb_t tab[hea::coop::coop_entries(L) * (L / hea::coop::coop_tpi(L)) * HEA_COOP_BLOCK]; \
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
