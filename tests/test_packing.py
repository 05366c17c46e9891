import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.packing import (
    blob_to_ints,
    blob_to_limbs,
    ints_to_blob,
    ints_to_limbs,
    limbs_to_blob,
    limbs_to_ints,
    to_blob,
)


@given(st.lists(st.integers(min_value=0, max_value=2**256 - 1), max_size=20))
def test_round_trips(values):
    blob = ints_to_blob(values, 32)
    assert len(blob) == 32 * len(values)
    assert blob_to_ints(blob, 32) == values
    limbs = ints_to_limbs(values, 8)
    assert limbs.shape == (len(values), 8) and limbs.dtype == np.uint32
    assert limbs_to_ints(limbs) == values
    assert limbs_to_blob(limbs) == blob
    assert np.array_equal(blob_to_limbs(blob, 32), limbs)


def test_limb_order_is_little_endian():
    limbs = ints_to_limbs([(7 << 32) | 5], 2)
    assert limbs.tolist() == [[5, 7]]


def test_errors():
    with pytest.raises(ValueError, match="negative"):
        ints_to_blob([-1], 4)
    with pytest.raises(ValueError, match="fit"):
        ints_to_blob([1 << 32], 4)
    with pytest.raises(TypeError):
        ints_to_blob([1.0], 4)
    with pytest.raises(ValueError, match="multiple"):
        blob_to_ints(b"\x00" * 5, 4)
    with pytest.raises(TypeError):
        limbs_to_blob(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError):
        to_blob(np.zeros((2, 2, 2), dtype=np.int64), 4, "x")
    with pytest.raises(TypeError):
        to_blob(np.zeros((2, 3), dtype=np.uint64), 8, "x")
    assert to_blob(np.array([1, 2], dtype=np.int64), 4, "x")[0] == b"\x01\0\0\0\x02\0\0\0"
