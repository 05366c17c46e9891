"""Addition and sums on the cooperative core (kernels/homomorphic_coop.cu): he_add_coop (two
multiplications) and he_product_coop (the device-resident chain: one multiplication per input and
one by R^g), run by the lockstep emulator through GpuBackend(cooperative=True) and checked against
gmpy2 products and the CPU backend at every key class, with edges, tree levels and range errors."""
import secrets

import gmpy2
import pytest

from accel.backends.gpu import SUM_CHUNK
from accel.gpu.build import COOP_TPI

from .conftest import coprime_units, keypair


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_add_matches_gmpy2_at_every_key_class(bits, coop, inline_backend):
    gpu, launched = coop
    pk, sk = keypair(bits)
    n2 = pk.nsquare
    count = 5 if bits <= 2048 else 2
    a, b = coprime_units(n2, count), coprime_units(n2, count)[::-1]
    got = gpu.raw_add(pk, a, b)
    assert got == [x * y % n2 for x, y in zip(a, b)]
    ms = [0, pk.n - 1, secrets.randbelow(pk.n)][:count]
    c1, c2 = inline_backend.raw_encrypt(pk, ms), inline_backend.raw_encrypt(pk, ms[::-1])
    assert inline_backend.raw_decrypt(sk, gpu.raw_add(pk, c1, c2)) == [
        (x + y) % pk.n for x, y in zip(ms, ms[::-1])]
    lp = -(-bits // 1024) * 32
    assert {k for k, _ in launched} == {f"he_add_coop_{lp}"}
    assert all(t % COOP_TPI[2 * lp] == 0 for _, t in launched)
    assert gpu.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits,count", [(1024, 1), (1024, 31), (1024, SUM_CHUNK * 2 + 3), (2048, 40),
                                        (3072, 3), (4096, 2)])
def test_sum_is_the_product_mod_n2(bits, count, coop):
    """One group, a partial group, and more than one tree level (SUM_CHUNK inputs per group)."""
    gpu, launched = coop
    pk, _ = keypair(bits)
    n2 = pk.nsquare
    cs = coprime_units(n2, count)
    want = 1
    for c in cs:
        want = want * c % n2
    assert gpu.raw_sum(pk, cs) == want
    lp = -(-bits // 1024) * 32
    levels = 1 if count <= SUM_CHUNK else 2
    assert [k for k, _ in launched] == [f"he_product_coop_{lp}"] * levels
    assert launched[0][1] == -(-count // SUM_CHUNK) * COOP_TPI[2 * lp]


def test_range_errors_name_the_operand_and_the_lowest_index(coop):
    gpu, _ = coop
    pk, _ = keypair(1024)
    n2 = pk.nsquare
    with pytest.raises(ValueError, match=r"ciphertext a\[1\]"):
        gpu.raw_add(pk, [5, 0, 7], [5, 6, 7])
    with pytest.raises(ValueError, match=r"ciphertext b\[2\]"):
        gpu.raw_add(pk, [5, 6, 7, n2], [5, 6, n2 + 1, 7])
    with pytest.raises(ValueError, match=r"ciphertext\[3\]"):
        gpu.raw_sum(pk, [5, 6, 7, n2, 0])
    assert gpu.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_mul_by_non_negative_scalars_matches_gmpy2(bits, coop, inline_backend):
    """he_mul_scalar_coop: scalars 0, 1, 64-bit, n - 1 (the encoding of -1) and a full-width one;
    a batch with a negative scalar runs there too, its negative results inverted together
    (kernels/inverse_coop.cu; tests/test_inverse_coop.py)."""
    gpu, launched = coop
    pk, sk = keypair(bits)
    n, n2 = pk.n, pk.nsquare
    ks = [0, 1, secrets.randbits(64), n - 1, secrets.randbelow(n)]
    cs = coprime_units(n2, len(ks))
    if bits >= 3072:  # the emulator is slow at the large classes
        ks, cs = ks[:3], cs[:3]
    assert gpu.raw_mul(pk, cs, ks) == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs, ks)]
    lp = -(-bits // 1024) * 32
    assert launched == [(f"he_mul_scalar_coop_{lp}", len(cs) * COOP_TPI[2 * lp])]
    if bits == 1024:
        m = [7, n - 3]
        got = gpu.raw_mul(pk, inline_backend.raw_encrypt(pk, m), [-2, 5])
        assert inline_backend.raw_decrypt(sk, got) == [(-14) % n, 5 * (n - 3) % n]
        assert launched[-3:] == [(f"he_mul_scalar_coop_{lp}", 2 * COOP_TPI[2 * lp]),
                                 (f"he_inverse_prefix_coop_{lp}", COOP_TPI[2 * lp]),
                                 (f"he_inverse_back_coop_{lp}", COOP_TPI[2 * lp])]
        with pytest.raises(ValueError, match=r"ciphertext\[1\]"):
            gpu.raw_mul(pk, [3, n2, 0], [2, 2, 2])
    assert gpu.stats["cpu_fallbacks"] == 0
