// Lockstep execution of warp-collective kernels on the CPU (the emulator's warp scheduler).
//
// Each thread of a block is a fiber with its own stack, all on one host thread. The scheduler
// runs every ready fiber until it reaches a collective intrinsic (cuda_shim.hpp) or returns;
// then, for each set of lanes named by a mask, once all of them wait at the same intrinsic, it
// computes every lane's result from the values offered at that step and lets them continue.
// So a shuffle sees its source lane's value of the same step, never an earlier or later one,
// which a sequential thread-after-thread launcher cannot give. Anything CUDA leaves undefined
// (mismatched intrinsics or masks in one set, a named lane that exited, a shuffle source outside
// the mask, __syncthreads not reached by every live thread) fails the launch with a message.
#pragma once
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cuda_shim.hpp"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace hea_emu {

#if defined(__x86_64__)
// A minimal context switch: callee-saved registers on the old stack, swap stack pointers.
// (glibc's swapcontext also saves the signal mask with a system call, ~20x slower, and the
// scheduler switches three times per limb-step of a cooperative multiplication.)
extern "C" void hea_fiber_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl hea_fiber_switch
  .hidden hea_fiber_switch
  .type hea_fiber_switch,@function
hea_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size hea_fiber_switch, .-hea_fiber_switch
)");
#endif

enum lane_state : int { READY, WAITING, DONE };

struct fiber {
  char* stack = nullptr;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  lane_state state = READY;
  collective_op op = OP_SYNCWARP;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
};

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;

struct block_run {
  std::vector<fiber> lanes;
  std::function<void()> body;
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_ctx;
#endif
  unsigned current = 0;
  std::string error;
};

inline thread_local block_run* g_run = nullptr;

// Fiber stacks, kept per host thread and reused from block to block; unmapped when the host
// thread ends (the launcher's worker threads live for one launch).
struct stack_pool {
  std::vector<char*> stacks;
  ~stack_pool() {
    for (char* s : stacks) munmap(s - kGuardBytes, kStackBytes + kGuardBytes);
  }
  char* get(unsigned i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      mprotect(p, kGuardBytes, PROT_NONE);  // overflow faults instead of corrupting a neighbour
      stacks.push_back(static_cast<char*>(p) + kGuardBytes);
    }
    return stacks[i];
  }
};
inline thread_local stack_pool g_stacks;

inline char* stack_for(unsigned i) { return g_stacks.get(i); }

inline void to_scheduler(block_run* r) {
  fiber& me = r->lanes[r->current];
#if defined(__x86_64__)
  hea_fiber_switch(&me.sp, r->sched_sp);
#else
  swapcontext(&me.ctx, &r->sched_ctx);
#endif
}

inline void fiber_main() {
  block_run* r = g_run;
  r->body();
  r->lanes[r->current].state = DONE;
  to_scheduler(r);  // never resumed
  __builtin_trap();
}

inline void fail(block_run* r, const std::string& msg) {
  if (r->error.empty()) r->error = msg;
}

inline uint64_t collective(collective_op op, unsigned mask, uint64_t value, int arg, int width) {
  block_run* r = g_run;
  if (r == nullptr) {
    std::fprintf(stderr, "he-accel emulator: warp intrinsic outside the lockstep launcher\n");
    __builtin_trap();
  }
  fiber& me = r->lanes[r->current];
  me.state = WAITING;
  me.op = op;
  me.mask = mask;
  me.value = value;
  me.arg = arg;
  me.width = width;
  to_scheduler(r);
  if (!r->error.empty()) {  // the launch failed while we waited: never resumed normally
    __builtin_trap();
  }
  return me.result;
}

