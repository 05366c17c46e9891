"""The native engine's cheap ops on lists of ints, as a CPython extension (``gmp_pyints.c``).

The ctypes engine (:mod:`._native`) takes packed blobs, so a list of ints costs an
``int.to_bytes`` per element in and an ``int.from_bytes`` per result out: about 1 us per
element at 2048 bits, a quarter of an add. This extension reads the ints' digits straight into
limbs, runs ``gmp_batch.c``'s loops (compiled into it) with the GIL released, and builds the
result ints from the limbs.

Built at first use like the ctypes engine, into the same per-user cache, once per source,
compiler, flags and Python version (its ABI tag is in the file name). Where it cannot be built
or fails its check on known values (no compiler, no Python headers, an int layout it does not
know), :func:`probe` says why and the backend keeps the ctypes path. :func:`load` compiles
nothing in a process that was given the path.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
import threading
from pathlib import Path

from . import _native

SOURCE = Path(__file__).with_name("gmp_pyints.c")
MODULE = "_hea_pyints"
_modules: dict[str, object] = {}
_failed: dict[str, str] = {}
_lock = threading.Lock()


def python_include() -> Path:
    """The directory holding this Python's ``Python.h`` (NativeUnavailable where there is none)."""
    inc = Path(sysconfig.get_paths()["include"])
    if not (inc / "Python.h").exists():
        raise _native.NativeUnavailable(f"no Python headers ({inc / 'Python.h'} is missing; "
                                        f"e.g. apt-get install python3-dev) to build the int extension")
    return inc


def build(cc: str | None = None, extra_flags: tuple[str, ...] = ()) -> Path:
    """The compiled extension's path (built once per sources, compiler, flags and Python)."""
    if os.environ.get("HEA_CPU_NATIVE", "").strip().lower() in ("0", "no", "off", "false"):
        raise _native.NativeUnavailable("disabled by HEA_CPU_NATIVE")
    if sys.byteorder != "little" or sys.maxsize != 2**63 - 1:
        raise _native.NativeUnavailable("the native engine needs a little-endian 64-bit machine")
    cc = cc or _native._compiler()
    inc = python_include()
    try:
        sources = [SOURCE.read_bytes(), _native.SOURCE.read_bytes(), _native.IFMA_SOURCE.read_bytes()]
    except OSError as e:
        raise _native.NativeUnavailable(f"the int extension's source is missing: {e}") from None
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    flags = (*_native.CFLAGS, *extra_flags, f"-I{inc}")
    digest = hashlib.sha256(b"\0".join([*sources, cc.encode(), sys.version.encode(),
                                        *(f.encode() for f in flags + _native.LIBS)])).hexdigest()[:16]
    return _native.compile_cached(_native.cache_dir() / f"{MODULE}-{digest}{suffix}", cc, flags,
                                  [SOURCE, _native.SOURCE], "the int extension", 180)


def _import(path: str):
    loader = importlib.machinery.ExtensionFileLoader(MODULE, path)
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    loader.exec_module(mod)
    return mod


def _self_check(mod) -> None:
    """Refuse a module whose reading or writing of ints disagrees with Python's on known values
    (an int layout other than the one it was built for)."""
    import gmpy2

    values = [0, 1, 2**30 - 1, 2**30, 2**64 - 1, 2**64, 2**64 + 1, 2**120 + 2**60 + 7, 3**300, 2**2047 - 1,
              int.from_bytes(bytes(range(256)) * 2, "little")]
    for v in values:
        if mod.roundtrip(v, 512) != v:
            raise _native.NativeUnavailable(f"the int extension misreads ints on this Python ({sys.version.split()[0]})")
    if mod.roundtrip(-5, 64) is not None or mod.roundtrip(2**600, 64) is not None:
        raise _native.NativeUnavailable("the int extension accepts negative or too-wide ints")
    mod.use_mpz(type(gmpy2.mpz(0)))
    if any(mod.roundtrip(gmpy2.mpz(v), 512) != v for v in values):
        mod.use_mpz(None)  # an mpz layout we do not know: such elements take the general path


def load(path: str | os.PathLike | None = None):
    """The extension module at ``path``, else built here; cached per process."""
    key = str(path) if path is not None else ""
    with _lock:
        mod = _modules.get(key)
        if mod is not None:
            return mod
        if key in _failed:
            raise _native.NativeUnavailable(_failed[key])
        try:
            file = str(path) if path is not None else str(build())
            try:
                mod = _import(file)
            except Exception as e:  # noqa: BLE001 - e.g. a warning raised as an error (a free-threaded build)
                raise _native.NativeUnavailable(f"cannot load the int extension {file}: "
                                                f"{type(e).__name__}: {e}") from None
            if mod.limb_bits != 64:
                raise _native.NativeUnavailable("the int extension needs GMP with 64-bit limbs")
            _self_check(mod)
        except _native.NativeUnavailable as e:
            _failed[key] = str(e)
            raise
        mod.path = file
        _modules[key] = _modules[file] = mod
        return mod


def probe() -> tuple[object | None, str | None]:
    """(the loaded module, None) or (None, why not): never raises."""
    try:
        return load(), None
    except _native.NativeUnavailable as e:
        return None, str(e)
