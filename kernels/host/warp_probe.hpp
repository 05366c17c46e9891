// Kernels that exercise the emulator's warp intrinsics (tests/test_warp_emulator.py): each one
// gives a different answer when lanes do not run in lockstep. Host-only, never built for a GPU.
#pragma once

// out[g] after `rounds` rotations: every lane takes its right neighbour's value, plus one.
extern "C" __global__ void probe_rotate(unsigned* out, int rounds) {
  unsigned lane = threadIdx.x % 32, g = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned x = g * 1000u;
  for (int r = 0; r < rounds; r++) x = __shfl_sync(0xffffffffu, x, (lane + 1) % 32) + 1u;
  out[g] = x;
}

// Every shuffle flavour at one width, then a ballot of a data-dependent predicate.
// out has 5 words per thread: shfl(src), up(delta), down(delta), xor(delta), ballot(v odd).
extern "C" __global__ void probe_shuffles(unsigned* out, const unsigned* in, int src, int delta, int width) {
  unsigned g = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned v = in[g];
  out[5 * g + 0] = __shfl_sync(0xffffffffu, v, src, width);
  out[5 * g + 1] = __shfl_up_sync(0xffffffffu, v, delta, width);
  out[5 * g + 2] = __shfl_down_sync(0xffffffffu, v, delta, width);
  out[5 * g + 3] = __shfl_xor_sync(0xffffffffu, v, delta, width);
  out[5 * g + 4] = __ballot_sync(0xffffffffu, v & 1u);
}

// Shared memory handed round a warp behind __syncwarp: lane l reads what lane l^1 wrote in the
// same round (a thread-after-thread run reads the previous round's or a stale value).
extern "C" __global__ void probe_smem_exchange(unsigned* out, int rounds) {
  __shared__ unsigned slot[1024];
  unsigned t = threadIdx.x, g = blockIdx.x * blockDim.x + t;
  unsigned x = g;
  for (int r = 0; r < rounds; r++) {
    slot[t] = x * 3u + (unsigned)r;
    __syncwarp();
    x = slot[t ^ 1u];
    __syncwarp();
  }
  out[g] = x;
}

// Two halves of each warp on different paths with their own masks (legal since Volta): the low
// half shuffles `rounds` times among itself, the high half ballots once.
extern "C" __global__ void probe_split_masks(unsigned* out, int rounds) {
  unsigned lane = threadIdx.x % 32, g = blockIdx.x * blockDim.x + threadIdx.x;
  if (lane < 16) {
    unsigned x = lane;
    for (int r = 0; r < rounds; r++) x = __shfl_down_sync(0x0000ffffu, x, 1, 16) + 100u;
    out[g] = x;
  } else {
    out[g] = __ballot_sync(0xffff0000u, lane % 3 == 0);
  }
}

// Undefined in CUDA, an error in the emulator: half the warp at a shuffle, half at a ballot,
// all naming the full mask.
extern "C" __global__ void probe_divergent(unsigned* out) {
  unsigned lane = threadIdx.x % 32, g = blockIdx.x * blockDim.x + threadIdx.x;
  if (lane & 1u) out[g] = __shfl_sync(0xffffffffu, lane, 0);
  else out[g] = __ballot_sync(0xffffffffu, 1);
}

// Undefined in CUDA, an error in the emulator: lane 0 exits before a full-mask shuffle.
extern "C" __global__ void probe_exited_lane(unsigned* out) {
  unsigned lane = threadIdx.x % 32, g = blockIdx.x * blockDim.x + threadIdx.x;
  if (lane == 0) return;
  out[g] = __shfl_sync(0xffffffffu, lane, 1);
}
