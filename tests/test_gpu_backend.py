"""GpuBackend specifics, run on the emulated runtime (the kernels compiled for the CPU).

Bit-exact differential checks against the CPU backend with the same injected randomness,
device-resident chains, splitting, the CPU fallback on device failure, DJN, every size class.
The backend-agnostic API tests run on this backend too (``backend`` fixture in conftest).
"""
import random
import secrets

import numpy as np
import pytest

from accel import CpuBackend, ObfuscatorPool, get_backend
from accel.backends import BackendUnavailableError
from accel.backends.gpu import DeviceFallbackWarning, GpuBackend
from accel.djn import DjnKey
from accel.gpu.emulator import EmulatedArray, EmulatedRuntime
from accel.packing import limbs_to_ints

from .conftest import keypair
from .oracle import Oracle


class SeededRng(random.Random):
    """Deterministic randomness for bit-exact comparisons (tests only; never for real keys)."""


def plaintexts(n, count):
    return ([0, 1, n - 1, n // 2] + [secrets.randbelow(n) for _ in range(count)])[:count]


@pytest.mark.parametrize("bits", [1024, 2048])
def test_bit_exact_against_cpu_with_the_same_randomness(bits, inline_backend):
    pk, sk = keypair(bits)
    gpu = GpuBackend(runtime="emulated", fallback=inline_backend)
    ms = plaintexts(pk.n, 6)
    for kwargs in ({}, {"private_key": sk}, {"djn": DjnKey.generate(pk)}):
        a = gpu.raw_encrypt(pk, ms, rng=SeededRng(7), **kwargs)
        b = inline_backend.raw_encrypt(pk, ms, rng=SeededRng(7), **kwargs)
        assert a == b, kwargs
    cs = inline_backend.raw_encrypt(pk, ms)
    assert gpu.raw_rerandomize(pk, cs, rng=SeededRng(3)) == inline_backend.raw_rerandomize(pk, cs, rng=SeededRng(3))
    assert gpu.obfuscators(pk, 3, rng=SeededRng(1)) == inline_backend.obfuscators(pk, 3, rng=SeededRng(1))
    ks = [secrets.randbits(64) - (1 << 63) for _ in ms]
    assert gpu.raw_mul(pk, cs, ks) == inline_backend.raw_mul(pk, cs, ks)
    X = [[secrets.randbelow(1 << 20) - (1 << 19) for _ in range(3)] for _ in ms]
    assert gpu.raw_matvec(pk, cs, X) == inline_backend.raw_matvec(pk, cs, X)
    assert gpu.raw_sum(pk, cs) == inline_backend.raw_sum(pk, cs)
    assert gpu.raw_decrypt(sk, cs) == ms
    assert gpu.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [3072, 4096])
def test_large_size_classes(bits, inline_backend):
    pk, sk = keypair(bits)
    gpu = GpuBackend(runtime="emulated", fallback=inline_backend)
    ms = [0, pk.n - 1]
    cs = gpu.raw_encrypt(pk, ms, private_key=sk)
    assert gpu.raw_decrypt(sk, cs) == ms
    o = Oracle.for_key(sk)
    assert o.dec(gpu.raw_add(pk, cs, cs)[0]) == 0 and o.dec(gpu.raw_mul(pk, cs, [-3, 5])[1]) == (-5) % pk.n
    if bits == 3072:  # textbook r^n at 6144 bits is a second of emulation per element
        assert o.dec_all(gpu.raw_encrypt(pk, ms)) == ms


def test_device_resident_chain(key1024, inline_backend):
    pk, sk = key1024
    gpu = GpuBackend(runtime="emulated", fallback=inline_backend)
    ms = plaintexts(pk.n, 9)
    m_dev = gpu.to_device(ms, pk.plaintext_width)
    c = gpu.raw_encrypt(pk, m_dev)
    assert isinstance(c, EmulatedArray) and c.shape == (9, pk.ciphertext_width // 4)
    c2 = gpu.raw_add(pk, c, gpu.raw_encrypt(pk, m_dev, private_key=sk))
    c3 = gpu.raw_mul(pk, c2, [-1] * 9)
    c4 = gpu.raw_add_plain(pk, c3, ms)                     # -2m + m = -m
    c5 = gpu.raw_rerandomize(pk, c4)
    X = np.array([[1, -2], [3, 0], [0, 0], [5, 7], [1, 1], [0, 1], [2, 2], [9, -9], [4, 4]])
    mv = gpu.raw_matvec(pk, c5, X)
    s = gpu.raw_sum(pk, c5)
    for out in (c5, mv, s):
        assert isinstance(out, EmulatedArray)
    n = pk.n
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, c5))) == [(-m) % n for m in ms]
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, mv))) == [
        sum(-m * int(X[i][j]) for i, m in enumerate(ms)) % n for j in range(2)]
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, s))) == [(-sum(ms)) % n]
    pool = ObfuscatorPool(pk, gpu, capacity=16, start=False)
    pool.fill()
    dj = DjnKey.generate(pk)
    for kwargs in ({"obfuscators": pool}, {"djn": dj}, {"obfuscate": False}):
        out = gpu.raw_encrypt(pk, m_dev, **kwargs)
        assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, out))) == ms
    with pytest.raises(ValueError, match="limbs"):
        gpu.raw_add(pk, c, m_dev)
    with pytest.raises(TypeError, match="both"):
        gpu.raw_add(pk, c, [1] * 9)


