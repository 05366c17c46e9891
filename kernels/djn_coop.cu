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

// Entries of a table row staged in shared memory at a time: 16 KB per block of HEA_COOP_BLOCK
// threads (as the exponent tables of the other cooperative kernels, which keeps 50% occupancy at
// 2048-bit keys), a power of two.
__host__ __device__ constexpr int djn_chunk(int L) { return 4096 / L >= 64 ? 64 : 4096 / L >= 32 ? 32 : 16; }

// a * b + c mod 2^32 as one multiply-add (volatile: the compiler may not turn a product by a
// secret 0/1 into a select or a branch)
HEA_FN limb_t mad_lo(limb_t a, limb_t b, limb_t c) {
#if defined(__CUDA_ARCH__)
  limb_t r;
  asm volatile("mad.lo.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
#else
  return a * b + c;
#endif
}

struct alignas(16) limb4 {
  limb_t v[4];
};

// Stage entries [first, first + n) of a row (n * L limbs, a multiple of 4) into shared memory,
// every thread of the block copying 16-byte pieces. Every thread of the block must call it.
template <int L> HEA_FN void stage_chunk(limb_t* smem, const limb_t* row, int first, int n) {
  const limb4* src = reinterpret_cast<const limb4*>(row + (unsigned long long)first * L);
  limb4* dst = reinterpret_cast<limb4*>(smem);
  __syncthreads();  // everyone is done reading the previous chunk
  for (int w = threadIdx.x; w < n * L / 4; w += blockDim.x) dst[w] = src[w];
  __syncthreads();
}

// x += this lane's slice of staged entry e times [e == d] for e in [first, first + n) (d SECRET:
// every staged entry is read and multiplied by its 0/1 bit, so exactly one adds anything; the
// group's lanes read consecutive words of one entry, and the groups of a warp the same entry, so
// no bank conflict depends on d). The multiply-adds run on the FMA pipe, which the ALU-heavy
// carry handling of the multiplication leaves room in; x must start at zero.
template <int L, int TPI> HEA_FN void pick_entry(limb_t* x, const limb_t* entry, limb_t bit) {
  constexpr int LPT = L / TPI;
  if constexpr (LPT % 4 == 0) {
    HEA_UNROLL_ALL
    for (int j = 0; j < LPT; j += 4) {
      limb4 v = *reinterpret_cast<const limb4*>(entry + j);
      HEA_UNROLL_ALL
      for (int q = 0; q < 4; q++) x[j + q] = mad_lo(v.v[q], bit, x[j + q]);
    }
  } else {
    HEA_UNROLL_ALL
    for (int j = 0; j < LPT; j++) x[j] = mad_lo(entry[j], bit, x[j]);
  }
}
// Bitwise select: b where m is all ones, a where it is zero (one LOP3; asm, so the compiler
// cannot turn a select on a secret mask into a branch).
HEA_FN limb_t mux(limb_t a, limb_t b, limb_t m) {
#if defined(__CUDA_ARCH__)
  limb_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xD8;" : "=r"(r) : "r"(a), "r"(b), "r"(m));
  return r;
#else
  return (a & ~m) | (b & m);
#endif
}

// Entries picked per tree, as log2: that many masks (one per level) and partial slices live at
// once. Chosen by `he-accel kernels report` to keep each class's occupancy: 8-entry trees keep
// djn_encrypt_coop_64 (2048-bit keys) at 64 registers, 50%; the other classes at their
// previous registers take 4 (1024 bits) or 2 (3072, 4096: six and eight limbs per lane).
__host__ __device__ constexpr int djn_tree_bits(int L, int LPT) { return LPT > 4 ? 1 : L == 128 ? 3 : 2; }

// y = this lane's slice of the entry among the N at `entry` (entry-major, L limbs apart) whose
// index is the low log2(N) bits of the SECRET digit, as a tree of bitwise selects: every entry
// is read, and level j keeps the lower or upper half by masks[j] (all ones or all zeros, from
// bit j of the digit). N - 1 selects per limb and no per-entry mask, where a masked sum needs a
// multiply-add per limb and a compare and a select per entry.
template <int L, int TPI, int N> struct tree_pick {
  static HEA_FN void run(limb_t* y, const limb_t* entry, const limb_t* masks) {
    constexpr int LPT = L / TPI;
    if constexpr (N == 1) {
      if constexpr (LPT % 4 == 0) {
        HEA_UNROLL_ALL
        for (int j = 0; j < LPT; j += 4) {
          limb4 v = *reinterpret_cast<const limb4*>(entry + j);
          HEA_UNROLL_ALL
          for (int q = 0; q < 4; q++) y[j + q] = v.v[q];
        }
      } else {
        HEA_UNROLL_ALL
        for (int j = 0; j < LPT; j++) y[j] = entry[j];
      }
    } else {
      constexpr int LEVEL = N == 2 ? 0 : N == 4 ? 1 : N == 8 ? 2 : N == 16 ? 3 : N == 32 ? 4 : 5;
      static_assert((1 << (LEVEL + 1)) == N, "a power of two up to 64 entries");
      limb_t upper[LPT];
      tree_pick<L, TPI, N / 2>::run(y, entry, masks);
      tree_pick<L, TPI, N / 2>::run(upper, entry + (N / 2) * L, masks);
      HEA_UNROLL_ALL
      for (int j = 0; j < LPT; j++) y[j] = mux(y[j], upper[j], masks[LEVEL]);
    }
  }
};

template <int L, int TPI> HEA_FN void pick_staged(const group<L, TPI>& g, limb_t* x, const limb_t* smem, int first,
                                                  int n, limb_t d) {
  constexpr int LPT = L / TPI;
  const limb_t* mine = smem + g.lane * LPT;
  limb_t rel = d - (limb_t)first;  // the wanted entry's index in what is left of the chunk
  constexpr int TREE_BITS = djn_tree_bits(L, LPT), TREE = 1 << TREE_BITS;
  int e = 0;
  if (n % TREE == 0) {
    // trees of TREE entries; the one holding entry rel (if any: rel is out of range when d is
    // in another chunk) is kept by its 0/1 bit. Chunks start at multiples of TREE, so the
    // low bits of rel are the digit's, the same for every tree.
    limb_t masks[TREE_BITS];
    HEA_UNROLL_ALL
    for (int j = 0; j < TREE_BITS; j++) masks[j] = 0u - ((rel >> j) & 1u);
    HEA_UNROLL(1)
    for (; e < n; e += TREE) {
      limb_t y[LPT];
      tree_pick<L, TPI, TREE>::run(y, mine + e * L, masks);
      // kept by a multiply-add by its 0/1 bit: the FMA pipe has room, the selects fill the ALU's
      limb_t keep = (limb_t)(rel / TREE == (limb_t)(e / TREE));
      HEA_UNROLL_ALL
      for (int j = 0; j < LPT; j++) x[j] = mad_lo(y[j], keep, x[j]);
    }
    return;
  }
  HEA_UNROLL(1)
  for (; e + 4 <= n; e += 4, rel -= 4u) {  // four entries against immediates: 2 instructions a bit
    pick_entry<L, TPI>(x, mine + (e + 0) * L, (limb_t)(rel == 0u));
    pick_entry<L, TPI>(x, mine + (e + 1) * L, (limb_t)(rel == 1u));
    pick_entry<L, TPI>(x, mine + (e + 2) * L, (limb_t)(rel == 2u));
    pick_entry<L, TPI>(x, mine + (e + 3) * L, (limb_t)(rel == 3u));
  }
  for (; e < n; e++, rel -= 1u) pick_entry<L, TPI>(x, mine + e * L, (limb_t)(rel == 0u));
}

// x = this lane's slice of entry d of a table row for a SECRET d, through shared memory in chunks.
template <int L, int TPI>
HEA_FN void row_get_secret(const group<L, TPI>& g, limb_t* x, limb_t* smem, const limb_t* row, int entries, limb_t d) {
  constexpr int LPT = L / TPI, CHUNK = djn_chunk(L);
  HEA_UNROLL_ALL
  for (int j = 0; j < LPT; j++) x[j] = 0u;
  for (int first = 0; first < entries; first += CHUNK) {
    int n = entries - first < CHUNK ? entries - first : CHUNK;
    stage_chunk<L>(smem, row, first, n);
    pick_staged<L, TPI>(g, x, smem, first, n, d);
  }
}

// Every thread of a block runs the same rows and chunks (the staging needs the whole block), so
// the loop is over block-sized batches; groups past the end or with a bad plaintext compute on
// zeros and store nothing.
template <int LP>
HEA_FN void djn_encrypt_coop(limb_t* out, const limb_t* ms, int has_m, const limb_t* rs, unsigned long long count,
                             const limb_t* table, int rows, int comb, const limb_t* key, int ps, int rstride, int cs,
                             unsigned long long* err, limb_t* smem) {
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
  for (unsigned long long first = blockIdx.x * per_block; first < count; first += gridDim.x * per_block) {
    const unsigned long long i = first + threadIdx.x / TPI;
    const bool active = i < count;  // the same on every lane of a group
    bool ok = active;
    if (has_m) {
      bool fits = load<L, TPI>(g, y, active ? ms + i * (unsigned long long)ps : ms, active ? ps : 0, LP);
      load<L, TPI>(g, x, K.n, LP);
      bool below = sub<L, TPI>(g, x, y, x) == 1u;  // borrow: m < n
      if (active && (!fits || !below)) {
        if (g.lane == 0) report_error(err, i, ERR_PLAINTEXT_RANGE);
        ok = false;
      }
    }
    const limb_t* r = rs + (active ? i : 0) * (unsigned long long)rstride;
    const int rl = active ? rstride : 0;  // an idle group reads no exponent: digits 0
    row_get_secret<L, TPI>(g, acc, smem, table, entries, mp_window(r, rl, 0, comb));
    for (int k = 1; k < rows; k++) {
      row_get_secret<L, TPI>(g, x, smem, table + (unsigned long long)k * entries * L, entries,
                             mp_window(r, rl, k * comb, comb));
      mont_mul<L, TPI>(g, acc, acc, x, M);  // hs^(r mod 2^(comb (k+1))) R
    }
    if (has_m) {
      mont_mul<L, TPI>(g, y, y, n_mont, M);  // m n (< n^2, exact)
      add_small<L, TPI>(g, y, 1u);           // g^m = 1 + m n, still < n^2
      mont_mul<L, TPI>(g, acc, y, acc, M);   // (1 + m n) hs^r
    } else {
      mont_mul<L, TPI>(g, acc, acc, one, M);  // out of Montgomery form
    }
    if (ok) store<L, TPI>(g, out + i * (unsigned long long)cs, acc, cs);
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
    __shared__ hea::coop::limb4 smem[hea::coop::djn_chunk(2 * LP) * 2 * LP / 4];                      \
    hea::coop::djn_encrypt_coop<LP>(out, ms, has_m, rs, count, table, rows, comb, key, ps, rstride,   \
                                    cs, err, smem[0].v);                                              \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_DJN_COOP_KERNELS)
