// Cooperative Montgomery arithmetic: a number is owned by a group of TPI threads (8, 16 or 32,
// consecutive lanes of one warp), lane l holding limbs [l*LPT, (l+1)*LPT) in registers
// (LPT = L / TPI). Our own design after the structure of NVlabs CGBN (not its code):
//
// * multiplication is row-wise CIOS: each multiplier word b_i is broadcast from its owner with
//   one shuffle, every lane adds a*b_i and m*u into its slice with PTX carry chains, lane 0's
//   u = t_0 * m' is broadcast, and the division by 2^32 moves each lane's lowest limb to the
//   lane below (one shuffle). The carry out of a lane's slice is not passed on at once: it
//   stays in a per-lane word `hi` (<= 3, see mont_mul) that is folded into the lane's top limb
//   at the next shift, so a step has no group-wide dependency besides the three shuffles;
// * a group-wide carry resolution (two ballots and one 64-bit add, as in a carry-lookahead
//   adder over the lanes) normalises the result once per multiplication, and the final
//   conditional subtraction is a masked select (no data-dependent branch);
// * exponent tables live in shared memory, one column per thread (each thread reads only
//   what it wrote: no bank conflicts, no barrier), never in per-thread local memory.
//
// Every routine here must be called by all TPI lanes of the group together (their shuffles and
// ballots name the group's lanes only, so groups of one warp may take different paths).
// Off the GPU (g++), the PTX carry chains are portable C++ and the intrinsics come from the
// lockstep emulator (host/lockstep.hpp).
#pragma once
#include "errors.cuh"
#include "montgomery.cuh"

#if defined(__CUDACC__)
#define HEA_UNROLL_ALL HEA_PRAGMA(unroll)
#else
#define HEA_UNROLL_ALL
#endif

// Threads per block the cooperative kernels are written for (shared-memory tables are sized
// by it; accel/gpu/runtime.py launches every kernel with this many).
#define HEA_COOP_BLOCK 128

// The exponentiation kernels are built for 8 resident blocks of HEA_COOP_BLOCK threads (64
// registers, 50% occupancy on sm_90) where a lane holds at most six limbs (moduli up to 6144
// bits); they fit there without spills, the dedicated squaring included (he-accel kernels report).
#define HEA_COOP_BOUNDS(L) __launch_bounds__(HEA_COOP_BLOCK, (L) / hea::coop::coop_tpi(L) <= 6 ? 8 : 1)

