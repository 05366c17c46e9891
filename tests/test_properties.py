"""Homomorphic properties with hypothesis, on a small key so many examples run quickly."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel import EncryptedVector, PlaintextOverflowError

from .conftest import keypair
from .oracle import Oracle

PK, SK = keypair(256)
N = PK.n
ORACLE = Oracle.for_key(SK)
plain = st.integers(min_value=0, max_value=N - 1)
scalar = st.integers(min_value=-(N - 1), max_value=N - 1)
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fast
@given(st.lists(st.tuples(plain, plain), max_size=12))
def test_add_and_add_plain_decrypt_to_the_plaintext_sum(inline_backend, pairs):
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    ca, cb = inline_backend.raw_encrypt(PK, a), inline_backend.raw_encrypt(PK, b)
    assert inline_backend.raw_decrypt(SK, inline_backend.raw_add(PK, ca, cb)) == [(x + y) % N for x, y in pairs]
    assert inline_backend.raw_decrypt(SK, inline_backend.raw_add_plain(PK, ca, b)) == [(x + y) % N for x, y in pairs]


@fast
@given(st.lists(st.tuples(plain, scalar), max_size=12))
def test_mul_decrypts_to_the_plaintext_product(inline_backend, pairs):
    ms = [m for m, _ in pairs]
    ks = [k for _, k in pairs]
    cs = inline_backend.raw_encrypt(PK, ms)
    assert inline_backend.raw_decrypt(SK, inline_backend.raw_mul(PK, cs, ks)) == [m * k % N for m, k in pairs]


@fast
@given(st.data())
def test_matvec_is_the_plaintext_matrix_product(inline_backend, data):
    rows = data.draw(st.integers(0, 10))
    cols = data.draw(st.integers(1, 4))
    ms = data.draw(st.lists(plain, min_size=rows, max_size=rows))
    X = data.draw(st.lists(st.lists(st.integers(-(2**70), 2**70), min_size=cols, max_size=cols),
                           min_size=rows, max_size=rows))
    cs = [ORACLE.enc(m) for m in ms]
    out = inline_backend.raw_matvec(PK, cs, X if rows else np.zeros((0, cols), dtype=np.int64))
    assert ORACLE.dec_all(out) == [sum(ms[i] * X[i][j] for i in range(rows)) % N for j in range(cols)]


floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@fast
@given(st.lists(st.tuples(floats, floats), min_size=1, max_size=8), floats)
def test_encoded_vector_arithmetic_matches_numpy(inline_backend, pairs, k):
    pk, sk = keypair(1024)  # floats need a 1024-bit max_int for products of 53-bit mantissas
    x = np.array([a for a, _ in pairs])
    y = np.array([b for _, b in pairs])
    ex = EncryptedVector.encrypt(pk, x, backend=inline_backend)
    ey = EncryptedVector.encrypt(pk, y, backend=inline_backend)
    assert np.array_equal(ex.decrypt(sk), x)
    try:
        total = ex + ey
    except PlaintextOverflowError:
        # Refused, not wrapped: legitimate only when aligning the exponents cannot fit max_int.
        # A float's mantissa at its natural exponent has at most 56 bits; the sum adds one.
        gap = int(np.max(np.abs(ex.exponents - ey.exponents)))
        assert 4 * gap + 56 + 1 > ex._bit_limit
        return
    np.testing.assert_allclose(total.decrypt(sk), x + y, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose((ex * k).decrypt(sk), x * k, rtol=1e-12, atol=1e-9)
    try:
        dot = ex.dot(y)
    except PlaintextOverflowError:
        # aligned x (<= 56 + 4 * spread bits) times y's shared-exponent encoding (<= 56 bits),
        # summed over <= 8 rows (+3 bits)
        spread = int(ex.exponents.max() - ex.exponents.min())
        assert 4 * spread + 56 + 56 + 3 > ex._bit_limit
        return
    np.testing.assert_allclose(dot.decrypt(sk), [x @ y], rtol=1e-9, atol=1e-3)
