"""FATE's call arguments (torch tensors, numpy arrays, lists, shapes) in the forms the plugin
computes with."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def int_list(x: Any) -> list[int]:
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.detach().reshape(-1).tolist()]
    return [int(v) for v in x]


def matrix_shape(shape: Any, row: bool) -> tuple[int, int]:
    """A matmul operand's shape as 2-D: a vector is a row (left operand) or a column (right)."""
    dims = [int(d) for d in shape]
    if len(dims) == 2:
        return dims[0], dims[1]
    if len(dims) == 1:
        return (1, dims[0]) if row else (dims[0], 1)
    raise ValueError(f"matmul operands must be 1-D or 2-D, got shape {tuple(dims)}")


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, or a ValueError naming the parameter."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