namespace hea {
namespace coop {

// One carry chain: PTX's CC.CF flag on the GPU, a member off it. Use one object per chain, in
// program order (the asm statements are volatile, so they stay in that order).
struct carry {
#if !defined(__CUDA_ARCH__)
  limb_t cf = 0;
#endif
  HEA_FN limb_t add_cc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("add.cc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    uint64_t s = (uint64_t)a + b;
    cf = (limb_t)(s >> 32);
    return (limb_t)s;
#endif
  }
  HEA_FN limb_t addc_cc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("addc.cc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    uint64_t s = (uint64_t)a + b + cf;
    cf = (limb_t)(s >> 32);
    return (limb_t)s;
#endif
  }
  HEA_FN limb_t addc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("addc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return a + b + cf;
#endif
  }
  HEA_FN limb_t sub_cc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("sub.cc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    cf = a < b;
    return a - b;
#endif
  }
  HEA_FN limb_t subc_cc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("subc.cc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    uint64_t need = (uint64_t)b + cf;
    limb_t r = (limb_t)((uint64_t)a - need);
    cf = (uint64_t)a < need;
    return r;
#endif
  }
  HEA_FN limb_t subc(limb_t a, limb_t b) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("subc.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return a - b - cf;
#endif
  }
  HEA_FN limb_t mad_lo_cc(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("mad.lo.cc.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return add_cc(a * b, c);
#endif
  }
  HEA_FN limb_t madc_lo_cc(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("madc.lo.cc.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return addc_cc(a * b, c);
#endif
  }
  HEA_FN limb_t mad_hi_cc(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("mad.hi.cc.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return add_cc((limb_t)(((uint64_t)a * b) >> 32), c);
#endif
  }
  HEA_FN limb_t madc_hi_cc(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("madc.hi.cc.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return addc_cc((limb_t)(((uint64_t)a * b) >> 32), c);
#endif
  }
  HEA_FN limb_t madc_hi(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
    limb_t r;
    asm volatile("madc.hi.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
#else
    return addc((limb_t)(((uint64_t)a * b) >> 32), c);
#endif
  }
};

// Threads per number: four limbs per lane up to 4096-bit moduli (3 at 3072), then a full warp.
// Mirrored by accel/gpu/build.py COOP_TPI (a test checks that they agree).
__host__ __device__ constexpr int coop_tpi(int L) { return L <= 32 ? 8 : (L <= 64 ? 16 : 32); }
// Exponent-table entries per number for SECRET exponents: 8 (fixed 3-bit windows, every entry
// read by mask). The table takes ENTRIES * L * 4 bytes of shared memory per number.
#ifndef HEA_COOP_ENTRIES
#define HEA_COOP_ENTRIES 8
#endif
__host__ __device__ constexpr int coop_entries(int) { return HEA_COOP_ENTRIES; }
// Shared memory of one SM on sm_90 and what the system reserves per block (accel/gpu/report.py).
#define HEA_SM_SMEM (228 * 1024)
#define HEA_BLOCK_SMEM_RESERVED 1024
// Shared memory the dedicated squaring keeps per block (mont_sqr_blocks: its copy of the number,
// LPT limbs, and of one sum, 2 LPT + 1, per thread); 0 when squarings run the multiplication.
#ifndef HEA_COOP_SQR
#define HEA_COOP_SQR 1
#endif
// The dedicated squaring runs where a lane holds at most four limbs (moduli up to 4096 bits:
// every class HEA_COOP_BOUNDS keeps at 64 registers); with six or eight its wider sums cost
// more registers than those kernels have spare.
__host__ __device__ constexpr bool coop_sqr_blocks(int L) { return HEA_COOP_SQR && L / coop_tpi(L) <= 4; }
__host__ __device__ constexpr int coop_sqr_smem(int L) {
  return coop_sqr_blocks(L) ? 4 * HEA_COOP_BLOCK * (3 * (L / coop_tpi(L)) + 1) : 0;
}
// Entries for PUBLIC exponents: odd powers base, base^3, ..., base^(2E-1) for fractional sliding
// windows of up to 5 bits (digits odd and at most 2E-1). E is the most that keeps 8 blocks of
// HEA_COOP_BLOCK threads (32 warps, 50% of sm_90's 64) in an SM's shared memory beside the
// squaring's: 10 at four limbs per lane (1024- to 4096-bit moduli), 15 at
// three, 9 at six; never fewer than the 8 of 4-bit windows (eight limbs per lane: 8192-bit
// moduli, where registers keep occupancy below 50% anyway). 6-bit windows (32 entries) would
// take 64 KB per block at 2048 bits.
__host__ __device__ constexpr int coop_pub_fit(int L) {
  return (HEA_SM_SMEM / 8 - HEA_BLOCK_SMEM_RESERVED - coop_sqr_smem(L)) / (4 * HEA_COOP_BLOCK * (L / coop_tpi(L)));
}
__host__ __device__ constexpr int coop_pub_entries(int L) {
  return coop_pub_fit(L) > 16 ? 16 : coop_pub_fit(L) < 8 ? 8 : coop_pub_fit(L);
}
// Shared-memory table entries of a kernel that runs both kinds of exponent.
__host__ __device__ constexpr int coop_table_entries(int L) {
  return coop_pub_entries(L) > coop_entries(L) ? coop_pub_entries(L) : coop_entries(L);
}
// Entries a public exponent of `ebits` bits uses (at most `most`): about one per 16 bits, the
// fewest multiplications (table and windows) by accel.bench.kernel_model's count over random
// exponents (64 bits: 4 entries; 128: 8; 2048: all 10).
HEA_FN int pub_entries_for(int ebits, int most) {
  int e = ebits >> 4;
  return e < 2 ? 2 : (e > most ? most : e);
}

// The group of the calling thread: TPI consecutive lanes of its warp.
template <int L, int TPI> struct group {
  static_assert(TPI == 8 || TPI == 16 || TPI == 32, "8, 16 or 32 threads per number");
  static_assert(L % TPI == 0 && L / TPI >= 2, "each lane holds at least two limbs");
  static constexpr int LPT = L / TPI;
  unsigned lane;   // index within the group
  unsigned first;  // warp lane of the group's lane 0
  unsigned mask;   // the group's lanes, as a warp mask

  HEA_FN static group mine() {
    group g;
    unsigned w = threadIdx.x & 31u;
    g.lane = w & (TPI - 1);
    g.first = w & ~(unsigned)(TPI - 1);
    g.mask = TPI == 32 ? 0xffffffffu : ((1u << TPI) - 1u) << g.first;
    return g;
  }

  // Group-wide carry (or borrow) propagation across lanes. Each lane says whether its slice
  // generates a carry out (gen) and whether it passes an incoming one on (prop: all ones for a
  // carry, all zeros for a borrow; never both). Returns this lane's carry in; *out is the
  // carry out of the whole group. The lanes are the bits of a TPI-bit adder: with A = gen|prop
  // and B = gen, the carries of A + B are (A + B) ^ A ^ B, i.e. exactly c_l = gen_{l-1} |
  // (prop_{l-1} & c_{l-1}) for every lane at once.
  HEA_FN limb_t propagate(limb_t gen, limb_t prop, limb_t* out) const {
    const uint64_t lanes = TPI == 32 ? 0xffffffffull : (1ull << TPI) - 1ull;
    uint64_t gm = ((uint64_t)__ballot_sync(mask, gen != 0) >> first) & lanes;
    uint64_t pm = ((uint64_t)__ballot_sync(mask, prop != 0 && gen == 0) >> first) & lanes;
    uint64_t carries = ((gm | pm) + gm) ^ pm;
    *out = (limb_t)(carries >> TPI) & 1u;
    return (limb_t)(carries >> lane) & 1u;
  }
};

// d = a - b over the group; returns the group's borrow out (1 iff a < b), the same on every lane.
template <int L, int TPI> HEA_FN limb_t sub(const group<L, TPI>& g, limb_t* d, const limb_t* a, const limb_t* b) {
  constexpr int LPT = L / TPI;
  carry c;
  d[0] = c.sub_cc(a[0], b[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) d[k] = c.subc_cc(a[k], b[k]);
  limb_t gen = c.subc(0u, 0u) & 1u;
  limb_t zero = d[0];
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) zero |= d[k];
  limb_t out;
  limb_t borrow_in = g.propagate(gen, zero == 0u, &out);
  carry c2;
  d[0] = c2.sub_cc(d[0], borrow_in);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) d[k] = c2.subc_cc(d[k], 0u);
  return out;
}

// x = x + v for a small v (< 2^32) over the group; returns the group's carry out.
template <int L, int TPI> HEA_FN limb_t add_small(const group<L, TPI>& g, limb_t* x, limb_t v) {
  constexpr int LPT = L / TPI;
  carry c;
  x[0] = c.add_cc(x[0], g.lane == 0 ? v : 0u);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) x[k] = c.addc_cc(x[k], 0u);
  limb_t gen = c.addc(0u, 0u);
  limb_t ones = x[0];
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) ones &= x[k];
  limb_t out;
  limb_t carry_in = g.propagate(gen, ones == 0xffffffffu, &out);
  carry c2;
  x[0] = c2.add_cc(x[0], carry_in);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) x[k] = c2.addc_cc(x[k], 0u);
  return out;
}

// d = a + b over the group; returns the group's carry out (the same on every lane).
template <int L, int TPI> HEA_FN limb_t add(const group<L, TPI>& g, limb_t* d, const limb_t* a, const limb_t* b) {
  constexpr int LPT = L / TPI;
  carry c;
  d[0] = c.add_cc(a[0], b[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) d[k] = c.addc_cc(a[k], b[k]);
  limb_t gen = c.addc(0u, 0u);  // a slice that carries out is never all ones: gen and prop exclude
  limb_t ones = d[0];
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) ones &= d[k];
  limb_t out;
  limb_t carry_in = g.propagate(gen, ones == 0xffffffffu, &out);
  carry c2;
  d[0] = c2.add_cc(d[0], carry_in);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) d[k] = c2.addc_cc(d[k], 0u);
  return out;
}

// Whether the group's number is zero (the same on every lane).
template <int L, int TPI> HEA_FN bool is_zero(const group<L, TPI>& g, const limb_t* x) {
  constexpr int LPT = L / TPI;
  limb_t any = x[0];
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) any |= x[k];
  return __ballot_sync(g.mask, any != 0u) == 0u;
}

// This lane's slice of a number stored as `stride` limbs at src, zero-extended to L limbs and
// cut at `width` limbs (width <= L). Returns, on every lane, whether all stored limbs at or
// above `width` are zero (the number fits).
template <int L, int TPI>
HEA_FN bool load(const group<L, TPI>& g, limb_t* x, const limb_t* src, int stride, int width = L) {
  constexpr int LPT = L / TPI;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    int idx = (int)g.lane * LPT + k;
    x[k] = idx < stride && idx < width ? src[idx] : 0u;
  }
  limb_t above = 0u;
  for (int idx = width + (int)g.lane; idx < stride; idx += TPI) above |= src[idx];
  return __ballot_sync(g.mask, above != 0u) == 0u;
}

