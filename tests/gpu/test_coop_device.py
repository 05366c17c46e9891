"""The cooperative kernels on a real device (``pytest -m gpu tests/gpu``): bit-exact against gmpy2
and against the one-thread kernels, at every modulus class, with batches that leave groups idle
in a warp and batches larger than one grid pass."""
import functools
import random
import secrets

import gmpy2
import pytest

from accel import generate_keypair
from accel.gpu.build import MOD_CLASSES

pytestmark = pytest.mark.gpu


@functools.lru_cache(maxsize=None)
def keypair(bits):
    """One key per size for the whole module (4096-bit key generation takes seconds)."""
    return generate_keypair(bits)


@pytest.fixture(scope="module")
def coop(cpu):
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(fallback=cpu, cooperative=True)
    yield be
    be.close()


@pytest.fixture(scope="module")
def one_thread(cpu):
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(fallback=cpu, cooperative=False)
    yield be
    be.close()


@pytest.mark.parametrize("L", MOD_CLASSES)
@pytest.mark.parametrize("batch", [1, 5, 3000])
def test_powmod_coop_on_device(coop, one_thread, L, batch):
    m = secrets.randbits(32 * L) | (1 << (32 * L - 1)) | 1
    bases = [0, 1, m - 1] + [secrets.randbelow(m) for _ in range(batch)]
    exps = [(1 << 256) - 1, 0, 1] + [secrets.randbits(256) for _ in range(batch)]
    bases, exps = bases[:batch], exps[:batch]
    got = coop.powmod(bases, exps, m)
    idx = sorted(random.sample(range(batch), min(batch, 32)))
    assert [got[i] for i in idx] == [int(gmpy2.powmod(bases[i], exps[i], m)) for i in idx]
    assert got == one_thread.powmod(bases, exps, m)
    assert coop.stats["cpu_fallbacks"] == 0


def test_encryption_coop_on_device_4096(coop, one_thread, cpu):
    pk, sk = generate_keypair(4096)
    ms = [0, 1, pk.n - 1] + [secrets.randbelow(pk.n) for _ in range(61)]
    a = coop.raw_encrypt(pk, ms, rng=random.Random(3))
    assert a == one_thread.raw_encrypt(pk, ms, rng=random.Random(3))
    assert coop.raw_encrypt(pk, ms[:4], rng=random.Random(5)) == cpu.raw_encrypt(pk, ms[:4], rng=random.Random(5))
    assert coop.raw_decrypt(sk, a) == ms
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
@pytest.mark.parametrize("batch", [1, 7, 5000])
def test_djn_coop_on_device(coop, one_thread, cpu, bits, batch):
    """djn_table_coop / djn_encrypt_coop (8-bit comb, default exponent length) against the
    one-thread DJN kernel and the CPU backend with the same randomness, and hs^r against gmpy2."""
    from accel.djn import DjnKey

    pk, sk = keypair(bits)
    djn = DjnKey.generate(pk)
    ms = ([0, 1, pk.n - 1] + [secrets.randbelow(pk.n) for _ in range(batch)])[:batch]
    a = coop.raw_encrypt(pk, ms, djn=djn, rng=random.Random(7))
    assert a == one_thread.raw_encrypt(pk, ms, djn=djn, rng=random.Random(7))
    k = min(batch, 16)
    assert a[:k] == cpu.raw_encrypt(pk, ms[:k], djn=djn, rng=random.Random(7))
    assert cpu.raw_decrypt(sk, a[:k]) == ms[:k]
    rs = djn.draw_exponents(3, random.Random(9))
    obf = coop.obfuscators(pk, 3, djn=djn, rng=random.Random(9))
    w = pk.ciphertext_width
    assert [int.from_bytes(obf[i * w:(i + 1) * w], "little") for i in range(3)] == [
        int(gmpy2.powmod(djn.hs, r, pk.nsquare)) for r in rs]
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
@pytest.mark.parametrize("batch", [1, 7, 5000])
def test_decrypt_coop_on_device(coop, one_thread, cpu, bits, batch):
    """paillier_decrypt_coop against the one-thread kernel and gmpy2 (the CPU backend), with the
    edge ciphertexts 1 and n^2 - 1 and a batch larger than one grid pass at small keys."""
    pk, sk = keypair(bits)
    ms = ([0, 1, pk.n - 1] + [secrets.randbelow(pk.n) for _ in range(batch)])[:batch]
    cs = coop.raw_encrypt(pk, ms)  # the device encrypts: the CPU would take minutes at 4096 bits
    assert coop.raw_decrypt(sk, cs) == ms == cpu.raw_decrypt(sk, cs[:8]) + ms[8:]
    edges = [1, pk.nsquare - 1, secrets.randbelow(pk.nsquare - 2) + 2]
    assert coop.raw_decrypt(sk, edges) == one_thread.raw_decrypt(sk, edges) == cpu.raw_decrypt(sk, edges)
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
@pytest.mark.parametrize("batch", [1, 33, 5000])
def test_add_and_sum_coop_on_device(coop, one_thread, bits, batch):
    """he_add_coop and he_product_coop (device-resident tree levels) against gmpy2 products and the
    one-thread kernels."""
    pk, _ = keypair(bits)
    n2 = pk.nsquare
    a = [1, n2 - 1] + [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)]
    b = [n2 - 1, 2] + [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)]
    a, b = a[:batch], b[:batch]
    got = coop.raw_add(pk, a, b)
    assert got == one_thread.raw_add(pk, a, b)
    idx = sorted(random.sample(range(batch), min(batch, 32)))
    assert [got[i] for i in idx] == [a[i] * b[i] % n2 for i in idx]
    want = 1
    for c in a:
        want = want * c % n2
    assert coop.raw_sum(pk, a) == want == one_thread.raw_sum(pk, a)
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
@pytest.mark.parametrize("batch", [1, 33, 5000])
def test_mul_scalar_coop_on_device(coop, one_thread, bits, batch):
    """he_mul_scalar_coop (non-negative 64-bit and full-width scalars) against gmpy2 and the
    one-thread kernel."""
    pk, _ = keypair(bits)
    n2 = pk.nsquare
    cs = [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)]
    ks = ([0, 1, pk.n - 1] + [secrets.randbits(64) for _ in range(batch)])[:batch]
    got = coop.raw_mul(pk, cs, ks)
    assert got == one_thread.raw_mul(pk, cs, ks)
    idx = sorted(random.sample(range(batch), min(batch, 32)))
    assert [got[i] for i in idx] == [int(gmpy2.powmod(cs[i], ks[i], n2)) for i in idx]
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 4096])
@pytest.mark.parametrize("batch,negative", [(1, "all"), (33, "mixed"), (5000, "mixed"), (5000, "all"),
                                            (4097, "none")])
