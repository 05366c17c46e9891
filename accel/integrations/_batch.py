"""Shared by the framework integrations: a backend resolved lazily once per process, and the
fixed-point ciphertext reductions they batch (exponent alignment, grouped sums).

Exponents here use python-paillier's sign (value = m * 16^e, finer = smaller e); FATE 1.x's
positive exponents are negated on the way in and out.
"""
from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ..backends import Backend, get_backend
from ..ciphertext import lower_exponents
from ..encoding import BASE  # noqa: F401 - re-exported: the integrations' fixed-point base is the codec's
from ..keys import PublicKey


class LazyBackend:
    """Which backend to use, and the instance for the current process, built on first use.

    Integration objects get pickled into framework worker processes (FATE's computing engines
    do that); holding only this choice, never a device handle or a pool, keeps them picklable,
    and each process opens CUDA or its gRPC channel itself.
    """

    def __init__(self, env_var: str):
        self.env_var = env_var
        self._choice: Any = None
        self._kwargs: dict[str, Any] = {}
        self._choice_pid: int | None = None
        self._instance: Backend | None = None
        self._instance_pid: int | None = None
        self._lock = threading.Lock()

    def configure(self, backend: Backend | str | None = None, **kwargs: Any) -> None:
        with self._lock:
            self._choice, self._kwargs, self._choice_pid = backend, dict(kwargs), os.getpid()
            self._instance = self._instance_pid = None

    def describe(self) -> str:
        c = self._choice
        return c.name if isinstance(c, Backend) else (c or os.environ.get(self.env_var, "auto"))

    def __call__(self) -> Backend:
        pid = os.getpid()
        be = self._instance
        if be is not None and self._instance_pid == pid:
            return be
        with self._lock:
            if self._instance is not None and self._instance_pid == pid:
                return self._instance
            choice = self._choice
            if isinstance(choice, Backend):
                # an instance is only valid in the process that configured it
                be = choice if self._choice_pid == pid else get_backend(choice.name)
            else:
                name = choice or os.environ.get(self.env_var, "auto")
                be = get_backend(name, **self._kwargs) if self._kwargs else get_backend(name)
            self._instance, self._instance_pid = be, pid
            return be


def lower(backend: Backend, pk: PublicKey, cts: list[int], exps: np.ndarray, target: np.ndarray) -> list[int]:
    """Ciphertexts re-expressed at the (smaller or equal) exponents ``target``: c^(16^d), one
    batch (:func:`accel.ciphertext.lower_exponents`). Ciphertext 1 (an unobfuscated zero) stays 1."""
    d = np.asarray(exps, dtype=np.int64) - np.asarray(target, dtype=np.int64)
    if (d < 0).any():
        raise ValueError("can only move to finer (smaller) exponents")
    d[[c == 1 for c in cts]] = 0
    return lower_exponents(backend, pk, cts, d)


def reduce_groups(backend: Backend, pk: PublicKey, groups: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Sum each group of (ciphertext, exponent) pairs: ones dropped, the rest aligned to the
    group's finest exponent (all groups in one batch), then every group summed in one
    :meth:`~accel.Backend.raw_sum_groups` call. An empty group sums to (1, 0)."""
    live = [[(c, e) for c, e in g if c != 1] for g in groups]
    tmin = [min(e for _, e in g) if g else 0 for g in live]
    where = [(gi, j) for gi, g in enumerate(live) for j, (_, e) in enumerate(g) if e != tmin[gi]]
    if where:
        lowered = lower(backend, pk, [live[gi][j][0] for gi, j in where],
                        np.array([live[gi][j][1] for gi, j in where], dtype=np.int64),
                        np.array([tmin[gi] for gi, _ in where], dtype=np.int64))
        for (gi, j), c in zip(where, lowered):
            live[gi][j] = (c, tmin[gi])
    if not any(live):
        return [(1, 0)] * len(live)
    sums = backend.raw_sum_groups(pk, [c for g in live for c, _ in g], [len(g) for g in live])
    return [(c, t) if g else (1, 0) for c, t, g in zip(sums, tmin, live)]
