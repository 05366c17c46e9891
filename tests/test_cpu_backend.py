"""The raw batch API of the CPU backend against the independent gmpy2 oracle."""
import random
import secrets

import numpy as np
import pytest

from accel import CpuBackend, KeyMismatchError, PublicKey, get_backend
from accel.packing import ints_to_limbs, limbs_to_ints

from .conftest import keypair
from .oracle import Oracle, ScriptedRng

SIZES = [0, 1, 7, 33]


def edges(n):
    return [0, 1, 2, n // 3 - 1, n // 3, n // 2, n - 2, n - 1]


def plaintexts(n, count):
    base = edges(n)
    return (base + [secrets.randbelow(n) for _ in range(max(0, count - len(base)))])[:count]


@pytest.mark.parametrize("bits", [1024, 2048])
def test_encrypt_decrypt_edges_and_random(backend, bits):
    pk, sk = keypair(bits)
    o = Oracle.for_key(sk)
    ms = plaintexts(pk.n, 20)
    cs = backend.raw_encrypt(pk, ms)
    assert all(isinstance(c, int) for c in cs)
    assert o.dec_all(cs) == ms
    assert len(set(cs)) == len(cs), "fresh randomness per value"
    assert backend.raw_decrypt(sk, [o.enc(m) for m in ms]) == ms


@pytest.mark.parametrize("size", SIZES)
def test_batch_sizes_including_empty_and_odd(backend, key1024, oracle1024, size):
    pk, sk = key1024
    ms = plaintexts(pk.n, size)
    cs = backend.raw_encrypt(pk, ms)
    assert len(cs) == size
    assert backend.raw_decrypt(sk, cs) == ms
    assert oracle1024.dec_all(backend.raw_add(pk, cs, cs)) == [2 * m % pk.n for m in ms]
    assert oracle1024.dec(backend.raw_sum(pk, cs)) == sum(ms) % pk.n


def test_known_answer_from_python_paillier():
    # python-paillier's regression vector: n = 293 * 433, r = 74384.
    from accel import PrivateKey

    pk = PublicKey(126869)
    sk = PrivateKey(pk, 293, 433)
    be = CpuBackend(workers=1, rng=ScriptedRng([74384]))
    assert be.raw_encrypt(pk, [10100]) == [935906717]
    assert be.raw_decrypt(sk, [935906717]) == [10100]
    assert be.raw_encrypt(pk, [1], obfuscate=False) == [126870]


def test_injected_rng_is_deterministic(key1024):
    pk, _ = key1024
    a = CpuBackend(workers=1, rng=random.Random(1)).raw_encrypt(pk, [5, 6, 7])
    b = CpuBackend(workers=1, rng=random.Random(1)).raw_encrypt(pk, [5, 6, 7])
    assert a == b
    # ...and per call, overriding the backend's generator
    be = CpuBackend(workers=1)
    assert be.raw_encrypt(pk, [5, 6, 7], rng=random.Random(1)) == a


def test_textbook_encryption_matches_oracle_for_the_same_r(key1024, oracle1024):
    pk, _ = key1024
    rs = [secrets.randbelow(pk.n - 2) + 1 for _ in range(5)]
    ms = plaintexts(pk.n, 5)
    be = CpuBackend(workers=1, rng=ScriptedRng(rs))
    assert be.raw_encrypt(pk, ms) == [oracle1024.enc(m, r) for m, r in zip(ms, rs)]


def test_crt_encryption_and_rerandomisation(backend, key1024, oracle1024):
    pk, sk = key1024
    ms = plaintexts(pk.n, 12)
    cs = backend.raw_encrypt(pk, ms, private_key=sk)
    assert oracle1024.dec_all(cs) == ms
    assert len(set(cs)) == len(cs)
    rr = backend.raw_rerandomize(pk, cs)
    assert oracle1024.dec_all(rr) == ms and all(a != b for a, b in zip(rr, cs))
    rr2 = backend.raw_rerandomize(pk, cs, private_key=sk)
    assert oracle1024.dec_all(rr2) == ms and all(a != b for a, b in zip(rr2, cs))


def test_crt_encryption_refuses_a_foreign_private_key(backend, key1024, key2048):
    with pytest.raises(KeyMismatchError):
        backend.raw_encrypt(key1024[0], [1], private_key=key2048[1])


def test_unobfuscated_encryption_is_deterministic(backend, key1024):
    pk, sk = key1024
    cs = backend.raw_encrypt(pk, [0, 5, pk.n - 1], obfuscate=False)
    assert cs == [(1 + m * pk.n) % pk.nsquare for m in [0, 5, pk.n - 1]]
    assert backend.raw_decrypt(sk, cs) == [0, 5, pk.n - 1]


def test_add_plain_against_oracle(backend, key1024, oracle1024):
    pk, _ = key1024
    n = pk.n
    ms = plaintexts(n, 10)
    cs = [oracle1024.enc(m) for m in ms]
    ps = plaintexts(n, 10)[::-1]
    assert oracle1024.dec_all(backend.raw_add_plain(pk, cs, ps)) == [(a + b) % n for a, b in zip(ms, ps)]


def test_mul_by_signed_scalars_against_oracle(backend, key1024, oracle1024):
    pk, _ = key1024
    n = pk.n
    ms = plaintexts(n, 10)
    cs = [oracle1024.enc(m) for m in ms]
    ks = [0, 1, -1, 2, -2, n - 1, -(n - 1), 1 << 63, -(1 << 63), secrets.randbelow(n)]
    assert oracle1024.dec_all(backend.raw_mul(pk, cs, ks)) == [(m * k) % n for m, k in zip(ms, ks)]
    assert oracle1024.dec_all(backend.raw_mul(pk, cs, np.arange(-5, 5))) == [
        (m * k) % n for m, k in zip(ms, range(-5, 5))]


@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 3), (40, 5), (5, 0)])
def test_matvec_against_oracle(backend, key1024, oracle1024, rows, cols):
    pk, _ = key1024
    n = pk.n
    ms = plaintexts(n, rows)
    cs = [oracle1024.enc(m) for m in ms]
    X = [[random.choice([0, 1, -1, secrets.randbelow(1 << 40) - (1 << 39)]) for _ in range(cols)]
         for _ in range(rows)]
    if rows and cols:
        X[0][0] = n - 1  # the largest allowed entry
    out = backend.raw_matvec(pk, cs, X)
    assert len(out) == cols
    assert oracle1024.dec_all(out) == [sum(ms[i] * X[i][j] for i in range(rows)) % n for j in range(cols)]
    np_out = backend.raw_matvec(pk, cs, np.array(X, dtype=object).reshape(rows, cols))
    assert oracle1024.dec_all(np_out) == oracle1024.dec_all(out)


