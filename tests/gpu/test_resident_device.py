"""Device-resident ciphertexts in Montgomery form on a real device (``pytest -m gpu tests/gpu``):
kernels/resident_coop.cu against the normal-form kernels and gmpy2, with batches that leave
groups idle in a warp and batches larger than one grid pass, and a chain that never leaves the
device between its two conversions."""
import functools
import random
import secrets

import gmpy2
import pytest

from accel import generate_keypair
from accel.backends.gpu import MontgomeryArray
from accel.gpu.resident import montgomery_radix
from accel.packing import limbs_to_ints

pytestmark = pytest.mark.gpu


@functools.lru_cache(maxsize=None)
def keypair(bits):
    return generate_keypair(bits)


@pytest.fixture(scope="module")
def gpu(cpu):
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(fallback=cpu)  # the default kernels; the Montgomery form is its own opt-in
    yield be
    be.close()


def ints(gpu, x):
    return limbs_to_ints(gpu.to_host(x))


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
@pytest.mark.parametrize("batch", [1, 33, 5000])
def test_resident_kernels_on_device(gpu, bits, batch):
    pk, _ = keypair(bits)
    n, n2, cw = pk.n, pk.nsquare, pk.ciphertext_width
    a = ([1, n2 - 1] + [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)])[:batch]
    b = ([n2 - 1, 2] + [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)])[:batch]
    ks = ([0, 1, n - 1] + [secrets.randbits(64) for _ in range(batch)])[:batch]
    ms = ([0, n - 1] + [secrets.randbelow(n) for _ in range(batch)])[:batch]
    A, B = gpu.to_device(a, cw, montgomery=pk), gpu.to_device(b, cw, montgomery=pk)
    assert isinstance(A, MontgomeryArray)
    R = montgomery_radix(pk)
    idx = sorted(random.sample(range(batch), min(batch, 32)))
    raw = limbs_to_ints(gpu.runtimes[0].download(A.data))
    assert [raw[i] for i in idx] == [a[i] * R % n2 for i in idx]
    a_dev, b_dev = gpu.to_device(a, cw), gpu.to_device(b, cw)
    assert ints(gpu, gpu.raw_add(pk, A, B)) == limbs_to_ints(gpu.to_host(gpu.raw_add(pk, a_dev, b_dev)))
    want = 1
    for x in a:
        want = want * x % n2
    assert ints(gpu, gpu.raw_sum(pk, A)) == [want]
    got = ints(gpu, gpu.raw_mul(pk, A, ks))
    assert got == limbs_to_ints(gpu.to_host(gpu.raw_mul(pk, a_dev, ks)))
    assert [got[i] for i in idx] == [int(gmpy2.powmod(a[i], ks[i], n2)) for i in idx]
    got = ints(gpu, gpu.raw_add_plain(pk, A, ms))
    assert [got[i] for i in idx] == [a[i] * (1 + ms[i] * n) % n2 for i in idx]
    got = ints(gpu, gpu.raw_rerandomize(pk, A, rng=random.Random(3)))
    assert got == limbs_to_ints(gpu.to_host(gpu.raw_rerandomize(pk, a_dev, rng=random.Random(3))))
    assert gpu.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [2048])
def test_a_resident_chain_decrypts_right(gpu, cpu, bits):
    pk, sk = keypair(bits)
    ms = [secrets.randbelow(1 << 40) for _ in range(4097)]
    x = gpu.to_montgomery(pk, gpu.raw_encrypt(pk, gpu.to_device(ms, pk.plaintext_width)))
    acc = x
    for _ in range(5):
        acc = gpu.raw_add(pk, acc, x)
    acc = gpu.raw_add_plain(pk, gpu.raw_mul(pk, acc, [2] * len(ms)), ms)
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, acc))) == [13 * m % pk.n for m in ms]
    total = gpu.raw_sum(pk, acc)
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, total))) == [13 * sum(ms) % pk.n]
    assert gpu.stats["cpu_fallbacks"] == 0
