// Montgomery arithmetic modulo an odd m < R = 2^(32L), and exponentiation built on it.
//
// A modulus travels as a mod_rec: m, R^2 mod m and m' = -m^-1 mod 2^32, computed on the host
// (accel/gpu/limbs.py). Values "in Montgomery form" are x*R mod m. All routines here take
// reduced inputs (< m) unless stated, and return reduced outputs.
#pragma once
#include "mp_arith.cuh"

namespace hea {

template <int L> struct mod_rec {
  limb_t m[L];
  limb_t r2[L];   // R^2 mod m
  limb_t minv;    // -m^-1 mod 2^32
};

// r = a * b * R^-1 mod m (CIOS). requires: m odd, a < R, b < m (so a*b < m*R); r < m.
// Constant time: no data-dependent branch; the final subtraction is a masked select.
// r may alias a or b. Squaring uses this too (a dedicated squaring is a tuning item).
template <int L> HEA_BIG_FN void mont_mul(limb_t* r, const limb_t* a, const limb_t* b,
                                      const mod_rec<L>& M) {
  limb_t t[L + 2];
  HEA_LIMB_LOOP
  for (int i = 0; i < L + 2; i++) t[i] = 0;
  HEA_UNROLL(1)
  for (int i = 0; i < L; i++) {
    limb_t bi = b[i];
    uint64_t c = 0;
    HEA_UNROLL(8)
    for (int j = 0; j < L; j++) {
      c += (uint64_t)a[j] * bi + t[j];
      t[j] = (limb_t)c;
      c >>= 32;
    }
    c += t[L];
    t[L] = (limb_t)c;
    t[L + 1] = (limb_t)(c >> 32);
    limb_t u = t[0] * M.minv;
    c = ((uint64_t)u * M.m[0] + t[0]) >> 32;
    HEA_UNROLL(8)
    for (int j = 1; j < L; j++) {
      c += (uint64_t)u * M.m[j] + t[j];
      t[j - 1] = (limb_t)c;
      c >>= 32;
    }
    c += t[L];
    t[L - 1] = (limb_t)c;
    t[L] = t[L + 1] + (limb_t)(c >> 32);
  }
  // t < 2m: subtract m when t >= m, i.e. when t[L] is set or the subtraction does not borrow.
  limb_t d[L];
  limb_t borrow = mp_sub<L>(d, t, M.m);
  limb_t use_d = t[L] | (borrow ^ 1u);
  mp_select<L>(r, use_d, d, t);
}

// x*R mod m for any x < R (x need not be reduced).
template <int L> HEA_FN void to_mont(limb_t* r, const limb_t* x, const mod_rec<L>& M) {
  mont_mul<L>(r, x, M.r2, M);
}

// x mod m from Montgomery form (also reduces any x < R to x*R^-1 mod m).
template <int L> HEA_FN void from_mont(limb_t* r, const limb_t* x, const mod_rec<L>& M) {
  limb_t one[L];
  mp_set_ui<L>(one, 1u);
  mont_mul<L>(r, x, one, M);
}

// R mod m, Montgomery form of 1.
template <int L> HEA_FN void mont_one(limb_t* r, const mod_rec<L>& M) {
  limb_t one[L];
  mp_set_ui<L>(one, 1u);
  to_mont<L>(r, one, M);
}

// r = (a + b) mod m. requires a, b < m.
template <int L> HEA_FN void mod_add(limb_t* r, const limb_t* a, const limb_t* b, const mod_rec<L>& M) {
  limb_t s[L], d[L];
  limb_t carry = mp_add<L>(s, a, b);
  limb_t borrow = mp_sub<L>(d, s, M.m);
  mp_select<L>(r, carry | (borrow ^ 1u), d, s);
}

// r = (a - b) mod m. requires a, b < m.
template <int L> HEA_FN void mod_sub(limb_t* r, const limb_t* a, const limb_t* b, const mod_rec<L>& M) {
  limb_t d[L], s[L];
  limb_t borrow = mp_sub<L>(d, a, b);
  mp_add<L>(s, d, M.m);
  mp_select<L>(r, borrow, s, d);
}

// Montgomery form of X mod m for X of `xl` limbs at x (any size): Horner over L-limb chunks,
// acc <- acc*R + chunk*R. Used to reduce ciphertexts mod p^2 and arbitrary powmod bases.
template <int L> HEA_BIG_FN void reduce_to_mont(limb_t* r, const limb_t* x, int xl, const mod_rec<L>& M) {
  int chunks = (xl + L - 1) / L;
  limb_t acc[L], y[L];
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) acc[i] = 0;
  for (int k = chunks - 1; k >= 0; k--) {
    HEA_LIMB_LOOP
    for (int i = 0; i < L; i++) {
      int idx = k * L + i;
      y[i] = idx < xl ? x[idx] : 0u;
    }
    to_mont<L>(y, y, M);                 // chunk * R mod m
    mont_mul<L>(acc, acc, M.r2, M);      // acc * R mod m
    mod_add<L>(acc, acc, y, M);
  }
  mp_copy<L>(r, acc);
}

