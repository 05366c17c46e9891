"""Device-resident ciphertexts in Montgomery form (kernels/resident_coop.cu, accel.gpu.resident):
every kernel through GpuBackend on the lockstep emulator, bit-exact against gmpy2 (and the CPU
backend, with the same randomness) at every key class, with edges (1, n^2 - 1, 0 and n - 1 as
scalars and plaintexts), odd and empty batches; the scheduling (one multiplication kernel per
add, conversions once per chain) read from the recording runtime; the form and the key checked
at every entry; the CPU rerun on a device failure."""
import random
import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel import generate_keypair
from accel.backends.base import KeyMismatchError, draw_units
from accel.backends.gpu import DeviceFallbackWarning, GpuBackend, MontgomeryArray
from accel.gpu.build import COOP_TPI
from accel.gpu.emulator import EmulatedRuntime
from accel.gpu.resident import from_montgomery_limbs, montgomery_radix, to_montgomery_limbs
from accel.packing import ints_to_limbs, limbs_to_ints

from .conftest import keypair, recording_runtime


@pytest.fixture
def resident(inline_backend):
    """A GpuBackend with the DEFAULT (one-thread) kernels: the Montgomery form is its own opt-in
    and runs on the cooperative resident kernels whatever ``cooperative`` says."""
    rt = recording_runtime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend)
    yield gpu, rt
    gpu.close()


def units(n2, count):
    """Ciphertext-shaped operands: edges 1, n^2 - 1, 2, then random numbers in [1, n^2)."""
    return ([1, n2 - 1, 2] + [secrets.randbelow(n2 - 1) + 1 for _ in range(count)])[:count]


def ints(gpu, x):
    """The ciphertexts of a device array (a MontgomeryArray is converted out by to_host)."""
    return limbs_to_ints(gpu.to_host(x))


def lp_of(bits):
    return -(-bits // 1024) * 32


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_every_resident_kernel_matches_gmpy2_at_every_key_class(bits, resident, inline_backend):
    gpu, rt = resident
    pk, sk = keypair(bits)
    n, n2, cw = pk.n, pk.nsquare, pk.ciphertext_width
    R = montgomery_radix(pk)
    assert R == 1 << (32 * 2 * lp_of(bits))
    count = 5 if bits <= 2048 else 3  # odd batches; the emulator is slow at the large classes
    a, b = units(n2, count), units(n2, count)[::-1]
    A, B = gpu.to_device(a, cw, montgomery=pk), gpu.to_device(b, cw, montgomery=pk)
    assert isinstance(A, MontgomeryArray) and A.public_key == pk and A.shape == (count, cw // 4)
    assert limbs_to_ints(rt.download(A.data)) == [x * R % n2 for x in a]          # c R on the device
    assert ints(gpu, A) == a                                                      # and out again
    assert ints(gpu, gpu.raw_add(pk, A, B)) == [x * y % n2 for x, y in zip(a, b)]
    want = 1
    for x in a:
        want = want * x % n2
    assert ints(gpu, gpu.raw_sum(pk, A)) == [want]
    ks = [0, 1, n - 1, secrets.randbits(64), secrets.randbelow(n)][:count]
    assert ints(gpu, gpu.raw_mul(pk, A, ks)) == [int(gmpy2.powmod(x, k, n2)) for x, k in zip(a, ks)]
    ms = [0, 1, n - 1, secrets.randbelow(n), 7][:count]
    assert ints(gpu, gpu.raw_add_plain(pk, A, ms)) == [x * (1 + m * n) % n2 for x, m in zip(a, ms)]
    got = gpu.raw_rerandomize(pk, A, rng=random.Random(11))
    assert ints(gpu, got) == inline_backend.raw_rerandomize(pk, a, rng=random.Random(11))
    cs = inline_backend.raw_encrypt(pk, ms)
    C = gpu.to_device(cs, cw, montgomery=pk)
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, C))) == ms
    lp = lp_of(bits)
    resident_kernels = {k for k, _ in rt.launched if "_mont_" in k}
    assert resident_kernels == {f"he_{op}_mont_coop_{lp}" for op in
                                ("to", "from", "add", "product", "mul_scalar", "add_plain", "rerandomize")}
    assert all(t % COOP_TPI[2 * lp] == 0 for k, t in rt.launched if "_mont_" in k)
    assert gpu.stats["cpu_fallbacks"] == 0


