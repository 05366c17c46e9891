"""CRT decryption on the cooperative core (kernels/decrypt_coop.cu): secret exponents p-1, q-1 by
masked fixed windows, L_u's exact division and Garner's product as low-half products, run by the
lockstep emulator through GpuBackend(cooperative=True) and checked against the CPU backend (gmpy2)
and the one-thread kernel at every key class, with ciphertext edges and range errors."""
import secrets

import gmpy2
import pytest

from accel.backends.gpu import GpuBackend
from accel.gpu.build import COOP_TPI

from .conftest import keypair, recording_runtime


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_decryption_matches_the_cpu_at_every_key_class(bits, coop, inline_backend):
    gpu, launched = coop
    pk, sk = keypair(bits)
    n, n2 = pk.n, pk.nsquare
    ms = [0, 1, n - 1, secrets.randbelow(n)]
    cs = inline_backend.raw_encrypt(pk, ms)
    # any unit below n^2 decrypts (not only encryptions): 1, n^2 - 1, n + 1 (= g), random ones
    cs += [1, n2 - 1, n + 1, secrets.randbelow(n2 - 2) + 2]
    if bits >= 3072:  # the emulator is slow at the large classes
        cs = cs[:2] + cs[5:7]
    got = gpu.raw_decrypt(sk, cs)
    assert got == inline_backend.raw_decrypt(sk, cs)
    lp = -(-bits // 1024) * 32
    assert launched == [(f"paillier_decrypt_coop_{lp}", len(cs) * COOP_TPI[lp])]
    assert gpu.stats["cpu_fallbacks"] == 0


def test_odd_batches_and_the_one_thread_kernel_agree(coop, inline_backend):
    gpu, launched = coop
    pk, sk = keypair(1024)
    one = GpuBackend(runtime=recording_runtime(), fallback=inline_backend)
    for count in (1, 9, 23):  # 8 groups per block at 1024 bits: partial blocks
        ms = [secrets.randbelow(pk.n) for _ in range(count)]
        cs = inline_backend.raw_encrypt(pk, ms)
        assert gpu.raw_decrypt(sk, cs) == ms == one.raw_decrypt(sk, cs)
    one.close()


def test_lambda_form_against_gmpy2(coop):
    """Independent of the CPU backend: m = L(c^lambda mod n^2) mu mod n."""
    gpu, _ = coop
    pk, sk = keypair(2048)
    n, n2 = pk.n, pk.nsquare
    p, q = int(sk.p), int(sk.q)
    lam = (p - 1) * (q - 1) // int(gmpy2.gcd(p - 1, q - 1))
    mu = int(gmpy2.invert((pow(n + 1, lam, n2) - 1) // n, n))
    cs = [secrets.randbelow(n2) for _ in range(3)]
    cs = [c for c in cs if gmpy2.gcd(c, n) == 1]
    assert gpu.raw_decrypt(sk, cs) == [(pow(c, lam, n2) - 1) // n * mu % n for c in cs]


def test_out_of_range_ciphertexts_name_the_lowest_failing_element(coop):
    gpu, _ = coop
    pk, sk = keypair(1024)
    with pytest.raises(ValueError, match=r"ciphertext\[1\]"):
        gpu.raw_decrypt(sk, [5, 0, 7])
    with pytest.raises(ValueError, match=r"ciphertext\[2\]"):
        gpu.raw_decrypt(sk, [5, 7, pk.nsquare, 0])