// Store the first `stride` limbs of the number (the rest must be zero: the caller's contract).
template <int L, int TPI> HEA_FN void store(const group<L, TPI>& g, limb_t* dst, const limb_t* x, int stride) {
  constexpr int LPT = L / TPI;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    int idx = (int)g.lane * LPT + k;
    if (idx < stride) dst[idx] = x[k];
  }
}

// r = x if pick else y (pick is 0 or 1; no branch).
template <int LPT> HEA_FN void select(limb_t* r, limb_t pick, const limb_t* x, const limb_t* y) {
  limb_t mask = 0u - pick;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) r[k] = (x[k] & mask) | (y[k] & ~mask);
}

// x = 1 (the plain number, not its Montgomery form): cheaper to make again than to keep live.
template <int L, int TPI> HEA_FN void set_one(const group<L, TPI>& g, limb_t* x) {
  constexpr int LPT = L / TPI;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) x[k] = (g.lane == 0 && k == 0) ? 1u : 0u;
}

// The modulus as the group holds it: this lane's slice of m and -m^-1 mod 2^32.
template <int L, int TPI> struct modulus {
  limb_t m[L / TPI];
  limb_t minv;
};

// One CIOS row: t <- (t + a*bi + m*u) / 2^32 with u = (t + a*bi)_0 * m' from lane 0. The carry
// out of each lane's slice goes into its `hi` (see mont_mul for the bound).
template <int L, int TPI>
HEA_FN void mont_row(const group<L, TPI>& g, limb_t* t, limb_t& hi, const limb_t* a, limb_t bi,
                     const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  carry c;
  t[0] = c.mad_lo_cc(a[0], bi, t[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) t[k] = c.madc_lo_cc(a[k], bi, t[k]);
  limb_t c1 = c.addc(0u, 0u);
  t[1] = c.mad_hi_cc(a[0], bi, t[1]);
  HEA_UNROLL_ALL
  for (int k = 2; k < LPT; k++) t[k] = c.madc_hi_cc(a[k - 1], bi, t[k]);
  c1 = c.madc_hi(a[LPT - 1], bi, c1);

  limb_t u = __shfl_sync(g.mask, t[0] * M.minv, 0, TPI);

  t[0] = c.mad_lo_cc(M.m[0], u, t[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) t[k] = c.madc_lo_cc(M.m[k], u, t[k]);
  limb_t c2 = c.addc(0u, 0u);
  t[1] = c.mad_hi_cc(M.m[0], u, t[1]);
  HEA_UNROLL_ALL
  for (int k = 2; k < LPT; k++) t[k] = c.madc_hi_cc(M.m[k - 1], u, t[k]);
  c2 = c.madc_hi(M.m[LPT - 1], u, c2);

  // Divide by 2^32: lane l's limb 0 becomes lane l-1's top limb (lane 0's is zero by the choice
  // of u); the top limb also collects this lane's carries, which had that weight.
  limb_t next = __shfl_down_sync(g.mask, t[0], 1, TPI);
  next = g.lane == TPI - 1 ? 0u : next;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT - 1; k++) t[k] = t[k + 1];
  uint64_t top = (uint64_t)next + c1 + c2 + hi;  // below 2^34: three-input adds, not a chain
  t[LPT - 1] = (limb_t)top;
  hi = (limb_t)(top >> 32);
}

// Fold each lane's `hi` into the lane above and propagate: t (plus the returned top word, the
// group's bits above L limbs) is then an ordinary number in slices.
template <int L, int TPI> HEA_FN limb_t normalise(const group<L, TPI>& g, limb_t* t, limb_t hi) {
  constexpr int LPT = L / TPI;
  limb_t below = __shfl_up_sync(g.mask, hi, 1, TPI);
  below = g.lane == 0 ? 0u : below;
  limb_t top = __shfl_sync(g.mask, hi, TPI - 1, TPI);
  carry c;
  t[0] = c.add_cc(t[0], below);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) t[k] = c.addc_cc(t[k], 0u);
  limb_t gen = c.addc(0u, 0u);
  limb_t ones = t[0];
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) ones &= t[k];
  limb_t out;
  limb_t carry_in = g.propagate(gen, ones == 0xffffffffu, &out);
  carry c2;
  t[0] = c2.add_cc(t[0], carry_in);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) t[k] = c2.addc_cc(t[k], 0u);
  return top + out;
}

