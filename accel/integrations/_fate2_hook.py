"""he-accel's start-up hook for FATE 2.x, run by ``he_accel_fate2.pth`` in every interpreter of
an environment where ``python -m accel.integrations.fate2_activation enable`` wrote that file.

Standard library only, and loaded by the .pth file from its path without importing ``accel``,
so that it costs nothing in a process that never imports FATE: it adds an import finder that
reacts to two module names only, ``fate.arch.context._cipher`` and
``fate.arch.protocol.phe.paillier``, and after FATE's own code has run hands them to
:mod:`accel.integrations.fate2_activation`. ``HEA_FATE_AUTO=0`` turns it off.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading

WATCHED = {"fate.arch.context._cipher": "on_cipher_module",
           "fate.arch.protocol.phe.paillier": "on_paillier_module"}


def _enabled() -> bool:
    return os.environ.get("HEA_FATE_AUTO", "1").strip().lower() not in ("0", "false", "no", "off")


def _after(module) -> None:
    try:
        from accel.integrations import fate2_activation
    except ImportError:  # he-accel removed, or FATE's extras missing: stock FATE
        return
    getattr(fate2_activation, WATCHED[module.__name__])(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        self.real.exec_module(module)
        _after(module)


class _Finder(importlib.abc.MetaPathFinder):
    he_accel_fate2_hook = True  # one finder per process, whichever copy of this module made it

    def __init__(self):
        self._inside = threading.local()

    def find_spec(self, name, path=None, target=None):
        if name not in WATCHED or getattr(self._inside, "active", False):
            return None
        self._inside.active = True
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        finally:
            self._inside.active = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


_finder = None


def install() -> None:
    global _finder
    if not _enabled() or any(getattr(f, "he_accel_fate2_hook", False) for f in sys.meta_path):
        return
    _finder = _Finder()
    sys.meta_path.insert(0, _finder)
    for name in WATCHED:  # imported before the hook: patch now
        if name in sys.modules:
            _after(sys.modules[name])
