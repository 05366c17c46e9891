"""Where the CUDA sources of ``kernels/`` are, installed or in a plain checkout.

An installed wheel carries them as the data package ``accel/kernels`` (pyproject maps the
repository's ``kernels/`` there); a checkout run without installing (as on a device machine that
gets a copy of the tree) has them in ``kernels/`` beside ``accel/``. Both layouts are looked up
by path, so nothing depends on how ``accel`` was imported.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

#: a file every kernel tree has: tells a real source folder from an unrelated ``kernels/``
_MARKER = "paillier.cuh"


def source_dir() -> Path:
    """The folder of the kernel sources. ``HEA_KERNEL_SOURCES`` overrides the lookup."""
    override = os.environ.get("HEA_KERNEL_SOURCES")
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve().parent            # .../accel/gpu
    candidates += [here.parent / "kernels",           # installed: accel/kernels
                   here.parent.parent / "kernels"]    # checkout: <repo>/kernels beside accel/
    for c in candidates:
        if (c / _MARKER).is_file():
            return c
    raise FileNotFoundError("he-accel kernel sources not found (looked in "
                            + ", ".join(str(c) for c in candidates) + ")")


def cache_root() -> Path:
    """Where he-accel keeps what it builds from these sources (the emulator, compiled kernels):
    ``$HEA_CACHE_DIR``, else ``~/.cache/he-accel``."""
    return Path(os.environ.get("HEA_CACHE_DIR") or Path.home() / ".cache" / "he-accel")


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Hash of every kernel source and header (not the host emulator): what a prebuilt binary
    must have been built from to be used."""
    h = hashlib.sha256()
    for p in sorted(source_dir().glob("*.cu*")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
