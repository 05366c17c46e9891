"""Kernel runtimes: where the kernels of ``kernels/*.cu`` run.

A runtime allocates device arrays, copies, and launches a kernel by name with a flat argument
list (device arrays, ``None`` for a null pointer, numpy scalars) the way ``cuLaunchKernel``
takes them. :class:`CupyRuntime` loads one binary per kernel family and size class, prebuilt or
compiled through NVRTC on first use (:mod:`accel.gpu.build` says from where), and turns every
CuPy/CUDA error into :class:`DeviceFailure` so the backend can rerun the call on the CPU.
:class:`accel.gpu.emulator.EmulatedRuntime` runs the same sources compiled with g++, for tests
without a GPU.
"""
from __future__ import annotations

import abc
import functools
import logging
import threading
from typing import Any

import numpy as np

from .binaries import load_binary
from .compiler import KernelBuildError  # noqa: F401 (importable from here, as before)
from .compiler import compile_options as _unit_options
from .names import (  # noqa: F401 (re-exported: the kernel name table)
    DEFAULT_ARCH,
    KERNEL_FILES,
    split_kernel_name,
    unit_of,
)
from .sources import source_dir, sources_digest  # noqa: F401

log = logging.getLogger(__name__)

#: Threads per block. One thread per element; tuning (threads per number) is future work.
BLOCK = 128

#: CuPy / CUDA exception types that mean "the device could not do it" (by name: CuPy is optional
#: and these live in several modules: cupy.cuda.memory, cupy_backends.cuda.api.{driver,runtime},
#: cupy.cuda.compiler)
DEVICE_ERROR_TYPES = ("OutOfMemoryError", "CUDADriverError", "CUDARuntimeError", "CompileException",
                      "NVRTCError", "KernelBuildError")


def compile_options(kernel: str, arch: str = DEFAULT_ARCH) -> tuple[str, ...]:
    """The NVRTC options of the unit that defines ``kernel``."""
    return _unit_options(*unit_of(kernel), arch)


class DeviceFailure(RuntimeError):
    """The device could not run a launch (out of memory, driver or launch error)."""


class KernelRuntime(abc.ABC):
    """One device. Arrays are runtime-specific; :meth:`is_device` recognises them."""

    name = "abstract"
    device_id = 0
    #: Pieces of one batch that may run at once on this device (one stream each): while one
    #: piece computes, the next one's copies proceed.
    streams = 1

    @abc.abstractmethod
    def is_device(self, x: Any) -> bool: ...

    @abc.abstractmethod
    def upload(self, host: np.ndarray) -> Any: ...

    @abc.abstractmethod
    def download(self, dev: Any) -> np.ndarray: ...

    @abc.abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: Any = np.uint32) -> Any: ...

    @abc.abstractmethod
    def launch(self, kernel: str, threads: int, args: list[Any]) -> None:
        """Run ``kernel`` over at least ``threads`` threads (grid-stride kernels)."""

    def synchronize(self) -> None:
        """Wait for queued work (no-op where launches are synchronous)."""

    @abc.abstractmethod
    def wipe(self, dev: Any) -> None:
        """Overwrite a device array with zeros (secret key records, before their memory is reused)."""

    def free_bytes(self) -> int | None:
        """Free device memory, when known (batches are split to fit)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "device": self.device_id}

    @staticmethod
    def grid_for(threads: int) -> int:
        return max(1, min(-(-threads // BLOCK), 65535 * 4))


def wrap_device_errors(fn):
    """Turn CuPy's allocation, driver, runtime and compile errors into :class:`DeviceFailure`
    (so the backend falls back to the CPU); any other exception passes unchanged."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DeviceFailure:
            raise
        except Exception as e:  # noqa: BLE001 - classified by type name; cupy may be absent
            kind = type(e).__name__
            if kind in DEVICE_ERROR_TYPES:
                raise DeviceFailure(f"{kind}: {e}") from e
            raise
    return wrapped


