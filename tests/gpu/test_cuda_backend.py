"""The GPU backend on a real CUDA device, differential against the CPU backend (gmpy2).

Run on a GPU machine: ``pytest -m gpu tests/gpu``. Every op at 1024, 2048 and 3072-bit keys and
batch sizes 1, 7, 1000 and 100000. Deterministic ops (decrypt, add, add_plain, mul, sum, matvec)
must match the CPU bit for bit; randomised ones (encrypt paths, rerandomise) must decrypt right
(and match the CPU bit for bit given the same injected randomness on a sample). Large batches are
checked on a random sample of indices on the CPU plus a full GPU round trip.
"""
import random
import secrets

import numpy as np
import pytest

from accel import generate_keypair
from accel.backends.gpu import DeviceFallbackWarning
from accel.djn import DjnKey
from accel.packing import limbs_to_ints

pytestmark = pytest.mark.gpu

_KEYS = {}


def keys(bits):
    if bits not in _KEYS:
        _KEYS[bits] = generate_keypair(bits)
    return _KEYS[bits]


def plaintexts(n, count):
    edges = [0, 1, 2, n - 1, n - 2, n // 2, n // 3 - 1]
    return (edges + [secrets.randbelow(n) for _ in range(max(0, count - len(edges)))])[:count]


def sample(count, k=64):
    return sorted(random.sample(range(count), min(k, count)))


@pytest.mark.parametrize("batch", [1, 7, 1000, 100000])
@pytest.mark.parametrize("bits", [1024, 2048, 3072])
def test_every_op_against_the_cpu(gpu, cpu, bits, batch):
    if bits == 3072 and batch == 100000:
        batch = 20000  # the CPU side of the sample checks bounds this cell's run time
    pk, sk = keys(bits)
    n, cw = pk.n, pk.ciphertext_width
    ms = plaintexts(n, batch)
    idx = sample(batch)
    sub = [ms[i] for i in idx]

    cs = gpu.raw_encrypt(pk, ms)
    assert gpu.raw_decrypt(sk, cs) == ms
    assert cpu.raw_decrypt(sk, [cs[i] for i in idx]) == sub
    assert len(set(cs)) == batch
    for kwargs in ({"private_key": sk}, {"djn": DjnKey.generate(pk)}):
        out = gpu.raw_encrypt(pk, ms, **kwargs)
        assert gpu.raw_decrypt(sk, out) == ms
        assert cpu.raw_decrypt(sk, [out[i] for i in idx]) == sub
    # same randomness, same ciphertexts (sampled prefix keeps the CPU side short)
    head = ms[:16]
    for kwargs in ({}, {"private_key": sk}):
        assert gpu.raw_encrypt(pk, head, rng=random.Random(9), **kwargs) == \
            cpu.raw_encrypt(pk, head, rng=random.Random(9), **kwargs)

    cs2 = cpu.raw_encrypt(pk, [ms[i] for i in idx], private_key=sk)
    c_sub = [cs[i] for i in idx]
    assert gpu.raw_decrypt(sk, c_sub) == cpu.raw_decrypt(sk, c_sub)
    assert gpu.raw_add(pk, c_sub, cs2) == cpu.raw_add(pk, c_sub, cs2)
    assert gpu.raw_add_plain(pk, c_sub, sub) == cpu.raw_add_plain(pk, c_sub, sub)
    ks = [secrets.randbits(64) - (1 << 63) for _ in idx]
    ks[0] = -(n - 1)
    assert gpu.raw_mul(pk, c_sub, ks) == cpu.raw_mul(pk, c_sub, ks)
    X = [[secrets.randbits(32) - (1 << 31) for _ in range(4)] for _ in idx]
    assert gpu.raw_matvec(pk, c_sub, X) == cpu.raw_matvec(pk, c_sub, X)
    assert gpu.raw_sum(pk, c_sub) == cpu.raw_sum(pk, c_sub)
    rr = gpu.raw_rerandomize(pk, c_sub)
    assert cpu.raw_decrypt(sk, rr) == sub and not set(rr) & set(c_sub)

    # whole-batch homomorphic ops, checked through GPU decryption (and a CPU sample)
    s = gpu.raw_sum(pk, cs)
    assert cpu.raw_decrypt(sk, [s]) == [sum(ms) % n]
    ks_all = [secrets.randbits(64) - (1 << 63) for _ in range(batch)]
    prod = gpu.raw_mul(pk, cs, ks_all)
    assert gpu.raw_decrypt(sk, prod) == [m * k % n for m, k in zip(ms, ks_all)]
    if batch <= 1000:
        Xb = np.array([[secrets.randbits(16) - (1 << 15) for _ in range(3)] for _ in range(batch)])
        mv = gpu.raw_matvec(pk, cs, Xb)
        assert cpu.raw_decrypt(sk, mv) == [sum(m * int(Xb[i][j]) for i, m in enumerate(ms)) % n for j in range(3)]
    assert gpu.stats["cpu_fallbacks"] == 0


def test_edges_and_bad_input(gpu, cpu):
    pk, sk = keys(2048)
    n, n2 = pk.n, pk.nsquare
    assert gpu.raw_encrypt(pk, []) == [] and gpu.raw_sum(pk, []) == 1
    with pytest.raises(ValueError, match=r"plaintext\[1\]"):
        gpu.raw_encrypt(pk, [1, n])
    with pytest.raises(ValueError, match=r"ciphertext\[0\]"):
        gpu.raw_decrypt(sk, [n2])
    with pytest.raises(ValueError, match="invertible"):
        gpu.raw_mul(pk, [pk.n], [-1])
    assert gpu.raw_mul(pk, [pk.n], [1]) == cpu.raw_mul(pk, [pk.n], [1])


def test_device_resident_chain(gpu):
    import cupy

    pk, sk = keys(2048)
    ms = plaintexts(pk.n, 5000)
    m_dev = gpu.to_device(ms, pk.plaintext_width)
    c = gpu.raw_encrypt(pk, m_dev)
    c = gpu.raw_add(pk, c, gpu.raw_encrypt(pk, m_dev, djn=DjnKey.generate(pk)))
    X = np.array([[secrets.randbits(8) for _ in range(4)] for _ in ms])
    mv = gpu.raw_matvec(pk, c, X)
    out = gpu.raw_decrypt(sk, mv)
    assert isinstance(out, cupy.ndarray)
    assert limbs_to_ints(gpu.to_host(out)) == [sum(2 * m * int(X[i][j]) for i, m in enumerate(ms)) % pk.n
                                               for j in range(4)]


def test_out_of_memory_falls_back_to_the_cpu(cpu):
    import cupy

    from accel.backends.gpu import GpuBackend

    pk, sk = keys(1024)
    ms = plaintexts(pk.n, 2000)
    be = GpuBackend(fallback=cpu)
    pool = cupy.get_default_memory_pool()
    old = pool.get_limit()
    pool.free_all_blocks()
    pool.set_limit(size=64 * 1024)  # far below what the batch needs: a real CuPy OutOfMemoryError
    try:
        with pytest.warns(DeviceFallbackWarning):
            cs = be.raw_encrypt(pk, ms)
    finally:
        pool.set_limit(size=old)
    assert be.stats["cpu_fallbacks"] >= 1
    assert be.raw_decrypt(sk, cs) == ms


def test_sanitizer_smoke(gpu):
    """Small run of every kernel family; scripts/gpu_checks.sh runs it under compute-sanitizer."""
    pk, sk = keys(1024)
    ms = plaintexts(pk.n, 33)
    cs = gpu.raw_encrypt(pk, ms)
    cs = gpu.raw_add(pk, cs, gpu.raw_encrypt(pk, ms, private_key=sk))
    cs = gpu.raw_add_plain(pk, cs, ms)
    cs = gpu.raw_mul(pk, cs, [-1] * 33)
    assert gpu.raw_decrypt(sk, cs) == [(-3 * m) % pk.n for m in ms]
    assert gpu.raw_decrypt(sk, gpu.raw_encrypt(pk, ms, djn=DjnKey.generate(pk))) == ms
    assert gpu.raw_decrypt(sk, [gpu.raw_sum(pk, cs)]) == [(-3 * sum(ms)) % pk.n]
    X = [[1, -1]] * 33
    assert gpu.raw_decrypt(sk, gpu.raw_matvec(pk, cs, X)) == [(-3 * sum(ms)) % pk.n, (3 * sum(ms)) % pk.n]
    assert gpu.powmod([3, 5], [-1, 7], 1000003) == [pow(3, -1, 1000003), pow(5, 7, 1000003)]
