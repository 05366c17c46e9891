from __future__ import annotations

import random
import secrets

import gmpy2
import pytest

from accel import CpuBackend, generate_keypair

from .oracle import Oracle

# Keys are expensive at 3072/4096 bits; make each size once per session.
_KEYS: dict[int, tuple] = {}


def keypair(bits: int):
    if bits not in _KEYS:
        _KEYS[bits] = generate_keypair(bits, allow_insecure=bits < 1024)
    return _KEYS[bits]


def coprime_units(n2: int, count: int) -> list[int]:
    """Ciphertext-shaped operands: edges 1, n^2 - 1, 2, then random units mod n^2 (coprime to it)."""
    out = [1, n2 - 1, 2]
    while len(out) < count:
        c = secrets.randbelow(n2 - 1) + 1
        if gmpy2.gcd(c, n2) == 1:
            out.append(c)
    return out[:count]


@pytest.fixture(scope="session")
def key1024():
    return keypair(1024)


@pytest.fixture(scope="session")
def key2048():
    return keypair(2048)


@pytest.fixture(scope="session")
def tiny_key():
    """A 256-bit key: insecure, for fast property tests of the arithmetic."""
    return keypair(256)


@pytest.fixture(scope="session")
def inline_backend():
    be = CpuBackend(workers=1)
    yield be
    be.close()


@pytest.fixture(scope="session")
def pool_backend():
    """Two worker processes with one element per task chunk: exercises splitting and offsets."""
    be = CpuBackend(workers=2, chunks_per_worker=8)
    yield be
    be.close()


@pytest.fixture(scope="session")
def emulated_gpu_backend(inline_backend):
    """The GPU backend on the kernels compiled for the CPU (accel.gpu.emulator)."""
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(runtime="emulated", fallback=inline_backend)
    yield be
    be.close()


@pytest.fixture(scope="session")
def emulated_gpu_coop_backend(inline_backend):
    """The GPU backend with cooperative=True: every op with a cooperative kernel runs on it
    (issue 15), each warp of the lockstep emulator as fibers."""
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(runtime="emulated", fallback=inline_backend, cooperative=True)
    yield be
    be.close()


@pytest.fixture(scope="session")
def emulated_gpu_split_backend(inline_backend):
    """Two emulated devices (one with two streams), pieces of at most 3 elements: exercises
    splitting, concurrent pieces and error offsets."""
    from accel.backends.gpu import GpuBackend
    from accel.gpu.emulator import EmulatedRuntime

    be = GpuBackend(runtime=[EmulatedRuntime(0, streams=2), EmulatedRuntime(1)], fallback=inline_backend,
                    max_batch=3, min_per_device=2)
    yield be
    be.close()


@pytest.fixture(scope="session")
def service_server(pool_backend):
    """An in-process he-accel service on a free loopback port (CPU backend, test key sizes)."""
    from accel.service.server import HeAccelServer, ServerConfig

    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", min_key_bits=256, max_delay_ms=1.0),
                        backend=pool_backend).start()
    yield srv
    srv.stop(5)


@pytest.fixture(scope="session")
def remote_backend(service_server):
    """The remote backend against ``service_server``; tiny chunks so that streams are exercised."""
    from accel.service.remote import RemoteBackend

    be = RemoteBackend(f"127.0.0.1:{service_server.port}", chunk_bytes=1500, timeout=60)
    yield be
    be.close()


@pytest.fixture(params=["inline", "pool", "gpu-emulated", "gpu-emulated-coop", "gpu-emulated-split", "remote"])
def backend(request):
    name = {"inline": "inline_backend", "pool": "pool_backend", "gpu-emulated": "emulated_gpu_backend",
            "gpu-emulated-coop": "emulated_gpu_coop_backend", "gpu-emulated-split": "emulated_gpu_split_backend",
            "remote": "remote_backend"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture
def oracle1024(key1024):
    return Oracle.for_key(key1024[1])


@pytest.fixture
def seeded_rng():
    return random.Random(12345)


def recording_runtime(device_id: int = 0):
    """An emulated runtime that records every launch as (kernel name, threads) in ``.launched``:
    what the backend really asks the device to run."""
    from accel.gpu.emulator import EmulatedRuntime

    class LaunchRecordingRuntime(EmulatedRuntime):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.launched: list[tuple[str, int]] = []

        def launch(self, kernel, threads, args):
            self.launched.append((kernel, threads))
            return super().launch(kernel, threads, args)

    return LaunchRecordingRuntime(device_id)


@pytest.fixture
def coop(inline_backend):
    """A GpuBackend on the cooperative kernels (lockstep emulator) and the names it launched."""
    from accel.backends.gpu import GpuBackend  # noqa: PLC0415 - builds the emulator only when used

    rt = recording_runtime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend, cooperative=True)
    yield gpu, rt.launched
    gpu.close()
