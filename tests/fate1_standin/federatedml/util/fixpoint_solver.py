"""FATE 1.x's ``FixedPointEncoder`` (HeteroLR's ``floating_point_precision``), as documented:
``encode`` rounds x * precision to ints, ``decode`` divides by precision."""
import numpy as np


class FixedPointEncoder:
    def __init__(self, fixpoint_precision=2**23):
        self._fixpoint_precision = fixpoint_precision

    def encode(self, obj):
        if not isinstance(obj, np.ndarray):
            raise ValueError(f"FixPointEncoder Not support type {type(obj)}")
        return np.round(obj.astype(float) * self._fixpoint_precision, 0).astype(int)

    def decode(self, obj):
        if not isinstance(obj, np.ndarray):
            raise ValueError(f"FixPointEncoder Not support type {type(obj)}")
        return obj / self._fixpoint_precision