// (forward) the Montgomery multiplication, below
template <int L, int TPI>
HEA_FN void mont_mul(const group<L, TPI>& g, limb_t* r, const limb_t* a, const limb_t* b, const modulus<L, TPI>& M);

// This lane's slice of a modulus record's m and m' only (no R^2 or R mod m: for callers that need
// none, or load or make them where used, not held: registers bound occupancy).
template <int L, int TPI> HEA_FN void load_mod(const group<L, TPI>& g, modulus<L, TPI>& M, const mod_rec<L>& rec) {
  constexpr int LPT = L / TPI;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) M.m[k] = rec.m[g.lane * LPT + k];
  M.minv = rec.minv;
}

// Load x (cs limbs, e.g. a ciphertext) into the group's slices and check 0 < x < m (the group's
// modulus, e.g. n^2); the same answer on every lane.
template <int L, int TPI>
HEA_FN bool load_unit(const group<L, TPI>& g, limb_t* x, const limb_t* src, int cs, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  bool fits = load<L, TPI>(g, x, src, cs);
  limb_t d[LPT];
  bool below = sub<L, TPI>(g, d, x, M.m) == 1u;
  return fits && below && !is_zero<L, TPI>(g, x);
}

// load_unit; where x is out of range, lane 0 also reports element i with code (the caller skips it).
template <int L, int TPI>
HEA_FN bool load_unit_or_report(const group<L, TPI>& g, limb_t* x, const limb_t* src, int cs, const modulus<L, TPI>& M,
                                unsigned long long* err, unsigned long long i, limb_t code) {
  if (load_unit<L, TPI>(g, x, src, cs, M)) return true;
  if (g.lane == 0) report_error(err, i, code);
  return false;
}

// Grid-stride over the chunks of [0, count), one group of TPI threads a chunk: f(t, start, stop)
// for chunk t = [start, stop). Launch: HEA_COOP_BLOCK threads per block.
template <int TPI, class F>
HEA_FN void for_each_chunk(unsigned long long count, unsigned long long chunk, F&& f) {
  const unsigned long long groups = (count + chunk - 1) / chunk;
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long t = blockIdx.x * per_block + threadIdx.x / TPI; t < groups; t += gridDim.x * per_block) {
    const unsigned long long start = t * chunk, stop = start + chunk < count ? start + chunk : count;
    f(t, start, stop);
  }
}

// acc = the Montgomery product of elements start .. stop - 1 (the first as it is, no R^-1), each
// put in x by load(i, x); false, with acc undefined, as soon as a load returns false (refused).
template <int L, int TPI, class Load>
HEA_FN bool chunk_product(const group<L, TPI>& g, limb_t* acc, limb_t* x, unsigned long long start,
                          unsigned long long stop, const modulus<L, TPI>& M, Load&& load) {
  constexpr int LPT = L / TPI;
  for (unsigned long long i = start; i < stop; i++) {
    if (!load(i, x)) return false;
    if (i == start) {
      HEA_UNROLL_ALL
      for (int k = 0; k < LPT; k++) acc[k] = x[k];
    } else {
      mont_mul<L, TPI>(g, acc, acc, x, M);
    }
  }
  return true;
}

// This lane's slices of a modulus record: m and m', R^2 mod m, the plain 1 and R mod m (the
// Montgomery form of 1). requires: m odd.
template <int L, int TPI>
HEA_FN void load_modulus(const group<L, TPI>& g, modulus<L, TPI>& M, limb_t* r2, limb_t* one, limb_t* rmod,
                         const mod_rec<L>& rec) {
  constexpr int LPT = L / TPI;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    M.m[k] = rec.m[g.lane * LPT + k];
    r2[k] = rec.r2[g.lane * LPT + k];
    one[k] = (g.lane == 0 && k == 0) ? 1u : 0u;
  }
  M.minv = rec.minv;
  mont_mul<L, TPI>(g, rmod, r2, one, M);
}

// r = a * b * R^-1 mod m, R = 2^(32L). requires: m odd, a < R, b < m (so the CIOS result is
// below 2m); r < m. r may alias a or b. Constant time: no branch or address depends on values.
//
// Why hi stays small: after a row, hi = carry of next + hi + c1 + c2 where each term is below
// 2^32 and the old hi is at most 3, so the sum is below 4 * 2^32 and the new hi is at most 3.
template <int L, int TPI>
HEA_FN void mont_mul(const group<L, TPI>& g, limb_t* r, const limb_t* a, const limb_t* b, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  limb_t t[LPT], hi = 0u;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) t[k] = 0u;
  HEA_UNROLL(1)
  for (int j = 0; j < TPI; j++) {
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) mont_row<L, TPI>(g, t, hi, a, __shfl_sync(g.mask, b[k], j, TPI), M);
  }
  limb_t top = normalise<L, TPI>(g, t, hi);
  limb_t d[LPT];
  limb_t borrow = sub<L, TPI>(g, d, t, M.m);
  select<LPT>(r, top | (borrow ^ 1u), d, t);
}

