// The kernels compiled with g++ as a shared library, for testing their arithmetic on the CPU
// (CI has nvcc but no GPU). Exports, for every __global__ kernel K, a launcher
//     extern "C" int emu_K(unsigned grid, unsigned block, void** args)
// that takes its arguments the way cuLaunchKernel does and runs every (block, thread) pair,
// blocks spread over host threads; it returns 0, or 1 with the reason in emu_last_error().
// One-thread-per-number kernels run thread after thread; warp-collective kernels (EMU_LOCKSTEP)
// run every block's threads as fibers in lockstep (lockstep.hpp). Also exports the Montgomery
// primitives for direct tests. Built and loaded by accel/gpu/emulator.py.
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "../paillier_encrypt.cu"
#include "../paillier_decrypt.cu"
#include "../homomorphic.cu"
#include "../reduce.cu"
#include "../matvec.cu"
#include "../modexp.cu"
#include "../djn.cu"
#include "../modexp_coop.cu"
#include "../paillier_coop.cu"
#include "../djn_coop.cu"
#include "../decrypt_coop.cu"
#include "../homomorphic_coop.cu"
#include "../inverse_coop.cu"
#include "../resident_coop.cu"
#include "warp_probe.hpp"

namespace {

template <typename... A, std::size_t... I>
void call_with(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

std::mutex g_error_lock;
std::string g_last_error;

template <typename... A>
int launch(void (*kernel)(A...), unsigned grid, unsigned block, void** args) {
  unsigned workers = std::thread::hardware_concurrency();
  if (workers == 0) workers = 1;
  if (workers > grid) workers = grid;
  auto run = [=](unsigned first) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = first; b < grid; b += workers) {
      blockIdx.x = b;
      for (unsigned t = 0; t < block; t++) {
        threadIdx.x = t;
        call_with(kernel, args, std::index_sequence_for<A...>{});
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < workers; w++) pool.emplace_back(run, w);
  if (workers) run(0);
  for (auto& th : pool) th.join();
  return 0;
}

// Warp-collective kernels: each block's threads as fibers in lockstep; blocks over host threads.
template <typename... A>
int launch_lockstep(void (*kernel)(A...), unsigned grid, unsigned block, void** args) {
  unsigned workers = std::thread::hardware_concurrency();
  if (workers == 0) workers = 1;
  if (workers > grid) workers = grid;
  std::string first_error;
  std::mutex lock;
  auto run = [&](unsigned first) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = first; b < grid; b += workers) {
      blockIdx.x = b;
      std::string err = hea_emu::run_block(block, [&] { call_with(kernel, args, std::index_sequence_for<A...>{}); });
      if (!err.empty()) {
        std::lock_guard<std::mutex> g(lock);
        if (first_error.empty()) first_error = err;
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned w = 1; w < workers; w++) pool.emplace_back(run, w);
  if (workers) run(0);
  for (auto& th : pool) th.join();
  if (first_error.empty()) return 0;
  std::lock_guard<std::mutex> g(g_error_lock);
  g_last_error = first_error;
  return 1;
}

}  // namespace

extern "C" const char* emu_last_error() { return g_last_error.c_str(); }

#define EMU_LOCKSTEP(name) \
  extern "C" int emu_##name(unsigned g, unsigned b, void** a) { return launch_lockstep(name, g, b, a); }

#define EMU_EXPORT(name) \
  extern "C" int emu_##name(unsigned g, unsigned b, void** a) { return launch(name, g, b, a); }

#define EMU_PAILLIER(LP)                                                                    \
  EMU_EXPORT(paillier_encrypt_##LP) EMU_EXPORT(paillier_obfuscate_##LP)                     \
  EMU_EXPORT(paillier_rerandomize_##LP) EMU_EXPORT(paillier_encrypt_with_##LP)              \
  EMU_EXPORT(paillier_crt_obfuscate_##LP) EMU_EXPORT(paillier_crt_encrypt_##LP)             \
  EMU_EXPORT(paillier_decrypt_##LP) EMU_EXPORT(he_add_##LP) EMU_EXPORT(he_add_plain_##LP)   \
  EMU_EXPORT(he_mul_scalar_##LP) EMU_EXPORT(he_product_##LP) EMU_EXPORT(matvec_tables_##LP) \
  EMU_EXPORT(matvec_partial_##LP) EMU_EXPORT(matvec_finish_##LP) EMU_EXPORT(djn_table_##LP) \
  EMU_EXPORT(djn_encrypt_##LP)                                                              \
  extern "C" unsigned emu_sizeof_pub_rec_##LP() { return sizeof(hea::pub_rec<LP>) / 4; }    \
  extern "C" unsigned emu_sizeof_crt_rec_##LP() { return sizeof(hea::crt_rec<LP>) / 4; }

HEA_FOR_EACH_KEY_CLASS(EMU_PAILLIER)

// Primitives, one call per element, for direct differential tests against gmpy2.
#define EMU_PRIMITIVES(L)                                                                           \
  EMU_EXPORT(powmod_##L)                                                                            \
  extern "C" void emu_mont_mul_##L(limb_t* r, const limb_t* a, const limb_t* b, const limb_t* mod) { \
    hea::mont_mul<L>(r, a, b, *reinterpret_cast<const hea::mod_rec<L>*>(mod));                     \
  }                                                                                                 \
  extern "C" void emu_reduce_to_mont_##L(limb_t* r, const limb_t* x, int xl, const limb_t* mod) {   \
    hea::reduce_to_mont<L>(r, x, xl, *reinterpret_cast<const hea::mod_rec<L>*>(mod));              \
  }                                                                                                 \
  extern "C" int emu_mod_inverse_##L(limb_t* r, const limb_t* a, const limb_t* mod) {              \
    return hea::mod_inverse<L>(r, a, *reinterpret_cast<const hea::mod_rec<L>*>(mod));              \
  }                                                                                                 \
  extern "C" void emu_mod_add_##L(limb_t* r, const limb_t* a, const limb_t* b, const limb_t* mod) { \
    hea::mod_add<L>(r, a, b, *reinterpret_cast<const hea::mod_rec<L>*>(mod));                      \
  }                                                                                                 \
  extern "C" void emu_mod_sub_##L(limb_t* r, const limb_t* a, const limb_t* b, const limb_t* mod) { \
    hea::mod_sub<L>(r, a, b, *reinterpret_cast<const hea::mod_rec<L>*>(mod));                      \
  }                                                                                                 \
  extern "C" void emu_mul_low_##L(limb_t* r, const limb_t* a, const limb_t* b) {                   \
    hea::mp_mul_low<L>(r, a, b);                                                                    \
  }

EMU_PRIMITIVES(32)
EMU_PRIMITIVES(64)
EMU_PRIMITIVES(96)
EMU_PRIMITIVES(128)
EMU_PRIMITIVES(192)
EMU_PRIMITIVES(256)

// Cooperative kernels run in lockstep; the threads-per-number table, the public-exponent table
// entries and whether the dedicated squaring runs are exported for the host's checks.
#define EMU_COOP(L)                                                                \
  EMU_LOCKSTEP(powmod_coop_##L)                                                    \
  extern "C" int emu_coop_tpi_##L() { return hea::coop::coop_tpi(L); }             \
  extern "C" int emu_coop_pub_entries_##L() { return hea::coop::coop_pub_entries(L); } \
  extern "C" int emu_coop_sqr_blocks_##L() { return hea::coop::coop_sqr_blocks(L); }

#define EMU_PAILLIER_COOP(LP)                                                                  \
  EMU_LOCKSTEP(paillier_encrypt_coop_##LP) EMU_LOCKSTEP(paillier_obfuscate_coop_##LP)          \
  EMU_LOCKSTEP(djn_table_coop_##LP) EMU_LOCKSTEP(djn_encrypt_coop_##LP) EMU_LOCKSTEP(paillier_decrypt_coop_##LP) \
  EMU_LOCKSTEP(he_add_coop_##LP) EMU_LOCKSTEP(he_product_coop_##LP) \
  EMU_LOCKSTEP(he_mul_scalar_coop_##LP) EMU_LOCKSTEP(he_inverse_prefix_coop_##LP) EMU_LOCKSTEP(he_inverse_back_coop_##LP)
HEA_FOR_EACH_KEY_CLASS(EMU_PAILLIER_COOP)

// Device-resident Montgomery form (resident_coop.cu)
#define EMU_RESIDENT_COOP(LP)                                                                  \
  EMU_LOCKSTEP(he_to_mont_coop_##LP) EMU_LOCKSTEP(he_from_mont_coop_##LP)                      \
  EMU_LOCKSTEP(he_add_mont_coop_##LP) EMU_LOCKSTEP(he_product_mont_coop_##LP)                  \
  EMU_LOCKSTEP(he_mul_scalar_mont_coop_##LP) EMU_LOCKSTEP(he_add_plain_mont_coop_##LP)         \
  EMU_LOCKSTEP(he_rerandomize_mont_coop_##LP)
HEA_FOR_EACH_KEY_CLASS(EMU_RESIDENT_COOP)

EMU_COOP(32)
EMU_COOP(64)
EMU_COOP(96)
EMU_COOP(128)
EMU_COOP(192)
EMU_COOP(256)

EMU_LOCKSTEP(probe_rotate)
EMU_LOCKSTEP(probe_shuffles)
EMU_LOCKSTEP(probe_smem_exchange)
EMU_LOCKSTEP(probe_split_masks)
EMU_LOCKSTEP(probe_divergent)
EMU_LOCKSTEP(probe_exited_lane)