def test_matvec_of_no_rows_is_encrypted_zero(backend, key1024):
    pk, sk = key1024
    out = backend.raw_matvec(pk, [], np.zeros((0, 3), dtype=np.int64))
    assert out == [1, 1, 1] and backend.raw_decrypt(sk, out) == [0, 0, 0]


def test_sum_of_nothing_is_encrypted_zero(backend, key1024):
    pk, sk = key1024
    assert backend.raw_sum(pk, []) == 1
    assert backend.raw_decrypt(sk, [backend.raw_sum(pk, [])]) == [0]


def test_generic_powmod(backend):
    mod = (1 << 521) - 1
    bases = [0, 1, 2, mod - 1, secrets.randbelow(mod)] + [secrets.randbelow(mod) for _ in range(10)]
    exps = [5, 0, mod - 2, 3, 1 << 600] + [secrets.randbelow(1 << 300) for _ in range(10)]
    assert backend.powmod(bases, exps, mod) == [pow(b, e, mod) for b, e in zip(bases, exps)]
    assert backend.powmod([3], [-1], 7) == [5]
    with pytest.raises(ValueError, match="invertible"):
        backend.powmod([3], [-1], 9)
    with pytest.raises(ValueError):
        backend.powmod([3], [1], 1)


def test_packed_inputs_come_back_packed(backend, key1024):
    pk, sk = key1024
    ms = plaintexts(pk.n, 9)
    pl = pk.plaintext_width // 4
    limbs = ints_to_limbs(ms, pl)
    c_limbs = backend.raw_encrypt(pk, limbs)
    assert isinstance(c_limbs, np.ndarray) and c_limbs.dtype == np.uint32
    assert c_limbs.shape == (9, pk.ciphertext_width // 4)
    m_limbs = backend.raw_decrypt(sk, c_limbs)
    assert isinstance(m_limbs, np.ndarray) and limbs_to_ints(m_limbs) == ms
    blob = c_limbs.tobytes()
    m_blob = backend.raw_decrypt(sk, blob)
    assert isinstance(m_blob, bytes) and m_blob == m_limbs.tobytes()
    s_blob = backend.raw_sum(pk, blob)
    assert isinstance(s_blob, bytes) and len(s_blob) == pk.ciphertext_width
    assert backend.raw_decrypt(sk, s_blob) == (sum(ms) % pk.n).to_bytes(pk.plaintext_width, "little")
    two = backend.raw_add(pk, c_limbs, blob)
    assert limbs_to_ints(backend.raw_decrypt(sk, two)) == [2 * m % pk.n for m in ms]


class TestBadInput:
    def test_plaintext_out_of_range(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(ValueError, match=r"plaintext\[3\]"):
            backend.raw_encrypt(pk, [1, 2, 3, pk.n])
        with pytest.raises(ValueError, match="negative"):
            backend.raw_encrypt(pk, [1, -5])
        with pytest.raises(ValueError, match=r"plaintext\[1\]"):
            backend.raw_add_plain(pk, [1, 1], [0, pk.n])

    def test_error_index_is_global_in_chunked_batches(self, pool_backend, key1024):
        pk, _ = key1024
        ms = [1] * 40
        ms[37] = pk.n + 1
        with pytest.raises(ValueError, match=r"plaintext\[37\]"):
            pool_backend.raw_encrypt(pk, ms)

    def test_ciphertext_out_of_range(self, backend, key1024):
        pk, sk = key1024
        for bad in (0, pk.nsquare, pk.nsquare + 5):
            with pytest.raises(ValueError, match=r"ciphertext"):
                backend.raw_decrypt(sk, [bad])
        with pytest.raises(ValueError, match=r"ciphertext b\[1\]"):
            backend.raw_add(pk, [1, 1], [1, 0])
        with pytest.raises(ValueError):
            backend.raw_mul(pk, [pk.nsquare], [1])
        with pytest.raises(ValueError):
            backend.raw_sum(pk, [1, 0])

    def test_non_invertible_ciphertext_with_negative_scalar(self, backend, key1024):
        pk, sk = key1024
        with pytest.raises(ValueError, match="invertible"):
            backend.raw_mul(pk, [sk.p], [-1])

    @pytest.mark.parametrize("bad", ["5", 1.5, None, b"x", True])
    def test_wrong_types(self, backend, key1024, bad):
        pk, _ = key1024
        with pytest.raises(TypeError):
            backend.raw_encrypt(pk, [1, bad])

    def test_wrong_container_and_key_types(self, backend, key1024):
        pk, sk = key1024
        with pytest.raises(TypeError):
            backend.raw_encrypt(pk, "123")
        with pytest.raises(TypeError):
            backend.raw_encrypt(pk.n, [1])
        with pytest.raises(TypeError):
            backend.raw_decrypt(pk, [1])
        with pytest.raises(TypeError):
            backend.raw_encrypt(pk, np.array([1.5, 2.0]))

    def test_length_mismatches(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(ValueError, match="length mismatch"):
            backend.raw_add(pk, [1, 1], [1])
        with pytest.raises(ValueError, match="length mismatch"):
            backend.raw_mul(pk, [1, 1], [1])
        with pytest.raises(ValueError, match="length mismatch"):
            backend.raw_add_plain(pk, [1], [1, 2])

    def test_blob_length_not_a_multiple_of_the_width(self, backend, key1024):
        pk, sk = key1024
        with pytest.raises(ValueError, match="multiple"):
            backend.raw_decrypt(sk, b"\x01" * (pk.ciphertext_width + 3))

    def test_limb_arrays_of_the_wrong_width(self, backend, key1024):
        pk, sk = key1024
        with pytest.raises(ValueError, match="limbs"):
            backend.raw_decrypt(sk, np.ones((2, 5), dtype=np.uint32))

    def test_scalars_out_of_range(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(ValueError, match="scalar"):
            backend.raw_mul(pk, [1], [pk.n])
        with pytest.raises(TypeError):
            backend.raw_mul(pk, [1], [0.5])

    def test_matrix_shape_and_type(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(ValueError, match="rows"):
            backend.raw_matvec(pk, [1, 1], [[1]])
        with pytest.raises(ValueError, match="columns"):
            backend.raw_matvec(pk, [1, 1], [[1, 2], [3]])
        with pytest.raises(TypeError, match="encode floats"):
            backend.raw_matvec(pk, [1], np.array([[0.5]]))


def test_get_backend_names():
    from accel import BackendUnavailableError

    assert get_backend("cpu") is get_backend("cpu")
    assert get_backend("auto").name in ("cpu", "gpu")
    with pytest.raises(ValueError):
        get_backend("tpu")
    be = get_backend("cpu", workers=1)
    assert be is not get_backend("cpu") and be.workers == 1
    be.close()
    try:
        get_backend("gpu")
    except BackendUnavailableError as e:
        assert "GPU" in str(e)


def test_closed_backend_refuses_work():
    be = CpuBackend(workers=2)
    be.close()
    with pytest.raises(RuntimeError, match="closed"):
        be.raw_encrypt(keypair(256)[0], list(range(10)))


def _use_shared_pool_and_exit_without_closing(bits: int) -> None:
    from accel import generate_keypair
    pk, sk = generate_keypair(bits, allow_insecure=True)
    be = CpuBackend(workers=2)
    cs = be.raw_encrypt(pk, list(range(64)))
    assert be.raw_decrypt(sk, cs) == list(range(64))
    assert be._executor is not None  # the pool really started


def test_a_multiprocessing_child_with_an_unclosed_pool_exits_promptly():
    """Inside a multiprocessing child atexit never runs and the exit joins all children: the
    pool must be shut down by an exit-priority finalizer, or the party process hangs."""
    import multiprocessing
    import time
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_use_shared_pool_and_exit_without_closing, args=(512,))
    t0 = time.monotonic()
    p.start()
    p.join(timeout=60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive and p.exitcode == 0
    assert time.monotonic() - t0 < 30
