"""The backend FATE's calls run on in this process.

FATE's contract is static methods with no place for a backend, so the choice is made once per
process (:func:`configure`, else ``HEA_FATE_BACKEND``, else ``"auto"``) and read only where
FATE's calls enter (keys, evaluator); below that, the arithmetic takes it as an argument. Only
the choice is held, never a device handle, so keys, coders and vectors pickle into FATE's
worker processes and each opens CUDA (or its gRPC channel) itself.
"""
from __future__ import annotations

from typing import Any

from ...backends import Backend
from .._batch import LazyBackend

ENV_VAR = "HEA_FATE_BACKEND"

current_backend = LazyBackend(ENV_VAR)
"""Call it for this process's :class:`~accel.Backend` (built on first use)."""


def configure(backend: Backend | str | None = None, **kwargs: Any) -> None:
    """Choose the backend: a name (``"auto"``, ``"cpu"``, ``"gpu"``, ``"remote"`` with
    ``target=``) or a :class:`~accel.Backend` instance (used in this process only; a forked or
    spawned worker builds its own of the same name). Default: ``HEA_FATE_BACKEND`` or auto."""
    current_backend.configure(backend, **kwargs)
