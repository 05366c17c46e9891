"""Backends: the same raw batch API on different engines.

``get_backend("cpu")`` (gmpy2, all cores), ``"gpu"`` (CUDA through CuPy, when present) and
``"auto"`` (GPU when CuPy sees a device, else CPU, logged once) and ``"remote"`` (an he-accel
service: ``get_backend("remote", target="host:port")``, or ``HEA_TARGET`` for the shared one).
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from .base import Backend, KeyMismatchError
from .cpu import CpuBackend

__all__ = ["Backend", "BackendUnavailableError", "CpuBackend", "KeyMismatchError", "get_backend"]

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, no CuPy, ...)."""


_shared: dict[str, Backend] = {}
_shared_lock = threading.Lock()
_auto_logged = False


def _make_gpu(**kwargs: Any) -> Backend:
    from .gpu import GpuBackend  # noqa: PLC0415

    try:
        return GpuBackend(**kwargs)
    except Exception as e:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "not here"
        raise BackendUnavailableError(f"the GPU backend is not available: {e}") from None


def _make_remote(**kwargs: Any) -> Backend:
    import os  # noqa: PLC0415

    try:
        from .remote import RemoteBackend  # noqa: PLC0415
    except ImportError as e:  # grpcio/protobuf not installed
        raise BackendUnavailableError(f"the remote backend needs the 'client' extra: {e}") from None
    if "target" not in kwargs and "client" not in kwargs:
        if not os.environ.get("HEA_TARGET"):
            raise BackendUnavailableError("the remote backend needs target='host:port' (or HEA_TARGET)")
        kwargs["target"] = os.environ["HEA_TARGET"]
    return RemoteBackend(**kwargs)


def get_backend(name: str = "cpu", **kwargs: Any) -> Backend:
    """Return a backend by name: ``"cpu"``, ``"gpu"``, ``"auto"`` or ``"remote"``.

    Without keyword arguments the process-wide shared instance of that backend is returned
    (one worker pool per process); with them a new, private instance is built, which the
    caller closes.
    """
    global _auto_logged
    name = name.lower()
    if name == "auto":
        try:
            be = get_backend("gpu", **kwargs)
            choice = "gpu"
        except BackendUnavailableError as e:
            be = get_backend("cpu", **kwargs)
            choice = f"cpu ({e})"
        if not _auto_logged:
            log.info("backend 'auto' selected %s", choice)
            _auto_logged = True
        return be
    makers = {"cpu": CpuBackend, "gpu": _make_gpu, "remote": _make_remote}
    if name not in makers:
        raise ValueError(f"unknown backend {name!r}; choose from cpu, gpu, auto, remote")
    if kwargs:
        return makers[name](**kwargs)
    with _shared_lock:
        if name not in _shared:
            _shared[name] = makers[name]()
        return _shared[name]
