"""Batch inversion mod n^2 by Montgomery's trick (kernels/inverse_coop.cu, Launcher.inverse), run by
the lockstep emulator: bit-exact against gmpy2 at every key class (one chunk, a partial chunk, more
than one prefix level, rows picked by index, factors), non-units named at the lowest index without a
hang, and through GpuBackend(cooperative=True): negative scalars of mul and negative matrix entries of
matvec, with the launches the backend really asks for (recording runtime)."""
import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.gpu import errors as E
from accel.gpu.build import COOP_TPI
from accel.gpu.emulator import EmulatedRuntime
from accel.gpu.launch import INVERSE_CHUNK, DeviceKey, Launcher
from accel.gpu.limbs import key_class, pub_rec
from accel.packing import ints_to_limbs, limbs_to_ints

from .conftest import coprime_units, keypair, recording_runtime


def device_key(rt, pk):
    lp = key_class(pk)
    return DeviceKey(lp, rt.upload(pub_rec(pk, lp)), pk.plaintext_width // 4, pk.ciphertext_width // 4, pk.nsquare)


def inv(x, n2):
    return int(gmpy2.invert(x, n2))


def levels_of(count):
    """Prefix levels the launcher runs for `count` elements (at least one)."""
    out = [count]
    while out[-1] > INVERSE_CHUNK:
        out.append(-(-out[-1] // INVERSE_CHUNK))
    return out


# counts: one element, one full chunk, a partial second chunk, and (1024 bits) three levels
@pytest.mark.parametrize("bits,counts", [(1024, [1, 2, INVERSE_CHUNK, INVERSE_CHUNK + 1, INVERSE_CHUNK**2 + 3]),
                                         (2048, [1, 5, INVERSE_CHUNK + 1]), (3072, [3]), (4096, [2])])
def test_inverse_matches_gmpy2_at_every_key_class(bits, counts):
    pk, _ = keypair(bits)
    n2, cw = pk.nsquare, pk.ciphertext_width // 4
    rt = recording_runtime()
    key = device_key(rt, pk)
    tpi = COOP_TPI[2 * key.lp]
    for count in counts:
        rt.launched.clear()
        xs = coprime_units(n2, count)
        dev = rt.upload(ints_to_limbs(xs, cw))
        assert Launcher().inverse(rt, key, dev) is dev
        assert limbs_to_ints(rt.download(dev)) == [inv(x, n2) for x in xs], count
        levels = levels_of(count)
        groups = [-(-n // INVERSE_CHUNK) * tpi for n in levels]
        assert rt.launched == ([(f"he_inverse_prefix_coop_{key.lp}", t) for t in groups]
                               + [(f"he_inverse_back_coop_{key.lp}", t) for t in groups[::-1]]), count


@pytest.mark.parametrize("bits", [1024, 2048])
def test_inverse_of_picked_rows_times_factors(bits):
    """Only the rows named are touched (odd positions, first and last row); factors 0, 1, n^2 - 1
    and random multiply the inverses."""
    pk, _ = keypair(bits)
    n2, cw = pk.nsquare, pk.ciphertext_width // 4
    rt = EmulatedRuntime()
    key = device_key(rt, pk)
    count = 2 * INVERSE_CHUNK + 5
    xs = coprime_units(n2, count)
    rows = [0, 1, 2, 5, 17, 18, 30, count - 1]
    fs = [0, 1, n2 - 1] + [secrets.randbelow(n2) for _ in range(count - 3)]
    want = list(xs)
    for r in rows:
        want[r] = fs[r] * inv(xs[r], n2) % n2
    dev = rt.upload(ints_to_limbs(xs, cw))
    Launcher().inverse(rt, key, dev, rows, factors=rt.upload(ints_to_limbs(fs, cw)))
    assert limbs_to_ints(rt.download(dev)) == want
    dev = rt.upload(ints_to_limbs(xs, cw))
    Launcher().inverse(rt, key, dev, [7])  # a batch of one picked row
    assert limbs_to_ints(rt.download(dev)) == xs[:7] + [inv(xs[7], n2)] + xs[8:]
    assert Launcher().inverse(rt, key, dev, []) is dev  # nothing to invert: no launch


def test_grid_stride_over_chunks_with_one_block():
    """Fewer threads than groups: each group of the one block walks several chunks."""
    pk, _ = keypair(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width // 4
    rt = EmulatedRuntime()
    key = device_key(rt, pk)
    count, chunk = 300, 3  # 100 chunks over the 128 / 16 = 8 groups of one block
    xs = coprime_units(n2, count)
    dev, prefix, totals = rt.upload(ints_to_limbs(xs, cw)), rt.empty((count, cw)), rt.empty((100, cw))
    err = rt.upload(np.array([2**64 - 1], np.uint64))
    rt.launch(f"he_inverse_prefix_coop_{key.lp}", 128,
              [prefix, totals, dev, None, np.uint64(count), np.uint64(chunk), key.record, np.int32(cw), np.int32(1),
               err])
    assert int(rt.download(err)[0]) == 2**64 - 1
    tot = limbs_to_ints(rt.download(totals))
    r = pow(2, 32 * 2 * key.lp, n2)
    for t in (0, 57, 99):
        a, b, c = xs[3 * t : 3 * t + 3]
        assert tot[t] == a * b * c * inv(r * r, n2) % n2  # two mont_muls: R^-2
    inv_totals = rt.upload(ints_to_limbs([inv(x, n2) for x in tot], cw))
    rt.launch(f"he_inverse_back_coop_{key.lp}", 128,
              [dev, None, prefix, inv_totals, None, np.uint64(count), np.uint64(chunk), key.record, np.int32(cw)])
    assert limbs_to_ints(rt.download(dev)) == [inv(x, n2) for x in xs]


def test_non_units_are_named_at_the_lowest_row_and_nothing_hangs():
    """0 and multiples of p or q are not units (no honest ciphertext is one): the top total is not
    invertible, and the launcher names the lowest such row (offset added); the input stays."""
    pk, sk = keypair(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width // 4
    rt = EmulatedRuntime()
    key = device_key(rt, pk)
    xs = coprime_units(n2, 40)
    xs[23], xs[31], xs[5] = sk.p * 3, 0, sk.q
    dev = rt.upload(ints_to_limbs(xs, cw))
    with pytest.raises(ValueError, match=r"^ciphertext\[15\] is not invertible"):
        Launcher().inverse(rt, key, dev, [0, 15, 23, 31], offset=-8)  # row 23 at offset -8
    assert limbs_to_ints(rt.download(dev)) == xs
    with pytest.raises(ValueError, match=r"^ciphertext\[5\] is not invertible"):
        Launcher().inverse(rt, key, dev)
    with pytest.raises(ValueError, match=r"^matvec column\[0\] is not invertible"):
        Launcher().inverse(rt, key, rt.upload(ints_to_limbs([0], cw)), names={E.NOT_INVERTIBLE: "matvec column"})


def test_range_check_of_the_first_level_names_the_row():
    pk, _ = keypair(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width // 4
    rt = EmulatedRuntime()
    key = device_key(rt, pk)
    xs = coprime_units(n2, 20)
    xs[12] = n2
    with pytest.raises(ValueError, match=r"^ciphertext\[12\] is out of range"):
        Launcher().inverse(rt, key, rt.upload(ints_to_limbs(xs, cw)), list(range(3, 20)), check=True)
    dev = rt.upload(ints_to_limbs(xs, cw))
    Launcher().inverse(rt, key, dev, [0, 19], check=True)  # the bad row is not picked
    assert limbs_to_ints(rt.download(dev)) == [inv(xs[0], n2)] + xs[1:19] + [inv(xs[19], n2)]


MUL_CASES = {
    "mixed": lambda n: [-3, 5, -(n - 1), 0, n - 1, -1, 1, -secrets.randbits(64), secrets.randbits(64)],
    "all negative": lambda n: [-1, -2, -(n - 1), -secrets.randbelow(n - 1) - 1, -secrets.randbits(64)],
    "none negative": lambda n: [0, 1, n - 1, secrets.randbits(64)],
    "one negative": lambda n: [-secrets.randbits(64) - 1],
    "odd size": lambda n: [(-1) ** i * secrets.randbits(40) for i in range(INVERSE_CHUNK + 4)],
}


@pytest.mark.parametrize("case", MUL_CASES)
def test_mul_with_negative_scalars_runs_cooperative_and_inverts_once(case, coop, inline_backend):
    gpu, launched = coop
    pk, sk = keypair(1024)
    n, n2 = pk.n, pk.nsquare
    ks = MUL_CASES[case](n)
    cs = coprime_units(n2, len(ks))
    assert gpu.raw_mul(pk, cs, ks) == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs, ks)]
    lp, negs = 32, sum(k < 0 for k in ks)
    want = [(f"he_mul_scalar_coop_{lp}", len(ks) * COOP_TPI[2 * lp])]
    if negs:
        t = [-(-x // INVERSE_CHUNK) * COOP_TPI[2 * lp] for x in levels_of(negs)]
        want += [(f"he_inverse_prefix_coop_{lp}", x) for x in t] + [(f"he_inverse_back_coop_{lp}", x) for x in t[::-1]]
    assert launched == want
    if case == "mixed":  # through encryption and decryption, and the CPU backend
        ms = [secrets.randbelow(n) for _ in ks]
        got = gpu.raw_mul(pk, inline_backend.raw_encrypt(pk, ms), ks)
        assert inline_backend.raw_decrypt(sk, got) == [m * k % n for m, k in zip(ms, ks)]
        assert gpu.raw_mul(pk, cs, ks) == inline_backend.raw_mul(pk, cs, ks)
    assert gpu.stats["cpu_fallbacks"] == 0


def test_mul_device_resident_and_at_2048_bits(coop):
    gpu, launched = coop
    pk, _ = keypair(2048)
    n, n2 = pk.n, pk.nsquare
    ks = [-1, 7, -(n - 1), -secrets.randbits(64), 0]
    cs = coprime_units(n2, len(ks))
    dev = gpu.to_device(cs, pk.ciphertext_width)
    got = limbs_to_ints(gpu.to_host(gpu.raw_mul(pk, dev, ks)))
    assert got == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs, ks)]
    assert [k for k, _ in launched] == ["he_mul_scalar_coop_64", "he_inverse_prefix_coop_64",
                                        "he_inverse_back_coop_64"]


def test_mul_non_invertible_ciphertext_with_a_negative_scalar_is_a_clear_error(coop, inline_backend):
    """The same error (lowest index) as the one-thread kernel and the CPU backend; a non-unit with a
    non-negative scalar is fine, and range errors come first."""
    gpu, _ = coop
    pk, sk = keypair(1024)
    n2 = pk.nsquare
    cs = coprime_units(n2, 6)
    cs[1], cs[4] = sk.p, sk.q * 7
    ks = [-1, 2, 3, -5, -2, -1]
    for be in (gpu, inline_backend):
        with pytest.raises(ValueError, match=r"ciphertext\[4\] is not invertible"):
            be.raw_mul(pk, cs, ks)
    assert gpu.raw_mul(pk, cs[:3], ks[:3]) == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs[:3], ks[:3])]
    with pytest.raises(ValueError, match=r"ciphertext\[5\] is out of range"):
        gpu.raw_mul(pk, cs[:5] + [n2], ks)
    assert gpu.stats["cpu_fallbacks"] == 0


def test_matvec_with_negative_entries_inverts_the_columns_together(coop, inline_backend):
    gpu, launched = coop
    pk, sk = keypair(1024)
    n, n2 = pk.n, pk.nsquare
    rows, cols = 5, INVERSE_CHUNK + 3  # two chunks of columns
    X = [[secrets.randbits(20) - (1 << 19) for _ in range(cols)] for _ in range(rows)]
    X[0][0], X[1][1] = -(n - 1), n - 1  # full-width entries
    for r in range(rows):
        X[r][2] = 5 + r  # a column without a negative entry
    X[3][3] = 0
    cs = coprime_units(n2, rows)
    want = []
    for j in range(cols):
        acc = 1
        for i in range(rows):
            acc = acc * int(gmpy2.powmod(cs[i], X[i][j], n2)) % n2
        want.append(acc)
    assert gpu.raw_matvec(pk, cs, X) == want
    names = [k for k, _ in launched]
    assert names == ["matvec_tables_32", "matvec_partial_32", "matvec_finish_32", "matvec_finish_32",
                     "he_inverse_prefix_coop_32", "he_inverse_prefix_coop_32", "he_inverse_back_coop_32",
                     "he_inverse_back_coop_32"]
    ms = [secrets.randbelow(n) for _ in range(rows)]
    got = gpu.raw_matvec(pk, inline_backend.raw_encrypt(pk, ms), X)
    assert inline_backend.raw_decrypt(sk, got) == [sum(m * X[i][j] for i, m in enumerate(ms)) % n
                                                   for j in range(cols)]
    launched.clear()
    assert gpu.raw_matvec(pk, cs, [[abs(x) for x in row] for row in X]) == inline_backend.raw_matvec(
        pk, cs, [[abs(x) for x in row] for row in X])
    assert [k for k, _ in launched] == ["matvec_tables_32", "matvec_partial_32", "matvec_finish_32"]
    bad = list(cs)
    bad[2] = sk.p
    X2 = [[1, 2], [3, 4], [-1, 2], [1, 1], [0, -1]]
    with pytest.raises(ValueError, match=r"matvec column\[0\] is not invertible"):
        gpu.raw_matvec(pk, bad, X2)
    assert gpu.stats["cpu_fallbacks"] == 0


def test_mul_with_negative_scalars_split_over_devices_names_the_callers_index(inline_backend):
    """GpuBackend's scheduling: pieces of at most 3 over two emulated devices (one with two
    streams), each piece's negative results inverted on its own device; a non-unit in a later
    piece is named at the caller's index."""
    from accel.backends.gpu import GpuBackend

    rts = [recording_runtime(0), recording_runtime(1)]
    gpu = GpuBackend(runtime=rts, fallback=inline_backend, max_batch=3, min_per_device=2, cooperative=True)
    try:
        pk, sk = keypair(1024)
        n2 = pk.nsquare
        ks = [-1, 2, -3, 4, -5, -6, 7, -(pk.n - 1)]
        cs = coprime_units(n2, len(ks))
        assert gpu.raw_mul(pk, cs, ks) == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs, ks)]
        assert all(any(k.startswith("he_inverse_back_coop") for k, _ in rt.launched) for rt in rts)
        cs[5] = sk.p * 2
        with pytest.raises(ValueError, match=r"^ciphertext\[5\] is not invertible"):
            gpu.raw_mul(pk, cs, ks)
        assert gpu.stats["cpu_fallbacks"] == 0
    finally:
        gpu.close()


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**64), st.integers(-2**70, 2**70)), min_size=1, max_size=40))
def test_mul_with_signed_scalars_matches_gmpy2_property(coop_backend_256, pairs):
    """Any mix of signs and sizes, on a 256-bit key (class 32), against gmpy2."""
    gpu, pk = coop_backend_256
    n2 = pk.nsquare
    cs = [c % (n2 - 1) + 1 for c, _ in pairs]
    cs = [c if gmpy2.gcd(c, n2) == 1 else 1 for c in cs]
    ks = [k for _, k in pairs]
    assert gpu.raw_mul(pk, cs, ks) == [int(gmpy2.powmod(c, k, n2)) for c, k in zip(cs, ks)]


@pytest.fixture(scope="module")
def coop_backend_256():
    from accel.backends.gpu import GpuBackend
    from accel import CpuBackend

    cpu = CpuBackend(workers=1)
    gpu = GpuBackend(runtime="emulated", fallback=cpu, cooperative=True)
    yield gpu, keypair(256)[0]
    gpu.close()
    cpu.close()