def test_a_chain_converts_once_and_adds_in_one_kernel_each(resident, inline_backend):
    """encrypt -> into the form -> 3 adds, a scalar product, a sum -> decrypt: every op is one
    launch of its resident kernel, the conversions happen once each way."""
    gpu, rt = resident
    pk, sk = keypair(1024)
    ms = [secrets.randbelow(1 << 40) for _ in range(7)]
    dev = gpu.raw_encrypt(pk, gpu.to_device(ms, pk.plaintext_width))
    rt.launched.clear()
    x = gpu.to_montgomery(pk, dev)
    acc = x
    for _ in range(3):
        acc = gpu.raw_add(pk, acc, x)                    # 4 m
    acc = gpu.raw_mul(pk, acc, [3] * 7)                  # 12 m
    total = gpu.raw_sum(pk, acc)                         # 12 sum(m)
    got = limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, total)))
    assert got == [12 * sum(ms) % pk.n]
    assert [k for k, _ in rt.launched] == [
        "he_to_mont_coop_32", "he_add_mont_coop_32", "he_add_mont_coop_32", "he_add_mont_coop_32",
        "he_mul_scalar_mont_coop_32", "he_product_mont_coop_32", "he_from_mont_coop_32", "paillier_decrypt_32"]
    assert gpu.stats["cpu_fallbacks"] == 0


