// Ciphertext-vector x plaintext-matrix products (kernel family: matvec).
//
//   out_j = prod_i c_i^X[i][j] mod n^2  =  E(sum_i a_i X[i][j])
//
// Straus multi-exponentiation in three launches:
//   matvec_tables_LP   per row i: c_i^d R mod n^2 for d < 2^W (checks c_i in [1, n^2))
//   matvec_partial_LP  per (row chunk g, column j): squarings shared by the chunk's rows; entries
//                      of X with the sign flag set go to a second accumulator
//   matvec_finish_LP   per column: product of the chunks' partials, times the inverse of the
//                      negative accumulator (one inversion per column), out of Montgomery form
// requires: |X[i][j]| < 2^(32 xl) given as magnitudes (xl limbs each) plus sign flags, ebits
// >= the bit length of every magnitude. X is the caller's own data: variable-time windows.
#include "paillier.cuh"

using namespace hea;

#define HEA_MATVEC_KERNELS(LP)                                                                    \
  extern "C" __global__ void matvec_tables_##LP(limb_t* tables, const limb_t* cts,                  \
      unsigned long long rows, const limb_t* key, int cs, unsigned long long* err) {                \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    const int T = 1 << HEA_WINDOW;                                                                  \
    HEA_FOR_EACH_ELEMENT(i, rows) {                                                                 \
      limb_t c[2 * LP];                                                                             \
      if (!load_ciphertext<LP>(c, cts + i * cs, cs, K, i, err)) continue;                           \
      to_mont<2 * LP>(c, c, K.n2);                                                                  \
      window_table<2 * LP>(tables + i * T * (2 * LP), c, K.n2);                                     \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void matvec_partial_##LP(limb_t* pos, limb_t* neg, const limb_t* tables,    \
      const limb_t* xs, const limb_t* xneg, unsigned long long rows, unsigned long long cols,       \
      unsigned long long chunk_rows, int xl, int ebits, int has_neg, const limb_t* key) {           \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    const int W = HEA_WINDOW, T = 1 << HEA_WINDOW;                                                  \
    unsigned long long chunks = (rows + chunk_rows - 1) / chunk_rows;                               \
    HEA_FOR_EACH_ELEMENT(t, chunks * cols) {                                                        \
      unsigned long long g = t / cols, j = t % cols;                                                \
      unsigned long long start = g * chunk_rows;                                                    \
      unsigned long long stop = start + chunk_rows < rows ? start + chunk_rows : rows;              \
      limb_t ap[2 * LP], an[2 * LP];                                                                \
      mont_one<2 * LP>(ap, K.n2);                                                                   \
      mp_copy<2 * LP>(an, ap);                                                                      \
      for (int k = (ebits + W - 1) / W - 1; k >= 0; k--) {                                          \
        for (int s = 0; s < W; s++) {                                                               \
          mont_mul<2 * LP>(ap, ap, ap, K.n2);                                                       \
          if (has_neg) mont_mul<2 * LP>(an, an, an, K.n2);                                          \
        }                                                                                           \
        for (unsigned long long i = start; i < stop; i++) {                                         \
          limb_t d = mp_window(xs + (i * cols + j) * xl, xl, k * W, W);                             \
          if (!d) continue;                                                                         \
          const limb_t* entry = tables + (i * T + d) * (2 * LP);                                    \
          if (xneg[i * cols + j]) mont_mul<2 * LP>(an, an, entry, K.n2);                            \
          else mont_mul<2 * LP>(ap, ap, entry, K.n2);                                               \
        }                                                                                           \
      }                                                                                             \
      mp_copy<2 * LP>(pos + t * (2 * LP), ap);                                                      \
      if (has_neg) mp_copy<2 * LP>(neg + t * (2 * LP), an);                                         \
    }                                                                                               \
  }                                                                                                 \
  extern "C" __global__ void matvec_finish_##LP(limb_t* out, const limb_t* pos, const limb_t* neg,  \
      unsigned long long chunks, unsigned long long cols, int has_neg, const limb_t* key, int cs,   \
      unsigned long long* err) {                                                                    \
    const pub_rec<LP>& K = *reinterpret_cast<const pub_rec<LP>*>(key);                              \
    HEA_FOR_EACH_ELEMENT(j, cols) {                                                                 \
      limb_t ap[2 * LP], an[2 * LP];                                                                \
      mp_copy<2 * LP>(ap, pos + j * (2 * LP));                                                      \
      for (unsigned long long g = 1; g < chunks; g++)                                               \
        mont_mul<2 * LP>(ap, ap, pos + (g * cols + j) * (2 * LP), K.n2);                            \
      if (has_neg) {                                                                                \
        mp_copy<2 * LP>(an, neg + j * (2 * LP));                                                    \
        for (unsigned long long g = 1; g < chunks; g++)                                             \
          mont_mul<2 * LP>(an, an, neg + (g * cols + j) * (2 * LP), K.n2);                          \
        from_mont<2 * LP>(an, an, K.n2);                                                            \
        if (!mod_inverse<2 * LP>(an, an, K.n2)) {                                                   \
          report_error(err, j, ERR_NOT_INVERTIBLE);                                                 \
          continue;                                                                                 \
        }                                                                                           \
        to_mont<2 * LP>(an, an, K.n2);                                                              \
        mont_mul<2 * LP>(ap, ap, an, K.n2);                                                         \
      }                                                                                             \
      from_mont<2 * LP>(ap, ap, K.n2);                                                              \
      mp_store<2 * LP>(out + j * cs, ap, cs);                                                       \
    }                                                                                               \
  }

HEA_FOR_EACH_KEY_CLASS(HEA_MATVEC_KERNELS)
