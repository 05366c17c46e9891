"""The emulator runs warp-collective code in lockstep, with CUDA's semantics for the intrinsics.

Each probe kernel (kernels/host/warp_probe.hpp) gives a different answer when the lanes of a warp
do not run in lockstep (a thread-after-thread launcher reads values of another step), and the
expected values here are CUDA's documented results, computed independently in Python.
"""
import ctypes
import os
import secrets

import numpy as np
import pytest

from accel.gpu import emulator
from accel.gpu.emulator import KernelFault, run_kernel

lib = emulator.load()
BLOCK = 128


def launch(kernel, grid, *args, block=BLOCK):
    c_args = []
    for a in args:
        if isinstance(a, np.ndarray):
            c_args.append(ctypes.c_void_p(a.ctypes.data))
        else:
            c_args.append(ctypes.c_int(int(a)))
    ptrs = (ctypes.c_void_p * len(c_args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in c_args])
    run_kernel(lib, kernel, grid, block, ptrs)


@pytest.mark.parametrize("rounds", [1, 7, 33])
def test_shuffles_exchange_the_values_of_the_same_step(rounds):
    grid = 3
    out = np.zeros(grid * BLOCK, np.uint32)
    launch("probe_rotate", grid, out, rounds)
    want = []
    for g in range(grid * BLOCK):
        warp, lane = divmod(g, 32)
        want.append((warp * 32 + (lane + rounds) % 32) * 1000 + rounds)
    assert out.tolist() == want


def cuda_shuffles(values, src, delta, width):
    """CUDA's results for one warp (the programming guide's definitions)."""
    out = []
    ballot = sum(1 << b for b in range(32) if values[b] & 1)
    for b in range(32):
        seg = b & ~(width - 1)
        up = b - delta if b - seg >= delta else b
        down = b + delta if b - seg + delta < width else b
        x = b ^ delta
        x = b if x >= seg + width else x
        out += [values[seg + src % width], values[up], values[down], values[x], ballot]
    return out


@pytest.mark.parametrize("width", [32, 16, 8, 4, 2])
@pytest.mark.parametrize("src,delta", [(0, 1), (5, 3), (31, 7)])
def test_every_shuffle_flavour_and_ballot_match_cuda(width, src, delta):
    grid = 2
    values = np.array([secrets.randbits(32) for _ in range(grid * BLOCK)], np.uint32)
    out = np.zeros(5 * grid * BLOCK, np.uint32)
    launch("probe_shuffles", grid, out, values, src, delta, width)
    want = []
    for w in range(grid * BLOCK // 32):
        want += cuda_shuffles(values[32 * w : 32 * w + 32].tolist(), src, delta, width)
    assert out.tolist() == want


@pytest.mark.parametrize("rounds", [1, 2, 9])
def test_shared_memory_behind_syncwarp_sees_the_same_round(rounds):
    grid = 2
    out = np.zeros(grid * BLOCK, np.uint32)
    launch("probe_smem_exchange", grid, out, rounds)
    x = list(range(grid * BLOCK))
    for r in range(rounds):
        written = [(v * 3 + r) & 0xFFFFFFFF for v in x]
        x = [written[(g - g % BLOCK) + ((g % BLOCK) ^ 1)] for g in range(grid * BLOCK)]
    assert out.tolist() == x


def test_disjoint_masks_on_different_paths():
    out = np.zeros(BLOCK, np.uint32)
    launch("probe_split_masks", 1, out, 5)
    for g in range(BLOCK):
        lane = g % 32
        if lane < 16:
            x = list(range(16))
            for _ in range(5):
                x = [(x[i + 1] if i + 1 < 16 else x[i]) + 100 for i in range(16)]
            assert out[g] == x[lane]
        else:
            assert out[g] == sum(1 << b for b in range(16, 32) if b % 3 == 0)


@pytest.mark.parametrize("kernel,reason", [
    ("probe_divergent", "different warp intrinsics"),
    ("probe_exited_lane", "exited"),
])
def test_undefined_collectives_fail_the_launch(kernel, reason):
    out = np.zeros(BLOCK, np.uint32)
    with pytest.raises(KernelFault, match=reason):
        launch(kernel, 1, out)
    # the emulator is still usable afterwards
    ok = np.zeros(BLOCK, np.uint32)
    launch("probe_rotate", 1, ok, 1)
    assert ok[0] == 1 * 1000 + 1


def test_blocks_smaller_than_a_warp_fail_when_a_mask_names_missing_lanes():
    out = np.zeros(16, np.uint32)
    with pytest.raises(KernelFault, match="beyond the block"):
        launch("probe_rotate", 1, out, 1, block=16)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_fiber_stacks_are_released_between_launches():
    """Every launch's worker threads map a stack per fiber; they must go when the threads end."""
    out = np.zeros(4 * BLOCK, np.uint32)
    launch("probe_rotate", 4, out, 1)

    def maps():
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    before = maps()
    for _ in range(100):
        launch("probe_rotate", 4, out, 1)
    assert maps() - before < 64