def test_mul_negative_scalars_coop_on_device(coop, one_thread, bits, batch, negative):
    """he_mul_scalar_coop on |k| and the batch inversion of the negative results (inverse_coop.cu:
    5,000 negatives are four prefix levels) against the one-thread kernel (a mod_inverse per
    element) and gmpy2; scalars 0, +-1, -(n - 1) and signed 64-bit ones."""
    pk, _ = keypair(bits)
    n, n2 = pk.n, pk.nsquare
    cs = [1, n2 - 1] + [secrets.randbelow(n2 - 1) + 1 for _ in range(batch)]
    cs = cs[:batch]
    sign = {"all": lambda i: -1, "mixed": lambda i: (-1) ** i, "none": lambda i: 1}[negative]
    ks = [sign(i) * k for i, k in enumerate(([1, n - 1, 0] + [secrets.randbits(64) + 1 for _ in range(batch)])[:batch])]
    got = coop.raw_mul(pk, cs, ks)
    assert got == one_thread.raw_mul(pk, cs, ks)
    idx = sorted(random.sample(range(batch), min(batch, 32)))
    assert [got[i] for i in idx] == [int(gmpy2.powmod(cs[i], ks[i], n2)) for i in idx]
    assert coop.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048])
@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 33), (300, 40)])
def test_matvec_negative_entries_coop_on_device(coop, one_thread, bits, rows, cols):
    """The cooperative matvec path (negative column products inverted together) against the
    one-thread matvec_finish (one inversion per column) and gmpy2 on sampled columns."""
    pk, _ = keypair(bits)
    n2 = pk.nsquare
    cs = [secrets.randbelow(n2 - 1) + 1 for _ in range(rows)]
    X = [[secrets.randbelow(1 << 32) - (1 << 31) for _ in range(cols)] for _ in range(rows)]
    X[0][0] = -1
    got = coop.raw_matvec(pk, cs, X)
    assert got == one_thread.raw_matvec(pk, cs, X)
    for j in sorted(random.sample(range(cols), min(cols, 3))):
        want = 1
        for i in range(rows):
            want = want * int(gmpy2.powmod(cs[i], X[i][j], n2)) % n2
        assert got[j] == want
    assert coop.stats["cpu_fallbacks"] == 0