// The dedicated squaring (HEA_COOP_SQR=1, the default; 0 runs mont_mul(a, a)). a^2 = 2 S + Q,
// S the products of distinct limbs (each unordered pair once), Q the limbs' squares; S is
// computed in blocks of LPT x LPT limbs balanced over the lanes, and the reduction follows:
//
// * lane l owns block positions l and l + TPI of the 2L-limb square (the pairs of slices {i, j}
//   with i + j = l or l + TPI: TPI/2 + 1 pairs for even l, TPI/2 for odd l). At step s it
//   multiplies slices d = ceil(l/2) + s and j = floor(l/2) - s (mod TPI), read from a copy of
//   the number in shared memory, into one accumulator; a diagonal block (d = j: even lanes at
//   steps 0 and TPI/2) counts its upper triangle only, and an odd lane's step TPI/2 would repeat
//   a pair, so it adds nothing. The pairs with i + j = l come first (s <= floor(l/2)); a copy of
//   the accumulator taken at that step separates them from the rest. Both copies live in shared
//   memory, a column per thread like the tables: registers are what bound occupancy.
//   TPI/2 + 1 block steps where a multiplication's product half takes TPI.
// * both sums doubled and the squares added (even lanes), the blocks' overlapping halves moved
//   one position up (shuffles; position TPI - 1's high half crosses into position TPI), and one
//   carry-lookahead over the 2 TPI positions resolves P = a^2 as P_lo (lane l: block l) and P_hi
//   (block l + TPI);
// * Montgomery reduction of P_lo alone (rows t <- (t + m u) / 2^32: a multiplication's row
//   without a*b_i), then (P + U m) / R = (P_lo + U m) / R + P_hi, below 2m for a < m: one masked
//   subtraction.
// One reduction row: t <- (t + m*u) / 2^32 with u = t_0 * m' from lane 0; carries into `hi` as
// in mont_row (top = next + c2 + hi stays below 3 * 2^32).
template <int L, int TPI>
HEA_FN void reduce_row(const group<L, TPI>& g, limb_t* t, limb_t& hi, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  carry c;
  limb_t u = __shfl_sync(g.mask, t[0] * M.minv, 0, TPI);
  t[0] = c.mad_lo_cc(M.m[0], u, t[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < LPT; k++) t[k] = c.madc_lo_cc(M.m[k], u, t[k]);
  limb_t c2 = c.addc(0u, 0u);
  t[1] = c.mad_hi_cc(M.m[0], u, t[1]);
  HEA_UNROLL_ALL
  for (int k = 2; k < LPT; k++) t[k] = c.madc_hi_cc(M.m[k - 1], u, t[k]);
  c2 = c.madc_hi(M.m[LPT - 1], u, c2);
  limb_t next = __shfl_down_sync(g.mask, t[0], 1, TPI);
  next = g.lane == TPI - 1 ? 0u : next;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT - 1; k++) t[k] = t[k + 1];
  uint64_t top = (uint64_t)next + c2 + hi;
  t[LPT - 1] = (limb_t)top;
  hi = (limb_t)(top >> 32);
}

// x_k, or 0 where the upper-triangle mask `tri` drops the product x_k y_q (k <= q).
HEA_FN limb_t k_masked(const limb_t* x, int k, int q, limb_t tri) { return k <= q ? x[k] & ~tri : x[k]; }

// acc (2 LPT + 1 limbs) += x * y, y being slice j of the group's shared-memory copy `a` (each
// limb kept by `keep`, read as its row needs it). The product forms in a fresh buffer (each row's carries
// land in limbs no row has reached yet) whose limbs join acc as they become final, so few
// registers stay live. Where `tri` is all ones only the products x_k y_q with k > q count (the
// upper triangle of a diagonal block, x = y). The sum must fit.
template <int L, int TPI>
HEA_FN void block_mac(const group<L, TPI>& g, limb_t* acc, const limb_t* x, const limb_t* a, unsigned j,
                      limb_t keep, limb_t tri) {
  const unsigned base = threadIdx.x - g.lane + j;
  constexpr int LPT = L / TPI, W = 2 * LPT + 1;
  limb_t t[2 * LPT];
  HEA_UNROLL_ALL
  for (int k = 0; k < 2 * LPT; k++) t[k] = 0u;
  uint64_t sum = 0u;  // the carry into acc's next limb
  HEA_UNROLL_ALL
  for (int q = 0; q < LPT; q++) {
    const limb_t y = a[q * HEA_COOP_BLOCK + base] & keep;
    carry c;
    t[q] = c.mad_lo_cc(k_masked(x, 0, q, tri), y, t[q]);
    HEA_UNROLL_ALL
    for (int k = 1; k < LPT; k++) t[q + k] = c.madc_lo_cc(k_masked(x, k, q, tri), y, t[q + k]);
    t[q + LPT] = c.addc(t[q + LPT], 0u);
    carry c2;
    t[q + 1] = c2.mad_hi_cc(k_masked(x, 0, q, tri), y, t[q + 1]);
    HEA_UNROLL_ALL
    for (int k = 1; k < LPT; k++) t[q + 1 + k] = c2.madc_hi_cc(k_masked(x, k, q, tri), y, t[q + 1 + k]);
    if (q + LPT + 1 < 2 * LPT) t[q + LPT + 1] = c2.addc(0u, 0u);
    sum += (uint64_t)acc[q] + t[q];  // limb q of the product is final
    acc[q] = (limb_t)sum;
    sum >>= 32;
  }
  HEA_UNROLL_ALL
  for (int k = LPT; k < 2 * LPT; k++) {
    sum += (uint64_t)acc[k] + t[k];
    acc[k] = (limb_t)sum;
    sum >>= 32;
  }
  acc[W - 1] += (limb_t)sum;
}

