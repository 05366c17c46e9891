"""The kernels compiled with g++ and run on the CPU: how CI tests the GPU code without a GPU.

``kernels/host/emulator.cpp`` includes every ``kernels/*.cu`` with a small CUDA shim and
exports one launcher per kernel (arguments passed as ``void**``, like ``cuLaunchKernel``) plus
the Montgomery primitives. :func:`load` builds it once per source hash into a cache directory
(``$HEA_CACHE_DIR`` or ``~/.cache/he-accel``) and loads it with ctypes.
:class:`EmulatedRuntime` runs :class:`accel.backends.gpu.GpuBackend` on it, so the backend's
packing, launches, splitting, error handling and fallback run in CI on the very kernels that
the GPU runs. It is a test vehicle, slow by design (one CPU thread per emulated block). Warp-collective
kernels run each block's threads as fibers in lockstep (``kernels/host/lockstep.hpp``), so their
shuffles exchange the values of one step, as on the GPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .sources import cache_root, source_dir

from .runtime import BLOCK, DeviceFailure, KernelRuntime

CXX_FLAGS = ("-std=c++17", "-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra")

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class EmulatorUnavailableError(RuntimeError):
    """No C++ compiler to build the emulator."""


class KernelFault(RuntimeError):
    """A kernel did something CUDA leaves undefined (lanes of one mask at different warp
    intrinsics, a shuffle naming an exited lane or one outside its mask): a kernel bug, which
    the lockstep emulator reports instead of returning whatever a GPU might."""


def _sources() -> list[Path]:
    root = source_dir()
    return sorted([*root.glob("*.cu"), *root.glob("*.cuh"), *(root / "host").glob("*")])


def _digest() -> str:
    h = hashlib.sha256(" ".join(CXX_FLAGS).encode())
    for p in _sources():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return cache_root()


def build(force: bool = False) -> Path:
    """Compile the emulator library (cached by source hash); returns its path."""
    out = cache_dir() / f"emulator-{_digest()}.so"
    if out.exists() and not force:
        return out
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise EmulatorUnavailableError("no C++ compiler (g++) found to build the kernel emulator")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_out = Path(tmp) / out.name
        cmd = [cxx, *CXX_FLAGS, "-o", str(tmp_out), str(source_dir() / "host" / "emulator.cpp")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise EmulatorUnavailableError(f"building the kernel emulator failed:\n{proc.stderr[-4000:]}")
        os.replace(tmp_out, out)  # atomic: concurrent builders agree
    return out


def load() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = ctypes.CDLL(str(build()))
        return _lib


class EmulatedArray:
    """A "device" array of the emulated runtime: host memory, kept apart from user numpy arrays."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key) -> "EmulatedArray":
        return EmulatedArray(self.data[key])

    def __repr__(self) -> str:
        return f"EmulatedArray(shape={self.shape}, dtype={self.dtype})"


def _c_arg(a: Any):
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, EmulatedArray):
        return ctypes.c_void_p(a.data.ctypes.data)
    if isinstance(a, np.uint64):
        return ctypes.c_ulonglong(int(a))
    if isinstance(a, np.uint32):
        return ctypes.c_uint(int(a))
    if isinstance(a, (np.int32, int)):
        return ctypes.c_int(int(a))
    raise TypeError(f"unsupported kernel argument {type(a).__name__}")


class EmulatedRuntime(KernelRuntime):
    """Runs the kernels through the g++ build. ``fail_after`` injects a :class:`DeviceFailure`
    (as an out-of-memory would) after that many launches, to test the CPU fallback."""

    name = "emulated"

    def __init__(self, device_id: int = 0, *, fail_after: int | None = None, memory_bytes: int | None = None,
                 streams: int = 1):
        self.device_id = device_id
        self.streams = max(1, int(streams))
        self._lib = load()
        self.fail_after = fail_after
        self.memory_bytes = memory_bytes
        self.launches = 0

    def is_device(self, x: Any) -> bool:
        return isinstance(x, EmulatedArray)

    def upload(self, host: np.ndarray) -> EmulatedArray:
        return EmulatedArray(np.array(host, copy=True))

    def download(self, dev: EmulatedArray) -> np.ndarray:
        return np.array(dev.data, copy=True)

    def empty(self, shape, dtype=np.uint32) -> EmulatedArray:
        return EmulatedArray(np.zeros(shape, dtype=dtype))

    def wipe(self, dev: EmulatedArray) -> None:
        dev.data.fill(0)

    def free_bytes(self) -> int | None:
        return self.memory_bytes

    def launch(self, kernel: str, threads: int, args: list[Any]) -> None:
        if self.fail_after is not None and self.launches >= self.fail_after:
            raise DeviceFailure("injected device failure (out of memory)")
        self.launches += 1
        c_args = [_c_arg(a) for a in args]
        ptrs = (ctypes.c_void_p * len(c_args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in c_args])
        run_kernel(self._lib, kernel, self.grid_for(threads), BLOCK, ptrs)


def run_kernel(lib: ctypes.CDLL, kernel: str, grid: int, block: int, ptrs) -> None:
    """Launch ``emu_<kernel>``; a lockstep fault raises :class:`KernelFault` with its reason."""
    fn = getattr(lib, f"emu_{kernel}")
    fn.restype = ctypes.c_int
    if fn(ctypes.c_uint(grid), ctypes.c_uint(block), ptrs):
        lib.emu_last_error.restype = ctypes.c_char_p
        raise KernelFault(f"{kernel}: {lib.emu_last_error().decode()}")
