"""Fixed-point encoding against python-paillier's encoder and FATE's documented semantics."""
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import DecodeOverflowError, FixedPointCodec, PlaintextOverflowError

phe = pytest.importorskip("phe")

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30)
wide = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@pytest.fixture(scope="module")
def codecs(key1024):
    pk, _ = key1024
    return {c: FixedPointCodec(pk, c) for c in ("phe", "fate1", "fate2")}


@pytest.fixture(scope="module")
def phe_pub(key1024):
    return phe.paillier.PaillierPublicKey(key1024[0].n)


def fate1_reference(x, n, max_int):
    """FATE 1.x FixedPointNumber.encode as documented (exponent >= 0, value = enc * 16^-e)."""
    if abs(x) < 1e-200:
        x = 0
    if isinstance(x, int):
        e = 0
    else:
        e = math.floor((sys.float_info.mant_dig - math.frexp(x)[1]) / 4)
    mant = int(round(x * pow(16, e)))
    if abs(mant) > max_int:
        raise ValueError
    return mant % n, e


@settings(max_examples=300, deadline=None)
@given(st.lists(wide, min_size=1, max_size=20))
def test_phe_convention_matches_python_paillier(codecs, phe_pub, xs):
    enc = codecs["phe"].encode(np.array(xs))
    for i, x in enumerate(xs):
        ref = phe.EncodedNumber.encode(phe_pub, x)
        assert (enc.encodings[i], int(enc.exponents[i])) == (ref.encoding, ref.exponent)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**200), max_value=2**200), min_size=1, max_size=20))
def test_phe_convention_ints_match_python_paillier(codecs, phe_pub, xs):
    enc = codecs["phe"].encode(np.array(xs, dtype=object))
    for i, x in enumerate(xs):
        ref = phe.EncodedNumber.encode(phe_pub, x)
        assert (enc.encodings[i], int(enc.exponents[i])) == (ref.encoding, ref.exponent)
    assert codecs["phe"].decode_exact(enc.encodings, enc.exponents) == xs


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=20))
def test_fate1_convention_matches_its_documented_rule(codecs, xs):
    c = codecs["fate1"]
    enc = c.encode(np.array(xs))
    public = c.to_public_exponent(enc.exponents)
    for i, x in enumerate(xs):
        assert (enc.encodings[i], int(public[i])) == fate1_reference(x, c.n, c.max_int)


def test_documented_exponents(codecs):
    # fate-api.md: FATE 1.x encrypt(1.5).exponent == 13; fate_utils 1.5 gets exponent -13.
    assert int(codecs["fate1"].to_public_exponent(codecs["fate1"].encode([1.5]).exponents)[0]) == 13
    assert int(codecs["fate2"].encode([1.5]).exponents[0]) == -13
    assert int(codecs["phe"].encode([3.0]).exponents[0]) == -13
    assert int(codecs["fate1"].to_public_exponent(codecs["fate1"].encode([3.0]).exponents)[0]) == 12
    assert int(codecs["phe"].encode([7]).exponents[0]) == 0


def test_max_int_per_convention(codecs, key1024):
    n = key1024[0].n
    assert codecs["phe"].max_int == n // 3 - 1
    assert codecs["fate1"].max_int == n // 3 - 1
    assert codecs["fate2"].max_int == n // 2


@pytest.mark.parametrize("conv", ["phe", "fate1", "fate2"])
@settings(max_examples=100, deadline=None)
@given(xs=st.lists(wide, min_size=0, max_size=30))
def test_float_round_trip_is_exact(codecs, conv, xs):
    c = codecs[conv]
    arr = np.array(xs, dtype=np.float64)
    enc = c.encode(arr)
    if conv == "fate1":
        # FATE 1.x's exponent rule is lossy above 2^53 (it keeps fewer bits): compare with it.
        expected = []
        for x in xs:
            m, e = fate1_reference(x, c.n, c.max_int)
            expected.append(float(c.signed_mantissas([m])[0] * pow(16, -e)))
        expected = np.array(expected)
    else:
        expected = arr
    assert np.array_equal(c.decode(enc.encodings, enc.exponents), expected)