// v (2 LPT + 1 limbs) = 2 v + (the squares of the limbs of slice j, limb k's at 2k) & keep, the
// slices read from the group's shared-memory copy `a` (lane 0's column at `base`). v must stay
// below 2^(32 W).
template <int LPT> HEA_FN void add_double_squares(limb_t* v, const limb_t* a, unsigned base, unsigned j, limb_t keep) {
  constexpr int W = 2 * LPT + 1;
  HEA_UNROLL_ALL
  for (int k = W - 1; k > 0; k--) v[k] = (v[k] << 1) | (v[k - 1] >> 31);
  v[0] <<= 1;
  limb_t sq[2 * LPT];
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    limb_t x = a[k * HEA_COOP_BLOCK + base + j] & keep;
    sq[2 * k] = x * x;
    sq[2 * k + 1] = (limb_t)(((uint64_t)x * x) >> 32);
  }
  carry c;
  v[0] = c.add_cc(v[0], sq[0]);
  HEA_UNROLL_ALL
  for (int k = 1; k < 2 * LPT; k++) v[k] = c.addc_cc(v[k], sq[k]);
  v[W - 1] = c.addc(v[W - 1], 0u);
}

// r = a^2 * R^-1 mod m. requires: m odd, a < m; r < m. r may alias a. No branch or address
// depends on the values (the steps and shuffles depend on lane numbers only).
template <int L, int TPI>
HEA_FN void mont_sqr_blocks(const group<L, TPI>& g, limb_t* r, const limb_t* a, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI, HALF = TPI / 2, W = 2 * LPT + 1;
  constexpr unsigned LAST = TPI - 1;
  const unsigned l = g.lane;
  limb_t acc[W];
  __shared__ limb_t saved[W * HEA_COOP_BLOCK];  // coop_sqr_smem: one column per thread
  __shared__ limb_t slices[LPT * HEA_COOP_BLOCK];
  HEA_UNROLL_ALL
  for (int k = 0; k < W; k++) acc[k] = 0u;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) slices[k * HEA_COOP_BLOCK + threadIdx.x] = a[k];
  __syncwarp(g.mask);
  const unsigned base = threadIdx.x - l;
  // step s: slices d = ceil(l/2) + s and j = floor(l/2) - s (mod TPI); sum l while s <= l/2
  auto step = [&](int s, limb_t tri, limb_t keep) {
    const unsigned di = ((l + 1u) / 2u + (unsigned)s) & LAST;
    const unsigned ji = (l / 2u + TPI - (unsigned)s) & LAST;
    limb_t x[LPT];
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) x[k] = slices[k * HEA_COOP_BLOCK + base + di];
    block_mac<L, TPI>(g, acc, x, slices, ji, keep, tri);
    if ((unsigned)s == l / 2u) {  // the last pair of sum l: keep position l's sum
      HEA_UNROLL_ALL
      for (int k = 0; k < W; k++) saved[k * HEA_COOP_BLOCK + threadIdx.x] = acc[k];
    }
  };
  const limb_t even = (l & 1u) ? 0u : 0xffffffffu;
  step(0, even, 0xffffffffu);  // even lanes: the diagonal block (l/2, l/2), upper triangle
  HEA_UNROLL(1)
  for (int s = 1; s < HALF; s++) step(s, 0u, 0xffffffffu);  // off the diagonal, every lane
  step(HALF, even, even);  // even lanes: (l/2 + TPI/2, same); odd lanes would repeat a pair
  // position l: save; position l + TPI: acc - save (in acc); then both doubled and the squares
  // of the limbs added (even lanes: those of slices l/2 and l/2 + TPI/2, which land exactly on
  // positions l, l + 1 and l + TPI, l + TPI + 1)
  limb_t save[W];
  HEA_UNROLL_ALL
  for (int k = 0; k < W; k++) save[k] = saved[k * HEA_COOP_BLOCK + threadIdx.x];
  {
    carry c;
    acc[0] = c.sub_cc(acc[0], save[0]);
    HEA_UNROLL_ALL
    for (int k = 1; k < W - 1; k++) acc[k] = c.subc_cc(acc[k], save[k]);
    acc[W - 1] = c.subc(acc[W - 1], save[W - 1]);
  }
  add_double_squares<LPT>(save, slices, base, l / 2u, even);
  add_double_squares<LPT>(acc, slices, base, l / 2u + HALF, even);
  __syncwarp(g.mask);  // every lane has read the slices before the next squaring writes them
  // each position's upper LPT + 1 limbs go one position up (lane l - 1 -> l; position TPI - 1,
  // lane TPI - 1's low one, -> position TPI, lane 0's high one); 64-bit sums, limb by limb, so
  // the two numbers' carries need no flag and few registers stay live
  const unsigned from = (l + LAST) & LAST;
  limb_t lo[LPT], hi[LPT], cin_lo = 0u, cin_hi = 0u;
  HEA_UNROLL_ALL
  for (int k = 0; k <= LPT; k++) {
    limb_t up_lo = __shfl_sync(g.mask, save[LPT + k], from, TPI);
    limb_t up_hi = __shfl_sync(g.mask, acc[LPT + k], from, TPI);
    limb_t in_lo = l == 0u ? 0u : up_lo;
    limb_t in_hi = l == 0u ? up_lo : up_hi;
    if (k < LPT) {
      uint64_t sl = (uint64_t)save[k] + in_lo + cin_lo, sh = (uint64_t)acc[k] + in_hi + cin_hi;
      lo[k] = (limb_t)sl;
      hi[k] = (limb_t)sh;
      cin_lo = (limb_t)(sl >> 32);
      cin_hi = (limb_t)(sh >> 32);
    } else {
      cin_lo += in_lo;  // limb 0 of the next position up (small: no wrap)
      cin_hi += in_hi;
    }
  }
  {
    limb_t up_lo = __shfl_sync(g.mask, cin_lo, from, TPI);
    limb_t up_hi = __shfl_sync(g.mask, cin_hi, from, TPI);
    cin_lo = l == 0u ? 0u : up_lo;
    cin_hi = l == 0u ? up_lo : up_hi;
  }
  limb_t gen_lo = 0u, gen_hi = 0u, ones_lo = 0xffffffffu, ones_hi = 0xffffffffu;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) {
    uint64_t sl = (uint64_t)lo[k] + (k == 0 ? cin_lo : gen_lo), sh = (uint64_t)hi[k] + (k == 0 ? cin_hi : gen_hi);
    lo[k] = (limb_t)sl;
    hi[k] = (limb_t)sh;
    gen_lo = (limb_t)(sl >> 32);
    gen_hi = (limb_t)(sh >> 32);
    ones_lo &= lo[k];
    ones_hi &= hi[k];
  }
  // carry-lookahead over the 2 TPI positions (bits 0..TPI-1: P_lo's lanes, TPI..2TPI-1: P_hi's)
  const uint64_t lanes = TPI == 32 ? 0xffffffffull : (1ull << TPI) - 1ull;
  uint64_t gm = ((uint64_t)__ballot_sync(g.mask, gen_lo != 0u) >> g.first) & lanes;
  uint64_t pm = ((uint64_t)__ballot_sync(g.mask, ones_lo == 0xffffffffu && gen_lo == 0u) >> g.first) & lanes;
  gm |= (((uint64_t)__ballot_sync(g.mask, gen_hi != 0u) >> g.first) & lanes) << TPI;
  pm |= (((uint64_t)__ballot_sync(g.mask, ones_hi == 0xffffffffu && gen_hi == 0u) >> g.first) & lanes) << TPI;
  const uint64_t carries = ((gm | pm) + gm) ^ pm;
  {
    carry c;
    lo[0] = c.add_cc(lo[0], (limb_t)(carries >> l) & 1u);
    HEA_UNROLL_ALL
    for (int k = 1; k < LPT; k++) lo[k] = c.addc_cc(lo[k], 0u);
  }
  {
    carry c;
    hi[0] = c.add_cc(hi[0], (limb_t)(carries >> (l + TPI)) & 1u);
    HEA_UNROLL_ALL
    for (int k = 1; k < LPT; k++) hi[k] = c.addc_cc(hi[k], 0u);
  }
  // reduce P_lo, add P_hi
  limb_t pend = 0u;
  HEA_UNROLL(1)
  for (int j = 0; j < TPI; j++) {
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) reduce_row<L, TPI>(g, lo, pend, M);
  }
  limb_t top = normalise<L, TPI>(g, lo, pend);
  top += add<L, TPI>(g, lo, lo, hi);
  limb_t d[LPT];
  limb_t borrow = sub<L, TPI>(g, d, lo, M.m);
  select<LPT>(r, top | (borrow ^ 1u), d, lo);
}