def test_device_failure_falls_back_to_cpu_and_loses_nothing(key1024, inline_backend):
    pk, sk = key1024
    ms = plaintexts(pk.n, 10)
    # fails on its first launch: every call goes to the CPU, counted and warned about
    gpu = GpuBackend(runtime=EmulatedRuntime(fail_after=0), fallback=inline_backend)
    with pytest.warns(DeviceFallbackWarning, match="fell back"):
        cs = gpu.raw_encrypt(pk, ms)
    with pytest.warns(DeviceFallbackWarning):
        assert gpu.raw_decrypt(sk, cs) == ms
    assert gpu.stats["cpu_fallbacks"] == 2
    # fails in the middle of a split batch: the whole call reruns on the CPU, same randomness
    rt = EmulatedRuntime(fail_after=2)
    gpu = GpuBackend(runtime=rt, fallback=inline_backend, max_batch=3)
    with pytest.warns(DeviceFallbackWarning):
        a = gpu.raw_encrypt(pk, ms, rng=SeededRng(5))
    assert a == inline_backend.raw_encrypt(pk, ms, rng=SeededRng(5))
    # device-resident input: the result still comes back as a device array
    rt = EmulatedRuntime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend)
    dev = gpu.to_device(cs, pk.ciphertext_width)
    rt.fail_after = rt.launches
    with pytest.warns(DeviceFallbackWarning):
        out = gpu.raw_decrypt(sk, dev)
    assert isinstance(out, EmulatedArray) and limbs_to_ints(gpu.to_host(out)) == ms


def test_batches_split_to_fit_device_memory(key1024, inline_backend):
    pk, sk = key1024
    ms = plaintexts(pk.n, 12)
    gpu = GpuBackend(runtime=EmulatedRuntime(memory_bytes=2 * 5 * 3 * pk.ciphertext_width), fallback=inline_backend)
    cs = gpu.raw_encrypt(pk, ms)
    assert gpu.stats["split_batches"] >= 1
    assert gpu.raw_decrypt(sk, cs) == ms
    assert Oracle.for_key(sk).dec(gpu.raw_sum(pk, cs)) == sum(ms) % pk.n


def test_bad_input_is_a_value_error_not_a_fallback(key1024, emulated_gpu_backend):
    pk, sk = key1024
    before = emulated_gpu_backend.stats["cpu_fallbacks"]
    with pytest.raises(ValueError, match=r"plaintext\[2\]"):
        emulated_gpu_backend.raw_encrypt(pk, [1, 2, pk.n, pk.n + 1])
    with pytest.raises(ValueError, match=r"obfuscator\[0\]"):
        emulated_gpu_backend.raw_encrypt(pk, [1], obfuscators=_FixedPool([pk.nsquare]))
    assert emulated_gpu_backend.stats["cpu_fallbacks"] == before