def test_ints_edges_and_max_int(codecs):
    c = codecs["phe"]
    vals = [0, 1, -1, c.max_int, -c.max_int, 2**63 - 1, -(2**63)]
    enc = c.encode(np.array(vals, dtype=object))
    assert c.decode_exact(enc.encodings, enc.exponents) == vals
    assert enc.encodings[2] == c.n - 1  # negatives are stored as n + x
    assert enc.mantissas == vals and c.signed_mantissas(enc.encodings) == vals
    with pytest.raises(PlaintextOverflowError, match="max_int"):
        c.encode(np.array([1, c.max_int + 1], dtype=object))
    with pytest.raises(PlaintextOverflowError):
        c.encode(np.array([-c.max_int - 1], dtype=object))
    big = codecs["fate2"]
    assert big.decode_exact(big.encode(np.array([big.max_int], dtype=object)).encodings, [0]) == [big.max_int]


def test_int_arrays_of_every_width(codecs):
    c = codecs["phe"]
    for dt in (np.int8, np.int32, np.int64, np.uint64, np.bool_):
        arr = np.array([0, 1, 1], dtype=dt)
        enc = c.encode(arr)
        assert c.decode_exact(enc.encodings, enc.exponents) == [int(v) for v in arr]
    u = np.array([2**64 - 1], dtype=np.uint64)
    assert c.decode_exact(c.encode(u).encodings, [0]) == [2**64 - 1]


def test_precision_max_exponent_and_forced_exponent(codecs, phe_pub):
    c = codecs["phe"]
    enc = c.encode([0.1, 2.0], precision=1e-6)
    ref = phe.EncodedNumber.encode(phe_pub, 0.1, precision=1e-6)
    assert enc.encodings[0] == ref.encoding and int(enc.exponents[0]) == ref.exponent
    enc = c.encode([0.5, 3], max_exponent=-20)
    for i, x in enumerate([0.5, 3]):
        ref = phe.EncodedNumber.encode(phe_pub, x, max_exponent=-20)
        assert (enc.encodings[i], int(enc.exponents[i])) == (ref.encoding, ref.exponent)
    enc = c.encode([1.25, -7], exponent=-8)
    assert list(enc.exponents) == [-8, -8]
    assert list(c.decode(enc.encodings, enc.exponents)) == [1.25, -7.0]
    f1 = codecs["fate1"]
    enc = f1.encode([0.5], max_exponent=20)  # FATE 1.x: exponent = max(max_exponent, natural)
    assert int(f1.to_public_exponent(enc.exponents)[0]) == 20


def test_rounding_is_half_to_even(codecs):
    c = codecs["phe"]
    enc = c.encode([0.5, 1.5, 2.5, -0.5], exponent=0)
    assert c.decode_exact(enc.encodings, enc.exponents) == [0, 2, 2, 0]


@pytest.mark.parametrize("bad", [[float("nan")], [float("inf")], [1.0, -float("inf")]])
def test_non_finite_values_are_refused(codecs, bad):
    with pytest.raises(ValueError, match="finite"):
        codecs["phe"].encode(bad)


def test_strings_and_objects_are_refused(codecs):
    with pytest.raises(TypeError):
        codecs["phe"].encode(["1.0"])
    with pytest.raises(TypeError):
        codecs["phe"].encode(np.array([object()], dtype=object))


def test_decode_detects_overflow_and_corruption(codecs):
    c = codecs["phe"]
    with pytest.raises(DecodeOverflowError, match="overflow"):
        c.decode([c.max_int + 1], [0])
    with pytest.raises(DecodeOverflowError):
        c.decode([c.n - c.max_int - 1], [0])
    with pytest.raises(ValueError, match="corrupted"):
        c.decode([c.n], [0])
    assert c.decode([c.n - c.max_int], [0])[0] == float(-c.max_int)