// r = a^2 * R^-1 mod m. requires: m odd, a < m; r < m. r may alias a.
template <int L, int TPI>
HEA_FN void mont_sqr(const group<L, TPI>& g, limb_t* r, const limb_t* a, const modulus<L, TPI>& M) {
  if constexpr (coop_sqr_blocks(L)) mont_sqr_blocks<L, TPI>(g, r, a, M);
  else mont_mul<L, TPI>(g, r, a, a, M);
}

// r = (a + b) mod m, r = (a - b) mod m. requires a, b < m; r may alias a or b. No branch.
template <int L, int TPI>
HEA_FN void mod_add(const group<L, TPI>& g, limb_t* r, const limb_t* a, const limb_t* b, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  limb_t s[LPT], d[LPT];
  limb_t over = add<L, TPI>(g, s, a, b);
  limb_t borrow = sub<L, TPI>(g, d, s, M.m);
  select<LPT>(r, over | (borrow ^ 1u), d, s);
}
template <int L, int TPI>
HEA_FN void mod_sub(const group<L, TPI>& g, limb_t* r, const limb_t* a, const limb_t* b, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  limb_t d[LPT], s[LPT];
  limb_t borrow = sub<L, TPI>(g, d, a, b);
  add<L, TPI>(g, s, d, M.m);
  select<LPT>(r, borrow, s, d);
}

// r = a * b mod R (the low L limbs of the product), R = 2^(32L): the rows of mont_mul without
// the reduction. Row i adds a*b_i; lane 0's lowest limb is then digit i of the product (every
// carry still waiting in a lane's `hi` has a higher weight), and the group shifts down one limb.
// r may alias a or b. No branch or address depends on the values.
template <int L, int TPI> HEA_FN void mul_low(const group<L, TPI>& g, limb_t* r, const limb_t* a, const limb_t* b) {
  constexpr int LPT = L / TPI;
  limb_t t[LPT], low[LPT], hi = 0u;
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) t[k] = low[k] = 0u;
  HEA_UNROLL(1)
  for (int j = 0; j < TPI; j++) {
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) {
      limb_t bi = __shfl_sync(g.mask, b[k], j, TPI);
      carry c;
      t[0] = c.mad_lo_cc(a[0], bi, t[0]);
      HEA_UNROLL_ALL
      for (int q = 1; q < LPT; q++) t[q] = c.madc_lo_cc(a[q], bi, t[q]);
      limb_t c1 = c.addc(0u, 0u);
      t[1] = c.mad_hi_cc(a[0], bi, t[1]);
      HEA_UNROLL_ALL
      for (int q = 2; q < LPT; q++) t[q] = c.madc_hi_cc(a[q - 1], bi, t[q]);
      c1 = c.madc_hi(a[LPT - 1], bi, c1);
      limb_t digit = __shfl_sync(g.mask, t[0], 0, TPI);  // digit j LPT + k, owned by lane j
      low[k] = g.lane == (unsigned)j ? digit : low[k];
      limb_t next = __shfl_down_sync(g.mask, t[0], 1, TPI);
      next = g.lane == TPI - 1 ? 0u : next;
      HEA_UNROLL_ALL
      for (int q = 0; q < LPT - 1; q++) t[q] = t[q + 1];
      uint64_t top = (uint64_t)next + c1 + hi;
      t[LPT - 1] = (limb_t)top;
      hi = (limb_t)(top >> 32);
    }
  }
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) r[k] = low[k];
}