@pytest.mark.parametrize("count", [1, 31, 32, 33, 2 * 32 * 32 + 1])
def test_sum_tree_levels_keep_the_form(count, resident):
    """One group, a full and a partial one, and three tree levels (32 inputs per group), with
    no correction: the product of Montgomery forms is the Montgomery form of the product."""
    gpu, rt = resident
    pk, _ = keypair(256 if count > 100 else 1024)
    n2 = pk.nsquare
    cs = units(n2, count)
    want = 1
    for c in cs:
        want = want * c % n2
    x = gpu.to_device(cs, pk.ciphertext_width, montgomery=pk)
    rt.launched.clear()
    s = gpu.raw_sum(pk, x)
    assert isinstance(s, MontgomeryArray) and s.shape == (1, pk.ciphertext_width // 4)
    levels = 1 if count <= 32 else 2 if count <= 1024 else 3
    assert [k for k, _ in rt.launched] == ["he_product_mont_coop_32"] * levels
    assert ints(gpu, s) == [want]


def test_empty_batches(resident):
    gpu, rt = resident
    pk, sk = keypair(1024)
    cw = pk.ciphertext_width
    e = gpu.to_device([], cw, montgomery=pk)
    assert isinstance(e, MontgomeryArray) and e.shape == (0, cw // 4)
    assert gpu.raw_add(pk, e, e).shape == (0, cw // 4)
    assert gpu.raw_mul(pk, e, []).shape == (0, cw // 4)
    assert gpu.raw_add_plain(pk, e, []).shape == (0, cw // 4)
    s = gpu.raw_sum(pk, e)  # E(0) = 1, in Montgomery form R mod n^2
    assert limbs_to_ints(rt.download(s.data)) == [montgomery_radix(pk) % pk.nsquare] and ints(gpu, s) == [1]
    assert gpu.to_host(e).shape == (0, cw // 4)
    assert gpu.to_host(gpu.raw_decrypt(sk, e)).shape == (0, pk.plaintext_width // 4)
    assert gpu.stats["cpu_fallbacks"] == 0


def test_negative_scalars_and_matrices_go_through_the_normal_form(resident, inline_backend):
    """The inverting kernels read normal form: converted out, run, converted back in."""
    gpu, rt = resident
    pk, sk = keypair(1024)
    n = pk.n
    ms = [7, n - 3, 11]
    x = gpu.to_device(inline_backend.raw_encrypt(pk, ms), pk.ciphertext_width, montgomery=pk)
    rt.launched.clear()
    got = gpu.raw_mul(pk, x, [-2, 5, 0])
    assert isinstance(got, MontgomeryArray)
    assert inline_backend.raw_decrypt(sk, ints(gpu, got)) == [(-14) % n, 5 * (n - 3) % n, 0]
    assert [k for k, _ in rt.launched][:3] == ["he_from_mont_coop_32", "he_mul_scalar_32", "he_to_mont_coop_32"]
    mv = gpu.raw_matvec(pk, x, [[1, -1], [2, 0], [3, 4]])
    assert isinstance(mv, MontgomeryArray) and mv.shape == (2, pk.ciphertext_width // 4)
    assert inline_backend.raw_decrypt(sk, ints(gpu, mv)) == [(7 + 2 * (n - 3) + 33) % n, (-7 + 44) % n]
    assert gpu.stats["cpu_fallbacks"] == 0


def test_rerandomize_with_given_or_crt_obfuscators_keeps_the_form(resident, inline_backend):
    gpu, _ = resident
    pk, sk = keypair(1024)
    ms = [0, 1, pk.n - 1]
    cs = inline_backend.raw_encrypt(pk, ms)
    x = gpu.to_device(cs, pk.ciphertext_width, montgomery=pk)
    crt = gpu.raw_rerandomize(pk, x, private_key=sk, rng=random.Random(5))
    assert ints(gpu, crt) == inline_backend.raw_rerandomize(pk, cs, private_key=sk, rng=random.Random(5))
    obf = inline_backend.obfuscators(pk, 3)  # r^n blobs, as a pool's take() gives them

    class Given:
        def take(self, count):
            assert count == 3
            return obf

    got = gpu.raw_rerandomize(pk, x, obfuscators=Given())
    w = pk.ciphertext_width
    r = [int.from_bytes(obf[i * w:(i + 1) * w], "little") for i in range(3)]
    assert ints(gpu, got) == [c * o % pk.nsquare for c, o in zip(cs, r)]
    assert inline_backend.raw_decrypt(sk, ints(gpu, got)) == ms
    assert gpu.stats["cpu_fallbacks"] == 0


def test_the_form_and_the_key_are_checked(resident):
    gpu, _ = resident
    pk, sk = keypair(1024)
    other, _ = keypair(256)
    cw = pk.ciphertext_width
    cs = [5, 6, 7]
    plain = gpu.to_device(cs, cw)
    mont = gpu.to_montgomery(pk, plain)
    for a, b in ((mont, plain), (plain, mont)):
        with pytest.raises(TypeError, match="one operand is in Montgomery form and another is not"):
            gpu.raw_add(pk, a, b)
    with pytest.raises(TypeError, match="both operands on the device or both on the host"):
        gpu.raw_add(pk, mont, cs)
    foreign = gpu.to_device([5, 6, 7], other.ciphertext_width, montgomery=other)
    with pytest.raises(KeyMismatchError, match="another key"):  # another key's width, too
        gpu.raw_add(pk, mont, foreign)
    same_width, _ = generate_keypair(1024)  # same ciphertext width as pk, another n
    foreign = gpu.to_device(cs, same_width.ciphertext_width, montgomery=same_width)
    assert foreign.shape == mont.shape
    with pytest.raises(KeyMismatchError, match="another key"):
        gpu.raw_add(pk, mont, foreign)
    with pytest.raises(KeyMismatchError, match="another key"):
        gpu.raw_sum(pk, foreign)
    with pytest.raises(TypeError, match="never in Montgomery form"):
        gpu.raw_encrypt(pk, mont)
    with pytest.raises(TypeError, match="only the ciphertexts"):
        gpu.raw_add_plain(pk, plain, mont)
    with pytest.raises(TypeError, match="in Montgomery form already"):
        gpu.to_montgomery(pk, mont)
    with pytest.raises(TypeError, match="takes a device array"):
        gpu.to_montgomery(pk, cs)
    with pytest.raises(TypeError, match="takes a MontgomeryArray"):
        gpu.from_montgomery(plain)
    with pytest.raises(TypeError, match="PublicKey"):
        gpu.to_device(cs, cw, montgomery=True)
    assert "5" not in repr(mont) and "1024-bit key" in repr(mont)


def test_range_errors_name_the_operand_and_index(resident):
    gpu, _ = resident
    pk, _ = keypair(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width
    with pytest.raises(ValueError, match=r"ciphertext\[1\] is out of range"):
        gpu.to_device([5, 0, 7], cw, montgomery=pk)
    with pytest.raises(ValueError, match=r"ciphertext\[2\] is out of range"):
        gpu.to_device([5, 6, n2], cw, montgomery=pk)
    good = gpu.to_device([5, 6, 7], cw, montgomery=pk)
    bad = MontgomeryArray(gpu.to_device([5, n2 + 3, 0], cw), pk)  # not made by the backend
    with pytest.raises(ValueError, match=r"ciphertext b\[1\]"):
        gpu.raw_add(pk, good, bad)
    with pytest.raises(ValueError, match=r"ciphertext a\[1\]"):
        gpu.raw_add(pk, bad, good)
    with pytest.raises(ValueError, match=r"ciphertext\[1\]"):
        gpu.raw_sum(pk, bad)
    with pytest.raises(ValueError, match=r"ciphertext\[1\]"):
        gpu.from_montgomery(bad)
    with pytest.raises(ValueError, match=r"plaintext\[2\] is out of range"):
        gpu.raw_add_plain(pk, good, [1, 2, pk.n])
    assert gpu.stats["cpu_fallbacks"] == 0


def test_a_device_failure_reruns_on_the_cpu_and_keeps_the_form(inline_backend):
    rt = EmulatedRuntime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend)
    pk, sk = keypair(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width
    a, b = units(n2, 3), units(n2, 3)[::-1]
    A, B = gpu.to_device(a, cw, montgomery=pk), gpu.to_device(b, cw, montgomery=pk)
    rt.fail_after = rt.launches  # every launch from here on fails
    R = montgomery_radix(pk)
    with pytest.warns(DeviceFallbackWarning):
        s = gpu.raw_add(pk, A, B)
    assert limbs_to_ints(rt.download(s.data)) == [x * y * R % n2 for x, y in zip(a, b)]
    with pytest.warns(DeviceFallbackWarning):
        t = gpu.raw_sum(pk, A)
    want = 1
    for x in a:
        want = want * x % n2
    assert limbs_to_ints(rt.download(t.data)) == [want * R % n2]
    with pytest.warns(DeviceFallbackWarning):
        assert ints(gpu, gpu.raw_mul(pk, A, [2, 0, 1])) == [pow(x, k, n2) for x, k in zip(a, [2, 0, 1])]
    with pytest.warns(DeviceFallbackWarning):
        c = gpu.to_device(inline_backend.raw_encrypt(pk, [4, 5]), cw, montgomery=pk)
    with pytest.warns(DeviceFallbackWarning):
        assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, c))) == [4, 5]
    with pytest.warns(DeviceFallbackWarning), pytest.raises(ValueError, match=r"ciphertext\[0\]"):
        gpu.raw_sum(pk, MontgomeryArray(gpu.to_device([0], cw), pk))
    assert gpu.stats["cpu_fallbacks"] >= 6
    gpu.close()


def test_the_host_conversions_are_inverse():
    pk, _ = keypair(1024)
    n2 = pk.nsquare
    xs = units(n2, 6)
    rows = ints_to_limbs(xs, pk.ciphertext_width // 4)
    m = to_montgomery_limbs(pk, rows)
    assert limbs_to_ints(m) == [x * montgomery_radix(pk) % n2 for x in xs]
    assert np.array_equal(from_montgomery_limbs(pk, m), rows)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_chains_match_gmpy2(resident, data):
    """Random chains (adds, scalars, add_plain, rerandomisation) on random batches of up to 40
    (several blocks of 16 groups) stay the Montgomery form of gmpy2's normal-form results."""
    gpu, _ = resident
    pk, _ = keypair(256)
    n, n2, cw = pk.n, pk.nsquare, pk.ciphertext_width
    count = data.draw(st.integers(min_value=1, max_value=40), label="count")
    unit = st.integers(min_value=1, max_value=n2 - 1)
    want = data.draw(st.lists(unit, min_size=count, max_size=count), label="cs")
    x = gpu.to_device(want, cw, montgomery=pk)
    for step in data.draw(st.lists(st.sampled_from(["add", "mul", "add_plain", "rerandomize"]), max_size=4),
                          label="ops"):
        if step == "add":
            other = data.draw(st.lists(unit, min_size=count, max_size=count), label="other")
            x = gpu.raw_add(pk, x, gpu.to_device(other, cw, montgomery=pk))
            want = [a * b % n2 for a, b in zip(want, other)]
        elif step == "mul":
            ks = data.draw(st.lists(st.integers(min_value=0, max_value=n - 1), min_size=count, max_size=count))
            x = gpu.raw_mul(pk, x, ks)
            want = [pow(a, k, n2) for a, k in zip(want, ks)]
        elif step == "add_plain":
            ms = data.draw(st.lists(st.integers(min_value=0, max_value=n - 1), min_size=count, max_size=count))
            x = gpu.raw_add_plain(pk, x, ms)
            want = [a * (1 + m * n) % n2 for a, m in zip(want, ms)]
        else:
            seed = data.draw(st.integers(min_value=0, max_value=2**32), label="seed")
            x = gpu.raw_rerandomize(pk, x, rng=random.Random(seed))
            pw = pk.plaintext_width
            rs = draw_units(random.Random(seed), n, count, pw)  # what the backend draws from that rng
            want = [a * pow(int.from_bytes(rs[i * pw:(i + 1) * pw], "little"), n, n2) % n2
                    for i, a in enumerate(want)]
        if 0 in want:  # non-units can multiply to 0 mod n^2, which is no ciphertext: stop the chain there
            return
    R = montgomery_radix(pk)
    assert limbs_to_ints(gpu.runtimes[0].download(x.data)) == [a * R % n2 for a in want]
    assert ints(gpu, x) == want