def test_decode_of_huge_mantissas_is_correctly_rounded(codecs):
    c = codecs["fate2"]
    m = (1 << 400) + 12345
    got = c.decode([m], [-100])[0]
    assert got == m / (1 << 400)


def test_codec_validation(key1024):
    pk, _ = key1024
    with pytest.raises(ValueError):
        FixedPointCodec(pk, "fate3")
    with pytest.raises(ValueError):
        FixedPointCodec(pk, "phe", max_int=pk.n)


# -- fate_utils' integer conversions (FATE 2.x's Coder decodes with these) --------------------
def test_to_f64_toward_zero_truncates_where_float_rounds_to_nearest():
    from accel.encoding import to_f64_toward_zero

    for x in (0, 1, -1, 2**53 - 1, -(2**53 - 1), 2**53, 12345):
        assert to_f64_toward_zero(x) == float(x)          # exact: both agree
    up = 2**60 + 2**8 - 1                                 # nearest rounds up, toward zero down
    assert float(up) == 2**60 + 2**8 and to_f64_toward_zero(up) == 2**60
    assert to_f64_toward_zero(-up) == -(2**60)
    rng = np.random.default_rng()
    for _ in range(200):
        x = int(rng.integers(1, 2**62)) * 2**int(rng.integers(0, 200)) + int(rng.integers(0, 2**40))
        shift = int(rng.integers(-300, 300))
        got = to_f64_toward_zero(x, shift)
        exact = Fraction(x) * Fraction(2) ** shift
        assert Fraction(got) <= exact < Fraction(math.nextafter(got, math.inf))  # the float at or below
        assert to_f64_toward_zero(-x, shift) == -got


def test_decode_integers_toward_zero_only_changes_big_integers(codecs):
    from accel.encoding import to_f64_toward_zero

    c = codecs["fate2"]
    n = c.n
    big = 2**60 + 2**8 - 1
    enc = [big, n - big, 12345, (1 << 400) + 12345]
    exps = [0, 1, 0, -100]
    nearest = c.decode(enc, exps)
    toward = c.decode(enc, exps, integers_toward_zero=True)
    assert nearest[0] == float(big) and toward[0] == to_f64_toward_zero(big)
    assert toward[1] == to_f64_toward_zero(-big, 4)
    assert toward[2] == nearest[2] == 12345.0
    assert toward[3] == nearest[3]                        # a fraction (exponent < 0): nearest both ways
    small = c.encode(np.array([1.5, -2.25, 3.0]))          # fast path: exact either way
    assert c.decode(small.encodings, small.exponents, integers_toward_zero=True).tolist() == [1.5, -2.25, 3.0]
    assert c.decode([], [], integers_toward_zero=True).size == 0


def test_decode_floor_is_the_exact_floor(codecs):
    c = codecs["fate2"]
    rng = np.random.default_rng()
    vals = [0.0, 1.0, -1.0, 2.75, -2.75, -0.5, 0.5, 1e-300, -1e-300, 3e200, -3e200]
    vals += (rng.standard_normal(40) * 10.0 ** rng.integers(-8, 20, 40)).tolist()
    enc = c.encode(np.array(vals))
    exact = c.decode_exact(enc.encodings, enc.exponents)
    assert c.decode_floor(enc.encodings, enc.exponents) == [math.floor(v) for v in exact]
    ints = [0, 1, -1, c.max_int, -c.max_int]
    enc = c.encode(np.array(ints, dtype=object))
    assert c.decode_floor(enc.encodings, enc.exponents) == ints
    assert c.decode_floor([3, c.n - 3], [1, 1]) == [48, -48]
    with pytest.raises(ValueError, match="corrupted"):
        c.decode_floor([c.n], [0])
    phe_codec = codecs["phe"]  # fate2's max_int = n // 2 leaves no overflow gap; phe's does
    with pytest.raises(DecodeOverflowError):
        phe_codec.decode_floor([phe_codec.max_int + 1], [0])
