// Batch Paillier CRT decryption on the cooperative core (kernel family: decrypt_coop).
//
//   m_p = L_p(c^(p-1) mod p^2) hp mod p,  m_q likewise,  m = m_q + q ((m_p - m_q) q^-1 mod p)
//
// Same arguments, key record and results as paillier_decrypt_LP (paillier_decrypt.cu); one
// ciphertext per group of coop_tpi(LP) threads, everything mod p^2, q^2, p at LP limbs.
// Launch: HEA_COOP_BLOCK (128) threads per block, at least count * coop_tpi(LP) threads in all
// (grid-stride over groups). requires: a crt_rec built from the private key. Checks
// 0 < c < n^2 (cs limbs each) and reports ERR_CIPHERTEXT_RANGE through err.
// The exponents p-1, q-1 are secret: pow_secret (fixed windows over the public bound half_bits,
// a multiplication in every window, masked reads of every table entry); L_p's exact division and
// Garner's product are low-half products, the final subtractions masked selects: no branch or
// address depends on the key or the ciphertext.
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {

// L_u(c^(u-1) mod u^2) h_u mod u for one prime u, c given as its low and high LP limbs.
template <int LP, int TPI>
HEA_FN void decrypt_half_coop(const group<LP, TPI>& g, limb_t* out, const limb_t* c_lo, const limb_t* c_hi,
                              const mod_rec<LP>& u2, const mod_rec<LP>& u, const limb_t* u_m1,
                              const limb_t* u_inv_r, const limb_t* h_r, int half_bits, limb_t* tab) {
  constexpr int LPT = LP / TPI, ENTRIES = coop_entries(LP);
  modulus<LP, TPI> M;
  limb_t r2[LPT], one[LPT], rmod[LPT], x[LPT], y[LPT];
  load_modulus<LP, TPI>(g, M, r2, one, rmod, u2);
  // c R mod u^2 = c_lo R + c_hi R^2: two Montgomery products (by R^2 and R^3) and a modular add
  mont_mul<LP, TPI>(g, y, r2, r2, M);    // R^3 mod u^2
  mont_mul<LP, TPI>(g, y, c_hi, y, M);   // c_hi R^2
  mont_mul<LP, TPI>(g, x, c_lo, r2, M);  // c_lo R
  mod_add<LP, TPI>(g, x, x, y, M);
  pow_secret<LP, TPI, ENTRIES>(g, x, x, rmod, u_m1, LP, half_bits, tab, M);
  mont_mul<LP, TPI>(g, x, x, one, M);    // c^(u-1) mod u^2 = 1 + k u
  sub<LP, TPI>(g, x, x, one);            // k u (wraps mod R only for a c sharing a factor with n)
  load<LP, TPI>(g, y, u_inv_r, LP);
  mul_low<LP, TPI>(g, x, x, y);          // k, exact: (k u) u^-1 mod R
  load_mod<LP, TPI>(g, M, u);
  load<LP, TPI>(g, y, h_r, LP);
  mont_mul<LP, TPI>(g, out, x, y, M);    // k h mod u
}

template <int LP>
HEA_FN void decrypt_coop(limb_t* out, const limb_t* cts, unsigned long long count, const limb_t* key, int ps,
                         int cs, unsigned long long* err, limb_t* tab) {
  constexpr int TPI = coop_tpi(LP), LPT = LP / TPI;
  const crt_rec<LP>& K = *reinterpret_cast<const crt_rec<LP>*>(key);
  const group<LP, TPI> g = group<LP, TPI>::mine();
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    const limb_t* c = cts + i * (unsigned long long)cs;
    limb_t lo[LPT], hi[LPT], d[LPT], e[LPT];
    load<LP, TPI>(g, lo, c, cs, LP);
    bool fits = load<LP, TPI>(g, hi, cs > LP ? c + LP : c, cs > LP ? cs - LP : 0, LP);
    // 0 < c < n^2, comparing the high halves first
    load<LP, TPI>(g, e, K.pub.n2.m + LP, LP);
    limb_t hi_below = sub<LP, TPI>(g, d, hi, e);
    bool hi_equal = is_zero<LP, TPI>(g, d);
    load<LP, TPI>(g, e, K.pub.n2.m, LP);
    limb_t lo_below = sub<LP, TPI>(g, d, lo, e);
    bool below = hi_below == 1u || (hi_equal && lo_below == 1u);
    bool zero = is_zero<LP, TPI>(g, lo) && is_zero<LP, TPI>(g, hi);
    if (!fits || !below || zero) {
      if (g.lane == 0) report_error(err, i, ERR_CIPHERTEXT_RANGE);
      continue;
    }
    limb_t mp[LPT], mq[LPT];
    decrypt_half_coop<LP, TPI>(g, mp, lo, hi, K.p2, K.p, K.p_m1, K.p_inv_r, K.hp_r, (int)K.half_bits, tab);
    decrypt_half_coop<LP, TPI>(g, mq, lo, hi, K.q2, K.q, K.q_m1, K.q_inv_r, K.hq_r, (int)K.half_bits, tab);
    // Garner: m = m_q + q ((m_p - m_q) q^-1 mod p), the product below n < R (exact)
    modulus<LP, TPI> M;
    load_mod<LP, TPI>(g, M, K.p);
    load<LP, TPI>(g, e, K.p.r2, LP);
    mont_mul<LP, TPI>(g, d, mp, e, M);  // m_p R mod p
    mont_mul<LP, TPI>(g, lo, mq, e, M); // m_q R mod p (m_q may exceed p)
    mod_sub<LP, TPI>(g, d, d, lo, M);
    load<LP, TPI>(g, e, K.q_inv_p, LP);
    mont_mul<LP, TPI>(g, d, d, e, M);   // (m_p - m_q) q^-1 mod p
    load<LP, TPI>(g, e, K.q_val, LP);
    mul_low<LP, TPI>(g, d, d, e);
    add<LP, TPI>(g, d, d, mq);
    store<LP, TPI>(g, out + i * (unsigned long long)ps, d, ps);
  }
}

}  // namespace coop
}  // namespace hea

#define HEA_DECRYPT_COOP_KERNELS(LP)                                                                 \
  extern "C" __global__ void HEA_COOP_BOUNDS(LP) paillier_decrypt_coop_##LP(limb_t* out, const limb_t* cts,              \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {        \
    __shared__ limb_t tab[hea::coop::coop_entries(LP) * (LP / hea::coop::coop_tpi(LP)) * HEA_COOP_BLOCK]; \
    hea::coop::decrypt_coop<LP>(out, cts, count, key, ps, cs, err, tab);                             \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_DECRYPT_COOP_KERNELS)
