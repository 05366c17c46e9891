// DJN encryption on the cooperative core with a wide fixed-base comb (kernel family: djn_coop).
//
//   c = (1 + m n) * hs^r mod n^2,  hs = h^n mod n^2 public, r secret of `rows * comb` bits
//
// The comb table T[k][d] = hs^(d 2^(comb k)) mod n^2 (Montgomery form; d < 2^comb, comb <= 8
// bits) is built once per key on the device and stays there, so hs^r = prod_k T[k][r_k] is
// rows - 1 multiplications and no squaring (issue 15: a comb of 8 bits or more).
//   djn_table_coop_LP    one group per row k: comb k squarings of hs, then the 2^comb entries
//   djn_encrypt_coop_LP  one group per element; the digits r_k are secret, so every entry of
//                        every row is read (each lane its slice) and one kept by mask: no
//                        address or branch depends on r. has_m = 0 gives the obfuscator alone.
// Same arguments as djn_table_LP / djn_encrypt_LP (djn.cu) plus the comb width, and the table
// is rows x 2^comb entries of 2 LP limbs, entry-major. Launch: HEA_COOP_BLOCK (128) threads per
// block, at least (rows or count) * coop_tpi(2 LP) threads (grid-stride over groups).
// requires: hs_m = hs R mod n^2; r of rstride limbs from the host CSPRNG (bits past rows * comb
// must be zero: they are not read); 1 <= comb <= 8. Checks plaintexts (< n, ps limbs) and
// reports ERR_PLAINTEXT_RANGE through err.
#include "coop_mont.cuh"
#include "errors.cuh"
#include "paillier.cuh"

namespace hea {
namespace coop {

template <int LP>
HEA_FN void djn_table_coop(limb_t* table, const limb_t* hs_m, int rows, int comb, const limb_t* key) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], one[LPT], rmod[LPT], base[LPT], x[LPT];
  load_modulus<L, TPI>(g, M, r2, one, rmod, K.n2);
  const unsigned long long entries = 1ull << comb;
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long k = blockIdx.x * per_block + threadIdx.x / TPI; k < (unsigned long long)rows;
       k += gridDim.x * per_block) {
    load<L, TPI>(g, base, hs_m, L);
    for (unsigned long long s = 0; s < comb * k; s++) mont_sqr<L, TPI>(g, base, base, M);  // hs^(2^(comb k))
    limb_t* row = table + k * entries * L;
    store<L, TPI>(g, row, rmod, L);  // d = 0: 1 in Montgomery form
    HEA_UNROLL_ALL
    for (int j = 0; j < LPT; j++) x[j] = base[j];
    for (unsigned long long d = 1; d < entries; d++) {
      store<L, TPI>(g, row + d * L, x, L);
      mont_mul<L, TPI>(g, x, x, base, M);
    }
  }
}

// x = this lane's slice of entry d of a table row, for a SECRET d: every entry is read.
template <int L, int TPI>
HEA_FN void row_get_secret(const group<L, TPI>& g, limb_t* x, const limb_t* __restrict__ row, int entries, limb_t d) {
  constexpr int LPT = L / TPI;
  const limb_t* mine = row + g.lane * LPT;
  HEA_UNROLL_ALL
  for (int j = 0; j < LPT; j++) x[j] = 0u;
  HEA_UNROLL(1)
  for (int e = 0; e < entries; e++) {
    limb_t mask = 0u - (limb_t)((limb_t)e == d);
    HEA_UNROLL_ALL
    for (int j = 0; j < LPT; j++) x[j] |= mine[(unsigned long long)e * L + j] & mask;
  }
}

template <int LP>
HEA_FN void djn_encrypt_coop(limb_t* out, const limb_t* ms, int has_m, const limb_t* rs, unsigned long long count,
                             const limb_t* table, int rows, int comb, const limb_t* key, int ps, int rstride, int cs,
                             unsigned long long* err) {
  constexpr int L = 2 * LP, TPI = coop_tpi(L), LPT = L / TPI;
  const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);
  const group<L, TPI> g = group<L, TPI>::mine();
  modulus<L, TPI> M;
  limb_t r2[LPT], one[LPT], rmod[LPT], n_mont[LPT], acc[LPT], x[LPT], y[LPT];
  load_modulus<L, TPI>(g, M, r2, one, rmod, K.n2);
  if (has_m) {
    load<L, TPI>(g, y, K.n, LP);
    mont_mul<L, TPI>(g, n_mont, y, r2, M);  // n R mod n^2
  }
  const int entries = 1 << comb;
  const unsigned long long per_block = HEA_COOP_BLOCK / TPI;
  for (unsigned long long i = blockIdx.x * per_block + threadIdx.x / TPI; i < count; i += gridDim.x * per_block) {
    if (has_m) {
      bool fits = load<L, TPI>(g, y, ms + i * (unsigned long long)ps, ps, LP);
      load<L, TPI>(g, x, K.n, LP);
      bool below = sub<L, TPI>(g, x, y, x) == 1u;  // borrow: m < n
      if (!fits || !below) {
        if (g.lane == 0) report_error(err, i, ERR_PLAINTEXT_RANGE);
        continue;
      }
    }
    const limb_t* r = rs + i * (unsigned long long)rstride;
    row_get_secret<L, TPI>(g, acc, table, entries, mp_window(r, rstride, 0, comb));
    for (int k = 1; k < rows; k++) {
      row_get_secret<L, TPI>(g, x, table + (unsigned long long)k * entries * L, entries,
                             mp_window(r, rstride, k * comb, comb));
      mont_mul<L, TPI>(g, acc, acc, x, M);  // hs^(r mod 2^(comb (k+1))) R
    }
    if (has_m) {
      mont_mul<L, TPI>(g, y, y, n_mont, M);  // m n (< n^2, exact)
      add_small<L, TPI>(g, y, 1u);           // g^m = 1 + m n, still < n^2
      mont_mul<L, TPI>(g, acc, y, acc, M);   // (1 + m n) hs^r
    } else {
      mont_mul<L, TPI>(g, acc, acc, one, M);  // out of Montgomery form
    }
    store<L, TPI>(g, out + i * (unsigned long long)cs, acc, cs);
  }
}

}  // namespace coop
}  // namespace hea

#define HEA_DJN_COOP_KERNELS(LP)                                                                      \
  extern "C" __global__ void djn_table_coop_##LP(limb_t* table, const limb_t* hs_m, int rows, int comb, \
      const limb_t* key) {                                                                            \
    hea::coop::djn_table_coop<LP>(table, hs_m, rows, comb, key);                                      \
  }                                                                                                   \
  extern "C" __global__ void djn_encrypt_coop_##LP(limb_t* out, const limb_t* ms, int has_m,          \
      const limb_t* rs, unsigned long long count, const limb_t* table, int rows, int comb,            \
      const limb_t* key, int ps, int rstride, int cs, unsigned long long* err) {                      \
    hea::coop::djn_encrypt_coop<LP>(out, ms, has_m, rs, count, table, rows, comb, key, ps, rstride,   \
                                    cs, err);                                                         \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_DJN_COOP_KERNELS)
