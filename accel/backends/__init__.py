"""Backends: the same raw batch API on different engines, found by name.

``get_backend("cpu")`` (gmpy2, all cores), ``"gpu"`` (CUDA through CuPy, when present),
``"auto"`` (GPU when CuPy sees a device, else CPU, logged once) and ``"remote"`` (an he-accel
service: ``get_backend("remote", target="host:port")``, or ``HEA_TARGET`` for the shared one).

``cpu`` and ``gpu`` are built in. Any other name is a plugin: a distribution registers a
factory (``factory(**kwargs) -> Backend``) under the entry-point group ``he_accel.backends``;
``remote`` is he-accel's own, registered by :mod:`accel.service.remote` (the service sits on top
of this library, which never imports it). A plain checkout, which has no installed metadata,
reads the same entries from :data:`accel._checkout.ENTRY_POINTS`; :func:`register_backend`
adds one at run time.

The state this module keeps for the process, all of it here: the shared instance of each
backend (``get_backend(name)`` without keyword arguments: one worker pool, one device context
per process) and the default backend of :class:`accel.EncryptedVector` and
:class:`accel.PackedVector` when none is given (:func:`default_backend`,
:func:`set_default_backend`).
"""
from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, Callable, Union

from .. import _checkout
from .base import Backend, KeyMismatchError
from .cpu import CpuBackend

__all__ = ["LOCAL_BACKENDS", "Backend", "BackendUnavailableError", "CpuBackend", "KeyMismatchError", "backend_names",
           "default_backend", "get_backend", "register_backend", "set_default_backend"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "he_accel.backends"
#: the backends that compute in this process: the choices of every ``--backend`` flag that picks one
#: (he-accel demo, service-demo, serve; the service benchmark)
LOCAL_BACKENDS = ("cpu", "gpu", "auto")

Factory = Callable[..., Backend]


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, no CuPy, ...)."""


def _make_gpu(**kwargs: Any) -> Backend:
    from .gpu import GpuBackend  # noqa: PLC0415 - CuPy loads only when asked for

    try:
        return GpuBackend(**kwargs)
    except Exception as e:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "not here"
        raise BackendUnavailableError(f"the GPU backend is not available: {e}") from None


_BUILT_IN: dict[str, Factory] = {"cpu": CpuBackend, "gpu": _make_gpu}
_registered: dict[str, Factory] = {}
_shared: dict[str, Backend] = {}
_lock = threading.RLock()  # re-entrant: a plugin's factory may ask for a shared backend itself
_auto_logged = False
_default: Union[Backend, str] = "auto"


def _entry_points() -> dict[str, Any]:
    """The ``he_accel.backends`` entry points by name: installed distributions' first, then a
    plain checkout's (the same entries, for a tree used without installing)."""
    from importlib import metadata  # noqa: PLC0415 - only when a plugin name is asked for

    if sys.version_info >= (3, 10):
        installed = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    else:  # 3.8 / 3.9: a dict of groups
        installed = list(metadata.entry_points().get(ENTRY_POINT_GROUP, ()))
    found = {name: metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
             for name, value in _checkout.entry_points(ENTRY_POINT_GROUP).items()}
    found.update((ep.name, ep) for ep in installed)
    return found


def _load(name: str, ep: Any) -> Factory:
    try:
        return ep.load()
    except ImportError as e:  # the plugin's own dependencies are missing
        extra = re.search(r"\[\s*([\w,\s-]+?)\s*\]", ep.value)
        hint = f" (pip install 'he-accel[{extra.group(1)}]')" if extra else ""
        raise BackendUnavailableError(f"the {name} backend needs packages that are not installed{hint}: {e}") from None


def register_backend(name: str, factory: Factory) -> None:
    """Make ``get_backend(name, **kwargs)`` call ``factory(**kwargs)`` (the entry point's job,
    for a backend that is not installed as a distribution)."""
    name = name.lower()
    if name in _BUILT_IN or name == "auto":
        raise ValueError(f"{name!r} is a built-in backend name")
    if not callable(factory):
        raise TypeError("factory must be callable: factory(**kwargs) -> Backend")
    with _lock:
        _registered[name] = factory
        _shared.pop(name, None)


def backend_names() -> list[str]:
    """Every name :func:`get_backend` accepts here (plugins whose packages are missing included:
    asking for one says what to install)."""
    return [*LOCAL_BACKENDS, *sorted((set(_registered) | set(_entry_points())) - set(_BUILT_IN))]


def _factory(name: str) -> Factory:
    if name in _BUILT_IN:
        return _BUILT_IN[name]
    if name in _registered:
        return _registered[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(backend_names())}")
    return _load(name, ep)


def get_backend(name: str = "cpu", **kwargs: Any) -> Backend:
    """Return a backend by name: ``"cpu"``, ``"gpu"``, ``"auto"``, ``"remote"`` or another plugin's.

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
    if kwargs:
        return _factory(name)(**kwargs)
    with _lock:
        if name not in _shared:
            _shared[name] = _factory(name)()
        return _shared[name]


def default_backend() -> Backend:
    """The backend an encrypted vector uses when it is given none: ``"auto"`` (the shared GPU
    backend where CuPy sees a device, else the shared CPU one) unless :func:`set_default_backend`
    chose another."""
    choice = _default
    return choice if isinstance(choice, Backend) else get_backend(choice)


def set_default_backend(backend: Backend | str) -> None:
    """Choose the backend of :func:`default_backend`: an instance, or a name resolved (to its
    shared instance) when first needed. Code that passes ``backend=`` is not affected."""
    global _default
    if isinstance(backend, str):
        if backend.lower() not in backend_names():
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(backend_names())}")
        backend = backend.lower()
    elif not isinstance(backend, Backend):
        raise TypeError(f"expected a Backend or a backend name, got {type(backend).__name__}")
    _default = backend
