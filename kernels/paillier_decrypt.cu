// Batch Paillier CRT decryption (kernel family: decrypt).
//
//   m_p = L_p(c^(p-1) mod p^2) hp mod p,  m_q likewise,  m = m_q + q ((m_p - m_q) q^-1 mod p)
//
// with L_p(x) = (x - 1) / p done as an exact division (multiply by p^-1 mod 2^(32 LP)).
// requires: a crt_rec built from the private key. Checks 0 < c < n^2 and reports through err.
// The exponents p-1, q-1 are secret: mont_pow_secret (fixed windows, masked table reads).
#include "paillier.cuh"

using namespace hea;

namespace hea {

// L_u(c^(u-1) mod u^2) * h_u mod u for one prime u (u2 = u^2, u_rec = u).
template <int LP> HEA_FN void decrypt_half(limb_t* out, const limb_t* c, const mod_rec<LP>& u2,
                                           const mod_rec<LP>& u, const limb_t* u_m1, const limb_t* u_inv_r,
                                           const limb_t* h_r, int half_bits) {
  limb_t x[LP];
  reduce_to_mont<LP>(x, c, 2 * LP, u2);                   // c mod u^2, Montgomery form
  mont_pow_secret<LP>(x, x, u_m1, LP, half_bits, u2);
  from_mont<LP>(x, x, u2);
  limb_t one[LP];
  mp_set_ui<LP>(one, 1u);
  mp_sub<LP>(x, x, one);                                  // c^(u-1) = 1 + k u, so x - 1 = k u
  mp_mul_low<LP>(x, x, u_inv_r);                          // k, exact
  mont_mul<LP>(out, x, h_r, u);                           // k * h mod u
}

}  // namespace hea

#define HEA_DECRYPT_KERNELS(LP)                                                                   \
  extern "C" __global__ void paillier_decrypt_##LP(limb_t* out, const limb_t* cts,                  \
      unsigned long long count, const limb_t* key, int ps, int cs, unsigned long long* err) {       \
    const crt_rec<LP>& K = *reinterpret_cast<const crt_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(i, count) {                                                                \
      limb_t c[2 * LP], mp[LP], mq[LP], t[LP], u[LP];                                               \
      if (!load_ciphertext<LP>(c, cts + i * cs, cs, K.pub, i, err)) continue;                       \
      decrypt_half<LP>(mp, c, K.p2, K.p, K.p_m1, K.p_inv_r, K.hp_r, (int)K.half_bits);              \
      decrypt_half<LP>(mq, c, K.q2, K.q, K.q_m1, K.q_inv_r, K.hq_r, (int)K.half_bits);              \
      to_mont<LP>(t, mp, K.p);                                                                      \
      to_mont<LP>(u, mq, K.p);                               /* m_q may exceed p */                 \
      mod_sub<LP>(t, t, u, K.p);                                                                    \
      mont_mul<LP>(t, t, K.q_inv_p, K.p);                    /* (m_p - m_q) q^-1 mod p */           \
      mp_mul_low<LP>(t, t, K.q_val);                                                                \
      mp_add<LP>(t, t, mq);                                  /* < n: fits LP limbs */               \
      mp_store<LP>(out + i * ps, t, ps);                                                            \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_DECRYPT_KERNELS)
