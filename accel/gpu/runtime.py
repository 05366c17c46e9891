"""Kernel runtimes: where the kernels of ``kernels/*.cu`` run.

A runtime allocates device arrays, copies, and launches a kernel by name with a flat argument
list (device arrays, ``None`` for a null pointer, numpy scalars) the way ``cuLaunchKernel``
takes them. :class:`CupyRuntime` compiles the sources through CuPy's ``RawModule`` (NVRTC)
lazily, one size class per module, cached per device (CuPy also caches the binaries on disk,
keyed by source, options, architecture and toolkit). :class:`accel.gpu.emulator.EmulatedRuntime`
runs the same sources compiled with g++, for tests without a GPU.
"""
from __future__ import annotations

import abc
import functools
import hashlib
import re
import threading
from typing import Any

import numpy as np

from accel.kernels import source_dir

#: kernel name (without the size suffix) -> source file of its family
KERNEL_FILES = {
    "paillier_encrypt": "paillier_encrypt.cu", "paillier_obfuscate": "paillier_encrypt.cu",
    "paillier_rerandomize": "paillier_encrypt.cu", "paillier_encrypt_with": "paillier_encrypt.cu",
    "paillier_crt_obfuscate": "paillier_encrypt.cu", "paillier_crt_encrypt": "paillier_encrypt.cu",
    "paillier_decrypt": "paillier_decrypt.cu",
    "he_add": "homomorphic.cu", "he_add_plain": "homomorphic.cu", "he_mul_scalar": "homomorphic.cu",
    "he_product": "reduce.cu",
    "matvec_tables": "matvec.cu", "matvec_partial": "matvec.cu", "matvec_finish": "matvec.cu",
    "powmod": "modexp.cu",
    "djn_table": "djn.cu", "djn_encrypt": "djn.cu",
}

_NAME = re.compile(r"^(?P<family>[a-z_]+?)_(?P<size>\d+)$")

#: Threads per block. One thread per element; tuning (threads per number) is future work.
BLOCK = 128


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Hash of every kernel source and header. CuPy's disk cache keys on the code string only,
    not on included headers, so this goes into the code to invalidate stale binaries."""
    h = hashlib.sha256()
    for p in sorted(source_dir().glob("*.cu*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class DeviceFailure(RuntimeError):
    """The device could not run a launch (out of memory, driver or launch error)."""


def split_kernel_name(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m or m["family"] not in KERNEL_FILES:
        raise KeyError(f"unknown kernel {name!r}")
    return m["family"], int(m["size"])


def compile_options(name: str) -> tuple[str, ...]:
    family, size = split_kernel_name(name)
    define = f"-DHEA_MOD_LIMBS={size}" if family == "powmod" else f"-DHEA_KEY_CLASS={size}"
    return ("-std=c++17", f"-I{source_dir()}", define)


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


class CupyRuntime(KernelRuntime):
    """A CUDA device through CuPy. Import errors or no device raise ImportError/RuntimeError."""

    name = "cupy"

    def __init__(self, device_id: int = 0, *, streams: int = 2):
        import cupy  # noqa: PLC0415 (optional dependency)

        self._cp = cupy
        self.device_id = int(device_id)
        self.streams = max(1, int(streams))
        self._local = threading.local()
        if self.device_id >= cupy.cuda.runtime.getDeviceCount():
            raise RuntimeError(f"no CUDA device {self.device_id}")
        self._modules: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._functions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._null = None
        with cupy.cuda.Device(self.device_id):
            props = cupy.cuda.runtime.getDeviceProperties(self.device_id)
            self.device_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            self.compute_capability = f"{props['major']}{props['minor']}"

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "device": self.device_id, "name": self.device_name,
                "compute_capability": self.compute_capability}

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

    def upload(self, host: np.ndarray) -> Any:
        with self._dev(), self._stream():
            return self._cp.asarray(host)

    def download(self, dev: Any) -> np.ndarray:
        with self._dev(), self._stream() as s:
            return self._cp.asnumpy(dev, stream=s)

    def empty(self, shape, dtype=np.uint32):
        with self._dev(), self._stream():
            return self._cp.empty(shape, dtype=dtype)

    def wipe(self, dev: Any) -> None:
        with self._dev(), self._stream() as s:
            dev.fill(0)
            s.synchronize()

    def free_bytes(self) -> int | None:
        with self._dev():
            free, _total = self._cp.cuda.runtime.memGetInfo()
            pool = self._cp.get_default_memory_pool()
            return int(free + pool.free_bytes())

    def function(self, kernel: str):
        """The compiled kernel, compiling its family for this size class on first use."""
        with self._lock:
            fn = self._functions.get(kernel)
            if fn is None:
                family, _ = split_kernel_name(kernel)
                path = source_dir() / KERNEL_FILES[family]
                options = compile_options(kernel)
                key = (path.name, options)
                mod = self._modules.get(key)
                if mod is None:
                    with self._dev():
                        code = f"// he-accel kernel sources {sources_digest()}\n" + path.read_text()
                        mod = self._cp.RawModule(code=code, options=options)
                    self._modules[key] = mod
                with self._dev():
                    fn = mod.get_function(kernel)
                self._functions[kernel] = fn
            return fn

    def launch(self, kernel: str, threads: int, args: list[Any]) -> None:
        fn = self.function(kernel)
        cp = self._cp
        with self._dev(), self._stream():
            if self._null is None:
                self._null = cp.zeros(1, dtype=np.uint32)
            real = [self._null if a is None else a for a in args]
            try:
                fn((self.grid_for(threads),), (BLOCK,), tuple(real))  # on this thread's stream
            except cp.cuda.memory.OutOfMemoryError as e:
                raise DeviceFailure(f"out of device memory: {e}") from e
            except cp.cuda.driver.CUDADriverError as e:
                raise DeviceFailure(f"CUDA launch failed: {e}") from e


def wrap_device_errors(fn):
    """Turn CuPy's allocation/driver errors into :class:`DeviceFailure` (for fallbacks)."""
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DeviceFailure:
            raise
        except Exception as e:  # noqa: BLE001 - classify by type name; cupy may be absent
            kind = type(e).__name__
            if kind in ("OutOfMemoryError", "CUDADriverError", "CUDARuntimeError", "CompileException"):
                raise DeviceFailure(f"{kind}: {e}") from e
            raise
    wrapped.__name__ = getattr(fn, "__name__", "wrapped")
    wrapped.__doc__ = fn.__doc__
    return wrapped
