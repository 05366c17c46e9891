"""accel.packed: packed vectors against a plain-integer oracle (the same slot arithmetic on
Python ints), the textbook oracle for the ciphertexts, and the overflow refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import KeyMismatchError
from accel.packed import PackedCodec, PackedOverflowError, PackedVector

from .conftest import keypair
from .oracle import Oracle

SETTINGS = settings(max_examples=25, deadline=None)


@pytest.fixture(scope="module")
def key():
    return keypair(512)


def _codec(key, **kw):
    return PackedCodec(key[0], **kw)


def _ints(codec, min_size=0, max_size=40):
    q = codec.quant_max
    return st.lists(st.integers(min_value=-q, max_value=q), min_size=min_size, max_size=max_size)


# -- layout -------------------------------------------------------------------------------------
def test_layout_sizes_the_headroom(key):
    pk = key[0]
    c = PackedCodec(pk, value_bits=8, max_additions=3, scalar_bound=5)
    # (3 + 1) * 5 * 127 = 2540 needs 12 bits, plus the sign
    assert c.slot_bits == 13 and c.slot_max == 4095
    assert c.slots == (pk.n.bit_length() - 1) // 13
    assert c.describe()["slots_per_plaintext"] == c.slots
    assert c.ciphertexts_for(0) == 0 and c.ciphertexts_for(c.slots + 1) == 2


@pytest.mark.parametrize("kw", [{"value_bits": 1}, {"value_bits": 54}, {"max_additions": -1}, {"scalar_bound": 0},
                                {"clip": 0.0}, {"clip": float("inf")}, {"value_bits": True}])
def test_bad_parameters_are_refused(key, kw):
    with pytest.raises(ValueError):
        _codec(key, **kw)


def test_a_slot_wider_than_the_key_is_refused():
    pk = keypair(256)[0]
    with pytest.raises(PackedOverflowError, match="does not fit"):
        PackedCodec(pk, value_bits=53, max_additions=2**210)


# -- packing without encryption: exact round trip, signs, edges ---------------------------------
@given(data=st.data())
@SETTINGS
def test_pack_unpack_round_trip(key, data):
    codec = _codec(key, value_bits=data.draw(st.integers(2, 30)), max_additions=data.draw(st.integers(0, 50)))
    q = data.draw(_ints(codec, max_size=3 * codec.slots + 1))
    plain = codec.pack(q)
    assert len(plain) == codec.ciphertexts_for(len(q))
    assert all(0 <= m < key[0].n for m in plain)
    assert codec.unpack(plain, len(q)) == q


def test_pack_edges(key):
    codec = _codec(key, value_bits=8)
    q = codec.quant_max
    for vals in ([], [0], [1], [-1], [q], [-q], [-q] * codec.slots, [q, -q] * codec.slots, [0] * (codec.slots + 1)):
        assert codec.unpack(codec.pack(vals), len(vals)) == vals
    # all slots at -q: the packed integer is negative, stored as n - |P|
    assert codec.pack([-1])[0] == key[0].n - 1
    with pytest.raises(PackedOverflowError, match="exceeds"):
        codec.pack([q + 1])
    with pytest.raises(ValueError, match="cannot hold"):
        codec.unpack([0], codec.slots + 1)
    with pytest.raises(ValueError, match="cannot hold"):
        codec.unpack([0, 0], 1)


def test_unpack_detects_a_plaintext_beyond_its_slots(key):
    codec = _codec(key, value_bits=8)
    with pytest.raises(PackedOverflowError, match="out of its slots"):
        codec.unpack([1 << (codec.slot_bits * 2)], 2)  # bits above the two slots in use


# -- quantisation ---------------------------------------------------------------------------------
def test_quantisation_precision_and_clip(key):
    codec = _codec(key, value_bits=12, clip=2.0)
    x = np.random.default_rng().uniform(-2.0, 2.0, 1000)
    x[:5] = [0.0, 2.0, -2.0, 1e-300, -0.0]
    back = codec.dequantise(codec.quantise(x))
    assert np.max(np.abs(back - x)) <= codec.step / 2 * (1 + 1e-12)
    assert codec.quantise([2.0, -2.0]).tolist() == [codec.quant_max, -codec.quant_max]
    with pytest.raises(PackedOverflowError, match="beyond clip"):
        codec.quantise([2.0000001])
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="finite"):
            codec.quantise([bad])
    clipping = _codec(key, value_bits=12, clip=2.0, clip_values=True)
    assert clipping.quantise([5.0, -7.0]).tolist() == [clipping.quant_max, -clipping.quant_max]


# -- encrypted: add, sub, neg, scalar, sum against the plain-integer oracle ------------------------
@given(data=st.data())
@SETTINGS
def test_encrypted_ops_match_the_integer_oracle(key, inline_backend, data):
    pk, sk = key
    adds = data.draw(st.integers(1, 6))
    scalar_bound = data.draw(st.integers(1, 1000))
    codec = _codec(key, value_bits=data.draw(st.integers(2, 24)), max_additions=adds, scalar_bound=scalar_bound)
    size = data.draw(st.integers(0, 2 * codec.slots + 3))
    vecs = [data.draw(_ints(codec, size, size)) for _ in range(adds + 1)]
    enc = [codec.encrypt_quantised(v, backend=inline_backend) for v in vecs]
    k = data.draw(st.integers(-scalar_bound, scalar_bound))

    total = PackedVector.sum(enc)
    assert total.decrypt_quantised(sk) == [sum(col) for col in zip(*vecs)]
    assert (enc[0] + enc[1]).decrypt_quantised(sk) == [a + b for a, b in zip(vecs[0], vecs[1])]
    assert (enc[0] - enc[1]).decrypt_quantised(sk) == [a - b for a, b in zip(vecs[0], vecs[1])]
    assert (-enc[0]).decrypt_quantised(sk) == [-a for a in vecs[0]]
    assert (enc[0] * k).decrypt_quantised(sk) == [a * k for a in vecs[0]]
    assert (k * enc[1]).decrypt_quantised(sk) == [a * k for a in vecs[1]]


def test_ciphertexts_decrypt_with_the_textbook_oracle(key, inline_backend):
    pk, sk = key
    codec = _codec(key, value_bits=10, max_additions=1)
    vals = [-511, 511, 0, 1, -1] * codec.slots
    v = codec.encrypt_quantised(vals, backend=inline_backend)
    oracle = Oracle.for_key(sk)
    assert codec.unpack([oracle.dec(c) for c in v.ciphertexts], len(vals)) == vals
    # obfuscated: encrypting the same values twice gives different ciphertexts
    assert codec.encrypt_quantised(vals, backend=inline_backend).ciphertexts != v.ciphertexts
    again = v.rerandomize()
    assert again.ciphertexts != v.ciphertexts and again.decrypt_quantised(sk) == vals


def test_floats_round_trip_within_the_documented_precision(key, inline_backend):
    pk, sk = key
    codec = _codec(key, value_bits=16, clip=1.0, max_additions=9, scalar_bound=3)
    rng = np.random.default_rng()
    xs = [rng.uniform(-1, 1, 2 * codec.slots + 7) for _ in range(10)]
    enc = [codec.encrypt(x, backend=inline_backend) for x in xs]
    np.testing.assert_allclose(enc[0].decrypt(sk), xs[0], rtol=0, atol=codec.step / 2)
    total = PackedVector.sum(enc)
    np.testing.assert_allclose(total.decrypt(sk), np.sum(xs, axis=0), rtol=0, atol=10 * codec.step / 2)
    np.testing.assert_allclose((enc[3] * -3).decrypt(sk), -3 * xs[3], rtol=0, atol=3 * codec.step / 2)


# -- refusals -------------------------------------------------------------------------------------
def test_overflow_is_refused_before_computing(key, inline_backend):
    pk, sk = key
    codec = _codec(key, value_bits=8, max_additions=2, scalar_bound=1)
    q = codec.quant_max
    a = codec.encrypt_quantised([q, -q], backend=inline_backend)
    three = PackedVector.sum([a, a, a])  # within the declared headroom
    assert three.decrypt_quantised(sk) == [3 * q, -3 * q]
    # slot_max is 2^(slot_bits-1) - 1 >= 3q; a fourth addend or a large scalar may not fit
    calls = []

    class Spy:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(inline_backend, name)

    b = codec.encrypt_quantised([q, -q], backend=Spy())
    room = codec.slot_max // q  # the most copies of q a slot holds
    rest = PackedVector.sum([b] * (room - 2))
    calls.clear()
    with pytest.raises(PackedOverflowError, match="headroom"):
        PackedVector.sum([b] * (room + 1))
    with pytest.raises(PackedOverflowError, match="headroom"):
        b * (room + 1)
    with pytest.raises(PackedOverflowError, match="headroom"):
        three + rest
    with pytest.raises(PackedOverflowError, match="headroom"):
        three - rest
    assert calls == []  # refused before any ciphertext was computed
    # right at the edge it still computes, and exactly
    edge = b * room
    assert edge.decrypt_quantised(sk) == [room * q, -room * q]


def test_mismatches_are_refused(key, inline_backend):
    pk, sk = key
    codec = _codec(key, value_bits=8, max_additions=1)
    a = codec.encrypt_quantised([1, 2, 3], backend=inline_backend)
    with pytest.raises(ValueError, match="length"):
        a + codec.encrypt_quantised([1, 2], backend=inline_backend)
    with pytest.raises(ValueError, match="codecs"):
        a + _codec(key, value_bits=9, max_additions=1).encrypt_quantised([1, 2, 3], backend=inline_backend)
    other_pk, other_sk = keypair(256)
    with pytest.raises(KeyMismatchError):
        a + PackedCodec(other_pk, value_bits=8, max_additions=1).encrypt_quantised([1, 2, 3], backend=inline_backend)
    with pytest.raises(KeyMismatchError):
        a.decrypt_quantised(other_sk)
    with pytest.raises(TypeError, match="ints only"):
        a * 0.5
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(ValueError, match="no packed"):
        PackedVector.sum([])
    with pytest.raises(ValueError, match="ciphertexts for"):
        PackedVector(codec, [], 1, 0, backend=inline_backend)