// Shared-memory exponent table: `entries` numbers per thread, one column per thread, entry e
// limb k of thread t at [(e*LPT + k) * HEA_COOP_BLOCK + t]. requires blockDim.x <= HEA_COOP_BLOCK.
template <int LPT> HEA_FN void table_put(limb_t* tab, int e, const limb_t* x) {
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) tab[(e * LPT + k) * HEA_COOP_BLOCK + threadIdx.x] = x[k];
}
template <int LPT> HEA_FN void table_get(limb_t* x, const limb_t* tab, int e) {
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) x[k] = tab[(e * LPT + k) * HEA_COOP_BLOCK + threadIdx.x];
}
// x = entry d for a SECRET d: every entry is read, one kept by mask.
template <int LPT, int ENTRIES> HEA_FN void table_get_secret(limb_t* x, const limb_t* tab, limb_t d) {
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) x[k] = 0u;
  HEA_UNROLL(1)
  for (int e = 0; e < ENTRIES; e++) {
    limb_t mask = 0u - (limb_t)((limb_t)e == d);
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) x[k] |= tab[(e * LPT + k) * HEA_COOP_BLOCK + threadIdx.x] & mask;
  }
}

HEA_FN limb_t exp_bit(const limb_t* e, int i) { return (e[i >> 5] >> (i & 31)) & 1u; }

// r = base^e (Montgomery form in and out) for a PUBLIC exponent of `ebits` significant bits:
// left-to-right fractional sliding windows over the odd powers base, base^3, ..., base^(2E-1) in
// `tab`, E = pub_entries_for(ebits, ENTRIES): each window ends on a set bit and is the longest
// (at most 5 bits) whose digit is at most 2E-1. `one` is R mod m.
template <int L, int TPI, int ENTRIES>
HEA_FN void pow_public(const group<L, TPI>& g, limb_t* r, const limb_t* base, const limb_t* one, const limb_t* e,
                       int ebits, limb_t* tab, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  static_assert(ENTRIES >= 2 && ENTRIES <= 16, "digits of at most 5 bits");
  constexpr int W = 5;
  const int entries = pub_entries_for(ebits, ENTRIES);
  const limb_t max_digit = 2u * (limb_t)entries - 1u;
  limb_t acc[LPT], x[LPT];
  table_put<LPT>(tab, 0, base);
  mont_sqr<L, TPI>(g, x, base, M);  // base^2
  for (int d = 1; d < entries; d++) {
    table_get<LPT>(acc, tab, d - 1);
    mont_mul<L, TPI>(g, acc, acc, x, M);
    table_put<LPT>(tab, d, acc);
  }
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) acc[k] = one[k];
  bool started = false;
  int i = ebits - 1;
  while (i >= 0) {
    if (!exp_bit(e, i)) {
      if (started) mont_sqr<L, TPI>(g, acc, acc, M);
      i--;
      continue;
    }
    int lo = i - W + 1 < 0 ? 0 : i - W + 1;
    while (!exp_bit(e, lo)) lo++;  // windows end on a set bit: odd digits only
    limb_t d = 0;
    for (int b = i; b >= lo; b--) d = (d << 1) | exp_bit(e, b);
    while (d > max_digit) {  // too large for the table: drop low bits up to the next set one
      do {
        d >>= 1;
        lo++;
      } while (!(d & 1u));
    }
    table_get<LPT>(x, tab, (int)(d >> 1));
    if (started) {
      for (int s = lo; s <= i; s++) mont_sqr<L, TPI>(g, acc, acc, M);
      mont_mul<L, TPI>(g, acc, acc, x, M);
    } else {
      HEA_UNROLL_ALL
      for (int k = 0; k < LPT; k++) acc[k] = x[k];
      started = true;
    }
    i = lo - 1;
  }
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) r[k] = acc[k];
}

// Same result for a SECRET exponent: fixed windows of log2(ENTRIES) bits over all `ebits`
// (a public bound), a masked table read for the top window, then a squaring run and a multiplication
// in every other window, masked table reads.
// No branch or address depends on e. tab holds base^0 .. base^(ENTRIES-1).
template <int L, int TPI, int ENTRIES>
HEA_FN void pow_secret(const group<L, TPI>& g, limb_t* r, const limb_t* base, const limb_t* one, const limb_t* e,
                       int el, int ebits, limb_t* tab, const modulus<L, TPI>& M) {
  constexpr int LPT = L / TPI;
  constexpr int W = ENTRIES == 16 ? 4 : ENTRIES == 8 ? 3 : ENTRIES == 4 ? 2 : 1;
  limb_t acc[LPT], x[LPT];
  table_put<LPT>(tab, 0, one);
  table_put<LPT>(tab, 1, base);
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) acc[k] = base[k];
  for (int d = 2; d < ENTRIES; d++) {
    mont_mul<L, TPI>(g, acc, acc, base, M);
    table_put<LPT>(tab, d, acc);
  }
  // the top window starts the accumulator (its squarings of 1 would change nothing); which
  // window is on top depends only on the public bound ebits
  int top = (ebits + W - 1) / W - 1;
  if (top >= 0) {
    table_get_secret<LPT, ENTRIES>(acc, tab, mp_window(e, el, top * W, W));
  } else {
    HEA_UNROLL_ALL
    for (int k = 0; k < LPT; k++) acc[k] = one[k];
  }
  for (int w = top - 1; w >= 0; w--) {
    for (int s = 0; s < W; s++) mont_sqr<L, TPI>(g, acc, acc, M);
    table_get_secret<LPT, ENTRIES>(x, tab, mp_window(e, el, w * W, W));
    mont_mul<L, TPI>(g, acc, acc, x, M);
  }
  HEA_UNROLL_ALL
  for (int k = 0; k < LPT; k++) r[k] = acc[k];
}

}  // namespace coop
}  // namespace hea
