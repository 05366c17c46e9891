"""Deprecated: the remote backend moved to :mod:`accel.service.remote`, with the client it uses.

``get_backend("remote", ...)`` is unchanged (the service registers the backend through an entry
point). This alias imports the service from inside the core library, the one upward import
the layer contract allows (pyproject ``[tool.importlinter]``); it goes in a later release.
"""
import warnings

warnings.warn("accel.backends.remote is deprecated: import RemoteBackend from accel.service.remote, "
              "or use get_backend('remote', target=...)", DeprecationWarning, stacklevel=2)

from accel.service.remote import RemoteBackend, make_backend  # noqa: E402

__all__ = ["RemoteBackend", "make_backend"]
