"""FATE 1.x fixed-point numbers, as documented: BASE 16, exponent >= 0 (value =
encoding * 16^-exponent), max_int = n // 3 - 1, alignment raises the smaller exponent."""
import math

import numpy as np


class FixedPointNumber:
    BASE = 16
    LOG2_BASE = 4
    FLOAT_MANTISSA_BITS = 53

    def __init__(self, encoding, exponent, n=None, max_int=None):
        self.n = n
        self.max_int = max_int
        self.encoding = encoding
        self.exponent = exponent

    @classmethod
    def encode(cls, scalar, n=None, max_int=None, precision=None, max_exponent=None):
        if abs(scalar) < 1e-200:
            scalar = 0  # FATE 1.x flushes tiny floats (0.0 included) to the int 0: exponent 0
        if precision is None:
            if isinstance(scalar, (int, np.integer)):
                exponent = 0
            elif isinstance(scalar, (float, np.floating)):
                flt_exponent = math.frexp(scalar)[1]
                exponent = (cls.FLOAT_MANTISSA_BITS - flt_exponent) // cls.LOG2_BASE
            else:
                raise TypeError(f"cannot encode {type(scalar)}")
        else:
            exponent = math.floor(math.log(precision, cls.BASE))
        if max_exponent is not None:
            exponent = max(max_exponent, exponent)
        int_fixpoint = int(round(scalar * pow(cls.BASE, exponent)))
        if abs(int_fixpoint) > max_int:
            raise ValueError(f"Integer needs to be within +/- {max_int} but got {int_fixpoint}")
        return cls(int_fixpoint % n, exponent, n, max_int)

    def decode(self):
        if self.encoding >= self.n:
            raise ValueError("Attempted to decode corrupted number")
        elif self.encoding <= self.max_int:
            mantissa = self.encoding
        elif self.encoding >= self.n - self.max_int:
            mantissa = self.encoding - self.n
        else:
            raise OverflowError(f"Overflow detected in decode number")
        return mantissa * pow(self.BASE, -self.exponent)

    def increase_exponent_to(self, new_exponent):
        if new_exponent < self.exponent:
            raise ValueError("new exponent should be greater than the current one")
        factor = pow(self.BASE, new_exponent - self.exponent)
        return FixedPointNumber(self.encoding * factor % self.n, new_exponent, self.n, self.max_int)