class _FixedPool:
    def __init__(self, values):
        self.values = values

    def take(self, count):
        return b"".join(v.to_bytes(((v.bit_length() + 31) // 32) * 4 or 4, "little") for v in self.values)


def test_powmod_sizes_and_cpu_paths(emulated_gpu_backend, inline_backend):
    gpu = emulated_gpu_backend
    before = gpu.stats["cpu_powmod_even_modulus"]
    assert gpu.powmod([3, 5], [10, 3], 1 << 64) == [3**10, 125]
    assert gpu.stats["cpu_powmod_even_modulus"] == before + 1
    big = (1 << 9000) + 1  # beyond the largest kernel class: CPU, warned
    with pytest.warns(DeviceFallbackWarning):
        assert gpu.powmod([2], [5], big) == [32]
    m = (1 << 6000) - 1 - 2 * secrets.randbits(100)
    b, e = secrets.randbelow(m), secrets.randbits(90)
    assert gpu.powmod([b], [e], m) == [pow(b, e, m)]


def test_djn_parameters(key1024, key2048, backend):
    pk, sk = key1024
    dj = DjnKey.generate(pk)
    assert dj.exponent_bits == 512
    assert DjnKey.from_json(pk, dj.to_json()) == dj
    with pytest.raises(ValueError, match="another public key"):
        DjnKey.from_json(key2048[0], dj.to_json())
    with pytest.raises(ValueError, match="unit"):
        DjnKey(pk, pk.n, 512)
    ms = plaintexts(pk.n, 7)
    cs = backend.raw_encrypt(pk, ms, djn=dj)
    assert Oracle.for_key(sk).dec_all(cs) == ms and len(set(cs)) == 7
    obf = backend.obfuscators(pk, 4, djn=dj)
    assert Oracle.for_key(sk).dec_all([int.from_bytes(obf[i:i + pk.ciphertext_width], "little")
                                       for i in range(0, len(obf), pk.ciphertext_width)]) == [0] * 4
    with pytest.raises(Exception, match="another public key"):
        backend.raw_encrypt(key2048[0], [1], djn=dj)


def _has_cuda_device() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device
        return False


@pytest.mark.skipif(_has_cuda_device(), reason="a CUDA device is present: the gpu-marked suite covers it")
def test_gpu_without_cupy_or_device_is_unavailable_and_auto_uses_cpu():
    """CI has CuPy (the test extra) but no driver or device: 'gpu' is unavailable, 'auto' is CPU."""
    with pytest.raises(BackendUnavailableError, match="not available"):
        get_backend("gpu")
    assert get_backend("auto").name == "cpu"
    be = get_backend("gpu", runtime="emulated")
    assert be.name == "gpu" and be.describe()["devices"][0]["runtime"] == "emulated"
    be.close()


def test_closed_gpu_backend_refuses_fallback():
    be = GpuBackend(runtime=EmulatedRuntime(fail_after=0), fallback=CpuBackend(workers=1))
    be.close()
    with pytest.raises(RuntimeError, match="closed"):
        be.fallback


def test_private_key_records_are_wiped_after_use(key1024, inline_backend):
    pk, sk = key1024
    uploads = []

    class Recording(EmulatedRuntime):
        def upload(self, host):
            dev = super().upload(host)
            uploads.append(dev)
            return dev

    gpu = GpuBackend(runtime=Recording(), fallback=inline_backend)
    cs = gpu.raw_encrypt(pk, [5, 6], private_key=sk)
    assert gpu.raw_decrypt(sk, cs) == [5, 6]
    from accel.gpu.limbs import crt_rec_size, key_class

    records = [u for u in uploads if u.data.ndim == 1 and len(u.data) == crt_rec_size(key_class(pk, sk))]
    assert len(records) == 2 and all(not r.data.any() for r in records)
