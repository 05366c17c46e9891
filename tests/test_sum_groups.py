"""raw_sum_groups (many homomorphic sums in one call) on every backend against gmpy2: the
product of each consecutive group mod n^2, exact integers, on fresh random ciphertexts and
on the edges (empty groups, groups of one, 1 = E(0), n^2 - 1, packed inputs, bad counts)."""
import secrets

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel import CpuBackend
from accel.backends.base import Backend
from accel.packing import ints_to_blob, ints_to_limbs, limbs_to_ints

from .oracle import Oracle, group_products


def ciphertexts(n2, count):
    edges = [1, 2, n2 - 1, n2 - 2]
    return (edges + [secrets.randbelow(n2 - 1) + 1 for _ in range(count)])[:count]


@pytest.mark.parametrize("counts", [[], [0], [0, 0, 0], [1], [3], [1, 0, 2, 5, 1, 0, 4], [2] * 9, [17, 1, 33]])
def test_groups_match_gmpy2_exactly(backend, key1024, counts):
    pk, _ = key1024
    cs = ciphertexts(pk.nsquare, sum(counts))
    assert backend.raw_sum_groups(pk, cs, counts) == group_products(cs, counts, pk.nsquare)


def test_sums_decrypt_to_the_group_sums(backend, key1024):
    pk, sk = key1024
    o = Oracle.for_key(sk)
    ms = [0, 1, pk.n - 1, 5, pk.n // 2, 7, 11]
    cs = [o.enc(m) for m in ms]
    counts = [2, 0, 1, 4]
    out = backend.raw_sum_groups(pk, cs, counts)
    assert o.dec_all(out) == [(ms[0] + ms[1]) % pk.n, 0, ms[2], sum(ms[3:]) % pk.n]


def test_packed_inputs_come_back_packed(backend, key1024):
    pk, _ = key1024
    cs = ciphertexts(pk.nsquare, 10)
    counts = np.array([3, 0, 7])  # a numpy array of counts is taken too
    want = group_products(cs, [3, 0, 7], pk.nsquare)
    blob = backend.raw_sum_groups(pk, ints_to_blob(cs, pk.ciphertext_width, "c"), counts)
    assert isinstance(blob, bytes) and blob == ints_to_blob(want, pk.ciphertext_width, "c")
    limbs = backend.raw_sum_groups(pk, ints_to_limbs(cs, pk.ciphertext_width // 4), counts)
    assert isinstance(limbs, np.ndarray) and limbs_to_ints(limbs) == want


class TestBadInput:
    @pytest.mark.parametrize("counts, match", [([1, 1], "add up to 2"), ([4], "add up to 4"),
                                               ([2, -1, 2], r"counts\[1\]"), ([True, 2], r"counts\[0\]"),
                                               ([1.0, 2], r"counts\[0\]")])
    def test_counts(self, backend, key1024, counts, match):
        pk, _ = key1024
        with pytest.raises(ValueError, match=match):
            backend.raw_sum_groups(pk, [2, 3, 4], counts)

    def test_counts_container(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(TypeError):
            backend.raw_sum_groups(pk, [2], 1)

    @pytest.mark.parametrize("where", [0, 2, 4])
    def test_ciphertext_out_of_range_names_its_index(self, backend, key1024, where):
        pk, _ = key1024
        for bad in (0, pk.nsquare):
            cs = [2, 3, 4, 5, 6]
            cs[where] = bad
            # index 4 sits alone in its group: it is checked though nothing multiplies it
            with pytest.raises(ValueError, match=rf"ciphertext\[{where}\]"):
                backend.raw_sum_groups(pk, cs, [2, 2, 1])

    def test_packed_ciphertext_out_of_range_names_its_index(self, backend, key1024):
        pk, _ = key1024
        wide = ints_to_blob([2, 3, 4, 5, 6], pk.ciphertext_width, "c")
        w = pk.ciphertext_width
        blob = wide[:4 * w] + pk.nsquare.to_bytes(w, "little")
        with pytest.raises(ValueError, match=r"ciphertext\[4\]"):
            backend.raw_sum_groups(pk, blob, [2, 2, 1])

    def test_negative_ciphertext(self, backend, key1024):
        pk, _ = key1024
        with pytest.raises(ValueError):
            backend.raw_sum_groups(pk, [2, -3], [2])


def test_every_cpu_path_agrees_with_the_default(key1024, pool_backend):
    """The extension, the gmpy2 loop and the pool's tree of adds give the same integers as the
    base class's tree (what the GPU and remote backends run)."""
    pk, _ = key1024
    counts = [int(k) for k in np.random.default_rng().integers(0, 6, 300)]
    cs = ciphertexts(pk.nsquare, sum(counts))
    want = group_products(cs, counts, pk.nsquare)
    with CpuBackend(workers=1) as ext, CpuBackend(workers=1, native=False, native_ints=False) as gm:
        assert ext.native_ints is not None, ext.native_ints_note
        assert ext.raw_sum_groups(pk, cs, counts) == want
        assert gm.raw_sum_groups(pk, cs, counts) == want
        assert Backend.raw_sum_groups(ext, pk, cs, counts) == want
    assert pool_backend.raw_sum_groups(pk, cs, counts) == want


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12), st.data())
def test_property_any_grouping(inline_backend, key1024, counts, data):
    pk, _ = key1024
    cs = data.draw(st.lists(st.integers(1, pk.nsquare - 1), min_size=sum(counts), max_size=sum(counts)))
    assert inline_backend.raw_sum_groups(pk, cs, counts) == group_products(cs, counts, pk.nsquare)
