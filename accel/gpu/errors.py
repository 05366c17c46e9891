"""The kernels' error word (kernels/errors.cuh) turned into the CPU backend's exceptions."""
from __future__ import annotations

#: All ones: nothing reported.
NO_ERROR = (1 << 64) - 1

PLAINTEXT_RANGE = 1
CIPHERTEXT_RANGE = 2
NOT_INVERTIBLE = 3
MODULUS_EVEN = 4
INPUT_RANGE = 5
SECOND_RANGE = 6


def raise_for(word: int, offset: int = 0, names: dict[int, str] | None = None) -> None:
    """Raise the error recorded in ``word`` (lowest failing index), naming the caller's index.

    ``names`` overrides the operand named per code (e.g. ``{CIPHERTEXT_RANGE: "ciphertext b"}``).
    """
    word = int(word)
    if word == NO_ERROR:
        return
    code, index = word & 0xFF, (word >> 8) + offset
    names = names or {}
    if code == PLAINTEXT_RANGE:
        raise ValueError(f"{names.get(code, 'plaintext')}[{index}] is out of range: must be < n")
    if code == SECOND_RANGE:
        raise ValueError(f"{names.get(code, 'ciphertext b')}[{index}] is out of range: must be in [1, n^2)")
    if code == CIPHERTEXT_RANGE:
        raise ValueError(f"{names.get(code, 'ciphertext')}[{index}] is out of range: must be in [1, n^2)")
    if code == NOT_INVERTIBLE:
        what = names.get(code, "ciphertext")
        raise ValueError(f"{what}[{index}] is not invertible mod the modulus (not a valid {what.split()[0]})")
    if code == MODULUS_EVEN:
        raise ValueError("the modulus must be odd for the GPU kernels")
    if code == INPUT_RANGE:
        raise ValueError(f"{names.get(code, 'base')}[{index}] is out of range: must be < the modulus")
    raise RuntimeError(f"kernel reported unknown error code {code} at index {index}")