// Resolve one collective: the set named by lane `first`'s mask. Returns false on an error.
inline bool resolve(block_run* r, unsigned first) {
  const unsigned n = (unsigned)r->lanes.size();
  fiber& f = r->lanes[first];
  const unsigned warp = first / 32, lane = first % 32;
  // the place, for error messages only (formatting it on every call would dominate the run time)
  auto at = [&] {
    char buf[96];
    std::snprintf(buf, sizeof buf, " (block %u, warp %u, lane %u)", blockIdx.x, warp, lane);
    return std::string(buf);
  };
  if (f.op == OP_SYNCTHREADS) {
    for (unsigned j = 0; j < n; j++) {
      if (r->lanes[j].state == DONE) return fail(r, std::string("__syncthreads after a thread exited") + at()), false;
      if (r->lanes[j].op != OP_SYNCTHREADS)
        return fail(r, std::string("__syncthreads while another thread waits at a warp intrinsic") + at()), false;
    }
    for (unsigned j = 0; j < n; j++) r->lanes[j].state = READY;
    return true;
  }
  if (!(f.mask >> lane & 1u)) return fail(r, std::string("a lane calls a warp intrinsic without itself in the mask") + at()), false;
  if (f.width <= 0 || f.width > 32 || (f.width & (f.width - 1)))
    return fail(r, std::string("shuffle width is not a power of two up to 32") + at()), false;
  const unsigned base = warp * 32;
  uint64_t offered[32] = {};
  for (unsigned b = 0; b < 32; b++) {
    if (!(f.mask >> b & 1u)) continue;
    if (base + b >= n) return fail(r, std::string("mask names a lane beyond the block") + at()), false;
    const fiber& g = r->lanes[base + b];
    if (g.state == DONE) return fail(r, std::string("mask names a lane that has exited") + at()), false;
    if (g.op != f.op || g.mask != f.mask || g.width != f.width)
      return fail(r, std::string("lanes of one mask wait at different warp intrinsics (divergence)") + at()), false;
    offered[b] = g.value;
  }
  uint64_t ballot = 0;
  if (f.op == OP_BALLOT)
    for (unsigned b = 0; b < 32; b++)
      if (f.mask >> b & 1u) ballot |= (offered[b] & 1u) << b;
  for (unsigned b = 0; b < 32; b++) {
    if (!(f.mask >> b & 1u)) continue;
    fiber& g = r->lanes[base + b];
    const unsigned w = (unsigned)g.width, seg = b & ~(w - 1);
    unsigned src = b;
    switch (g.op) {
      case OP_SHFL: src = seg + ((unsigned)g.arg & (w - 1)); break;
      case OP_SHFL_UP: src = (b - seg) >= (unsigned)g.arg ? b - g.arg : b; break;
      case OP_SHFL_DOWN: src = (b - seg) + (unsigned)g.arg < w ? b + g.arg : b; break;
      case OP_SHFL_XOR: src = b ^ (unsigned)g.arg; if (src >= seg + w || src >= 32) src = b; break;
      default: break;
    }
    if (!(f.mask >> src & 1u)) return fail(r, std::string("a shuffle reads a lane outside its mask") + at()), false;
    g.result = g.op == OP_BALLOT ? ballot : (g.op == OP_SYNCWARP ? 0 : offered[src]);
  }
  for (unsigned b = 0; b < 32; b++)
    if (f.mask >> b & 1u) r->lanes[base + b].state = READY;
  return true;
}

// Run one block of `threads` threads in lockstep; "" or the error.
inline std::string run_block(unsigned threads, const std::function<void()>& body) {
  block_run run;
  run.body = body;
  run.lanes.resize(threads);
  for (unsigned t = 0; t < threads; t++) {
    fiber& f = run.lanes[t];
    f.stack = stack_for(t);
    if (f.stack == nullptr) return "could not map a fiber stack";
#if defined(__x86_64__)
    // Initial frame popped by hea_fiber_switch: six registers, then `ret` into fiber_main
    // with the stack 16-byte aligned as at a call.
    auto** top = reinterpret_cast<void**>(f.stack + kStackBytes - 64);
    for (int k = 0; k < 6; k++) top[k] = nullptr;
    top[6] = reinterpret_cast<void*>(&fiber_main);
    top[7] = nullptr;
    f.sp = top;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_main, 0);
#endif
  }
  block_run* saved = g_run;
  g_run = &run;
  std::string err;
  for (;;) {
    bool any_waiting = false;
    for (unsigned t = 0; t < threads; t++) {
      if (run.lanes[t].state != READY) continue;
      run.current = t;
      threadIdx.x = t;
#if defined(__x86_64__)
      hea_fiber_switch(&run.sched_sp, run.lanes[t].sp);
#else
      swapcontext(&run.sched_ctx, &run.lanes[t].ctx);
#endif
    }
    for (unsigned t = 0; t < threads && run.error.empty(); t++) {
      if (run.lanes[t].state != WAITING) continue;
      any_waiting = true;
      resolve(&run, t);
    }
    if (!run.error.empty() || !any_waiting) break;
  }
  // On an error the waiting fibers are abandoned with their stacks (plain memory, no
  // destructors run on kernel frames); the stacks are reinitialised for the next block.
  err = run.error;
  g_run = saved;
  return err;
}

}  // namespace hea_emu
