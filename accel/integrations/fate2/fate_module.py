"""FATE's ``fate.arch.protocol.phe.paillier`` module: the names it exposes now, and swapping
ours in for them and back.

Pickled class references (FATE sends the evaluator class; vectors rebuild through their class)
must resolve under FATE's module, which every peer's restricted unpickler admits and where
stock FATE has the same names; so while swapped in, our objects carry FATE's module and names.
"""
from __future__ import annotations

import importlib
import sys
import threading
from typing import Any, Mapping

FATE_MODULE = "fate.arch.protocol.phe.paillier"
# what FATE's PHECipherBuilder.setup imports for kind="paillier", and the vector classes
NAMES = ("keygen", "SK", "PK", "Coder", "evaluator", "CiphertextVector", "PlaintextVector")

_stock: dict[str, Any] = {}                      # FATE's own objects while ours are in
_our_names: dict[str, tuple[Any, str, str]] = {}  # ours: (object, __module__, __qualname__)
_lock = threading.Lock()


def installed() -> bool:
    """Whether our objects are in FATE's module in this process."""
    return bool(_stock)


def current(name: str, fallback: Any) -> Any:
    """What FATE's module exposes under ``name`` now (ours once swapped in); ``fallback``
    where FATE is not importable."""
    mod = sys.modules.get(FATE_MODULE)
    if mod is None:
        try:
            mod = importlib.import_module(FATE_MODULE)
        except ImportError:
            return fallback
    return getattr(mod, name, fallback)


def class_for_pickle(name: str, fate_utils_class: Any) -> Any:
    """The class a vector pickles as: FATE's name where we are swapped in (so a reader with the
    plugin rebuilds ours, one without it stock FATE's fate_utils class), else fate_utils' own."""
    return current(name, fate_utils_class) if installed() else fate_utils_class


def swap_in(ours: Mapping[str, Any]) -> bool:
    """Put ``ours`` (one object per name of :data:`NAMES`) into FATE's module; False if
    already done (idempotent)."""
    missing = [name for name in NAMES if name not in ours]
    if missing:
        raise ValueError(f"no replacement for FATE's {', '.join(missing)}")
    with _lock:
        if _stock:
            return False
        mod = importlib.import_module(FATE_MODULE)
        for name in NAMES:
            obj = ours[name]
            _stock[name] = getattr(mod, name)
            _our_names[name] = (obj, obj.__module__, obj.__qualname__)
            obj.__module__, obj.__qualname__ = FATE_MODULE, name
            setattr(mod, name, obj)
        return True


def restore() -> None:
    """FATE's own objects back, ours under their own names again."""
    with _lock:
        if not _stock:
            return
        mod = importlib.import_module(FATE_MODULE)
        for name, obj in _stock.items():
            setattr(mod, name, obj)
        for obj, module, qualname in _our_names.values():
            obj.__module__, obj.__qualname__ = module, qualname
        _stock.clear()
        _our_names.clear()