class CupyRuntime(KernelRuntime):
    """A CUDA device through CuPy. Import errors or no device raise ImportError/RuntimeError.

    ``cupy`` is the module to use (injected by tests; default: ``import cupy``), ``kernel_dirs``
    the prebuilt folders to try before compiling (default: ``HEA_KERNEL_DIR``).
    """

    name = "cupy"

    def __init__(self, device_id: int = 0, *, streams: int = 2, cupy: Any = None,
                 kernel_dirs: list[str] | None = None):
        if cupy is None:
            import cupy  # noqa: PLC0415 (optional dependency)

        self._cp = cupy
        self.device_id = int(device_id)
        self.streams = max(1, int(streams))
        self.kernel_dirs = kernel_dirs
        self._local = threading.local()
        if self.device_id >= cupy.cuda.runtime.getDeviceCount():
            raise RuntimeError(f"no CUDA device {self.device_id}")
        self._modules: dict[tuple[str, int], Any] = {}
        self._functions: dict[str, Any] = {}
        #: (file, size) -> where its binary came from ("prebuilt ...", "cache ...", "compiled ...")
        self.kernel_origins: dict[str, str] = {}
        self._lock = threading.Lock()
        self._null = None
        with cupy.cuda.Device(self.device_id):
            props = cupy.cuda.runtime.getDeviceProperties(self.device_id)
            self.device_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            self.compute_capability = f"{props['major']}{props['minor']}"
        self.arch = f"sm_{self.compute_capability}"

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "device": self.device_id, "name": self.device_name,
                "compute_capability": self.compute_capability, "kernels": dict(self.kernel_origins)}

    def is_device(self, x: Any) -> bool:
        return isinstance(x, self._cp.ndarray)

    def _dev(self):
        return self._cp.cuda.Device(self.device_id)

    def _stream(self):
        """This host thread's stream on this device: threads working on pieces of one batch
        each have their own, so copies of one piece overlap the kernels of another."""
        s = getattr(self._local, "stream", None)
        if s is None:
            with self._dev():
                s = self._local.stream = self._cp.cuda.Stream(non_blocking=True)
        return s

    @wrap_device_errors
    def upload(self, host: np.ndarray) -> Any:
        with self._dev(), self._stream():
            return self._cp.asarray(host)

    @wrap_device_errors
    def download(self, dev: Any) -> np.ndarray:
        with self._dev(), self._stream() as s:
            return self._cp.asnumpy(dev, stream=s)

    @wrap_device_errors
    def empty(self, shape, dtype=np.uint32):
        with self._dev(), self._stream():
            return self._cp.empty(shape, dtype=dtype)

    @wrap_device_errors
    def wipe(self, dev: Any) -> None:
        with self._dev(), self._stream() as s:
            dev.fill(0)
            s.synchronize()

    @wrap_device_errors
    def synchronize(self) -> None:
        with self._dev():
            self._stream().synchronize()

    @wrap_device_errors
    def free_bytes(self) -> int | None:
        with self._dev():
            free, _total = self._cp.cuda.runtime.memGetInfo()
            pool = self._cp.get_default_memory_pool()
            return int(free + pool.free_bytes())

    @wrap_device_errors
    def function(self, kernel: str):
        """The kernel, loading its unit (family x size class) on first use: prebuilt, cached
        or compiled by NVRTC for this device's architecture (:func:`accel.gpu.build.load_binary`)."""
        with self._lock:
            fn = self._functions.get(kernel)
            if fn is None:
                file, size = unit_of(kernel)
                mod = self._modules.get((file, size))
                if mod is None:
                    cubin, origin = load_binary(file, size, self.arch, kernel_dirs=self.kernel_dirs)
                    log.info("GPU %d kernels %s size %d: %s", self.device_id, file, size, origin)
                    with self._dev():
                        mod = self._cp.cuda.function.Module()
                        mod.load(cubin)
                    self._modules[(file, size)] = mod
                    self.kernel_origins[f"{file}:{size}"] = origin
                with self._dev():
                    fn = mod.get_function(kernel)
                self._functions[kernel] = fn
            return fn

    @wrap_device_errors
    def launch(self, kernel: str, threads: int, args: list[Any]) -> None:
        fn = self.function(kernel)
        cp = self._cp
        with self._dev(), self._stream():
            if self._null is None:
                self._null = cp.zeros(1, dtype=np.uint32)
            real = [self._null if a is None else a for a in args]
            fn((self.grid_for(threads),), (BLOCK,), tuple(real))  # on this thread's stream