// r = a^-1 mod m by the binary extended Euclid; returns false when gcd(a, m) != 1.
// Variable time: for public values only (ciphertexts, public bases). requires a < m, m odd.
template <int L> HEA_BIG_FN bool mod_inverse(limb_t* r, const limb_t* a, const mod_rec<L>& M) {
  limb_t u[L], v[L], x1[L], x2[L];
  mp_copy<L>(u, a);
  mp_copy<L>(v, M.m);
  mp_set_ui<L>(x1, 1u);
  mp_set_ui<L>(x2, 0u);
  if (mp_is_zero<L>(u)) return false;
  while (!mp_is_one<L>(u) && !mp_is_one<L>(v)) {
    while ((u[0] & 1u) == 0) {
      mp_shr1<L>(u, u, 0u);
      limb_t top = 0;
      if (x1[0] & 1u) top = mp_add<L>(x1, x1, M.m);
      mp_shr1<L>(x1, x1, top);
    }
    while ((v[0] & 1u) == 0) {
      mp_shr1<L>(v, v, 0u);
      limb_t top = 0;
      if (x2[0] & 1u) top = mp_add<L>(x2, x2, M.m);
      mp_shr1<L>(x2, x2, top);
    }
    if (mp_cmp<L>(u, v) >= 0) {
      mp_sub<L>(u, u, v);
      mod_sub<L>(x1, x1, x2, M);
      if (mp_is_zero<L>(u)) return false;  // gcd = v > 1
    } else {
      mp_sub<L>(v, v, u);
      mod_sub<L>(x2, x2, x1, M);
    }
  }
  if (mp_is_one<L>(u)) mp_copy<L>(r, x1); else mp_copy<L>(r, x2);
  return true;
}

// Window width for the fixed-window exponentiations.
#ifndef HEA_WINDOW
#define HEA_WINDOW 4
#endif

// table[d] = base^d in Montgomery form for d < 2^HEA_WINDOW; entries of L limbs, contiguous
// (local arrays here; device-resident rows in matvec and DJN).
template <int L> HEA_FN void window_table(limb_t* table, const limb_t* base_m, const mod_rec<L>& M) {
  const int T = 1 << HEA_WINDOW;
  mont_one<L>(table, M);
  mp_copy<L>(table + L, base_m);
  for (int d = 2; d < T; d++) mont_mul<L>(table + d * L, table + (d - 1) * L, base_m, M);
}

// pick = table[d] for a SECRET d: reads every entry and keeps one by mask, so the address
// pattern does not depend on d (the compare compiles to a predicated select, no branch).
template <int L> HEA_FN void select_entry(limb_t* pick, const limb_t* table, limb_t d) {
  const int T = 1 << HEA_WINDOW;
  HEA_LIMB_LOOP
  for (int i = 0; i < L; i++) pick[i] = 0;
  for (int t = 0; t < T; t++) {
    limb_t mask = 0u - (limb_t)(t == (int)d);
    HEA_LIMB_LOOP
    for (int i = 0; i < L; i++) pick[i] |= table[t * L + i] & mask;
  }
}

// r = base^e in Montgomery form, base in Montgomery form, e of `el` limbs with at most `ebits`
// significant bits. PUBLIC exponent: starts at its top window and indexes the table directly.
template <int L> HEA_BIG_FN void mont_pow_public(limb_t* r, const limb_t* base_m, const limb_t* e, int el,
                                                 int ebits, const mod_rec<L>& M) {
  const int W = HEA_WINDOW, T = 1 << W;
  limb_t table[T * L], acc[L];
  window_table<L>(table, base_m, M);
  mp_copy<L>(acc, table);
  for (int k = (ebits + W - 1) / W - 1; k >= 0; k--) {
    for (int s = 0; s < W; s++) mont_mul<L>(acc, acc, acc, M);
    limb_t d = mp_window(e, el, k * W, W);
    if (d) mont_mul<L>(acc, acc, table + d * L, M);
  }
  mp_copy<L>(r, acc);
}

// Same result for a SECRET exponent (decryption, CRT obfuscators): a fixed number of windows
// (from the public bound ebits), a multiplication in every window, masked table reads.
// No branch or address depends on e.
template <int L> HEA_BIG_FN void mont_pow_secret(limb_t* r, const limb_t* base_m, const limb_t* e, int el,
                                                 int ebits, const mod_rec<L>& M) {
  const int W = HEA_WINDOW, T = 1 << W;
  limb_t table[T * L], acc[L], pick[L];
  window_table<L>(table, base_m, M);
  mp_copy<L>(acc, table);
  for (int k = (ebits + W - 1) / W - 1; k >= 0; k--) {
    for (int s = 0; s < W; s++) mont_mul<L>(acc, acc, acc, M);
    select_entry<L>(pick, table, mp_window(e, el, k * W, W));
    mont_mul<L>(acc, acc, pick, M);
  }
  mp_copy<L>(r, acc);
}

}  // namespace hea
