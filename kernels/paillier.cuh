// Paillier key records and per-element helpers shared by the Paillier kernel families.
//
// Size class LP: plaintexts (and p, q, p^2, q^2) fit in LP limbs, ciphertexts (n^2) in 2*LP.
// The records are flat limb arrays built by accel/gpu/limbs.py in exactly this field order.
#pragma once
#include "errors.cuh"
#include "montgomery.cuh"

namespace hea {

template <int LP> struct pub_rec {
  mod_rec<2 * LP> n2;
  limb_t n[LP];
  limb_t n_bits;
};

template <int LP> struct crt_rec {
  mod_rec<LP> p2, q2, p, q;
  pub_rec<LP> pub;
  limb_t p_m1[LP], q_m1[LP];   // CRT decryption exponents p-1, q-1 (secret)
  limb_t p_val[LP], q_val[LP]; // p, q: CRT obfuscator exponents (secret)
  limb_t p_inv_r[LP];          // p^-1 mod 2^(32 LP): exact division (x-1)/p
  limb_t q_inv_r[LP];
  limb_t hp_r[LP];             // hp * R mod p, R = 2^(32 LP)
  limb_t hq_r[LP];             // hq * R mod q
  limb_t q_inv_p[LP];          // q^-1 mod p (Garner)
  limb_t q2_inv_p2[LP];        // (q^2)^-1 mod p^2 (CRT of the obfuscator halves)
  limb_t half_bits;            // max(|p|, |q|): public bound on the secret exponents' length
};

// Load a plaintext (stride limbs) and check m < n. Returns false (and reports) when out of range.
template <int LP> HEA_FN bool load_plaintext(limb_t* m, const limb_t* src, int stride, const pub_rec<LP>& K,
                                             unsigned long long index, unsigned long long* err) {
  bool fits = mp_fits<LP>(src, stride);
  mp_load<LP>(m, src, stride);
  if (!fits || mp_cmp<LP>(m, K.n) >= 0) {
    report_error(err, index, ERR_PLAINTEXT_RANGE);
    return false;
  }
  return true;
}

// Load a ciphertext and check 0 < c < n^2.
template <int LP> HEA_FN bool load_ciphertext(limb_t* c, const limb_t* src, int stride, const pub_rec<LP>& K,
                                              unsigned long long index, unsigned long long* err,
                                              limb_t code = ERR_CIPHERTEXT_RANGE) {
  bool fits = mp_fits<2 * LP>(src, stride);
  mp_load<2 * LP>(c, src, stride);
  if (!fits || mp_is_zero<2 * LP>(c) || mp_cmp<2 * LP>(c, K.n2.m) >= 0) {
    report_error(err, index, code);
    return false;
  }
  return true;
}

// g^m = 1 + m*n mod n^2 for g = n + 1: one plain product, no reduction (m < n gives < n^2).
template <int LP> HEA_FN void g_pow_m(limb_t* out, const limb_t* m, const pub_rec<LP>& K) {
  mp_mul<LP, LP>(out, m, K.n);
  mp_add_ui<2 * LP>(out, out, 1u);
}

// r^n mod n^2 in Montgomery form. The exponent n is public; r (secret) only feeds the arithmetic.
template <int LP> HEA_FN void r_pow_n_mont(limb_t* out, const limb_t* r, const pub_rec<LP>& K) {
  limb_t base[2 * LP];
  mp_load<2 * LP>(base, r, LP);
  to_mont<2 * LP>(base, base, K.n2);
  mont_pow_public<2 * LP>(out, base, K.n, LP, (int)K.n_bits, K.n2);
}

// The key holder's n-th residue CRT(zp^p mod p^2, zq^q mod q^2), plain, < n^2 (2*LP limbs).
// Same distribution as r^n for uniform r (see accel/backends/_gmp_ops.py). Secret exponents.
template <int LP> HEA_FN void crt_obfuscator(limb_t* out, const limb_t* zp, const limb_t* zq,
                                             const crt_rec<LP>& K) {
  limb_t xp_m[LP], xq_m[LP], t[LP];
  to_mont<LP>(t, zp, K.p2);
  mont_pow_secret<LP>(xp_m, t, K.p_val, LP, (int)K.half_bits, K.p2);   // xp * R mod p^2
  to_mont<LP>(t, zq, K.q2);
  mont_pow_secret<LP>(xq_m, t, K.q_val, LP, (int)K.half_bits, K.q2);
  limb_t xq[LP];
  from_mont<LP>(xq, xq_m, K.q2);                                        // xq < q^2
  reduce_to_mont<LP>(t, xq, LP, K.p2);                                  // xq * R mod p^2
  mod_sub<LP>(t, xp_m, t, K.p2);                                        // (xp - xq) * R mod p^2
  limb_t h[LP];
  mont_mul<LP>(h, t, K.q2_inv_p2, K.p2);                                // (xp - xq) / q^2 mod p^2
  mp_mul<LP, LP>(out, K.q2.m, h);                                       // q^2 * h < n^2
  limb_t xq_wide[2 * LP];
  mp_load<2 * LP>(xq_wide, xq, LP);
  mp_add<2 * LP>(out, out, xq_wide);
}

}  // namespace hea

// Instantiate a kernel macro for every Paillier size class (LP = plaintext limbs): keys up to
// 1024, 2048, 3072 and 4096 bits. The run-time compiler defines HEA_KEY_CLASS to build only the
// class a key needs (each class is a few minutes of ptxas at most; one is all a key uses).
#if defined(HEA_KEY_CLASS)
#define HEA_FOR_EACH_KEY_CLASS(X) HEA_APPLY(X, HEA_KEY_CLASS)
#else
#define HEA_FOR_EACH_KEY_CLASS(X) X(32) X(64) X(96) X(128)
#endif
