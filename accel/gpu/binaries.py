"""Where a unit's binary comes from, in order: a prebuilt folder (``HEA_KERNEL_DIR``, written
by :func:`build` with a manifest, used only when its source digest, options and architecture
match), the per-user cache (file names carry the source digest and options), and NVRTC, whose
output then goes into the cache."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .compiler import CompiledUnit, check_symbols, compile_unit, nvrtc_version, portable_options
from .names import DEFAULT_ARCH, all_units
from .report import parse_ptxas_log
from .sources import cache_root, sources_digest

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def binary_name(file: str, size: int, arch: str) -> str:
    return f"{Path(file).stem}_{size}.{arch}.cubin"


def build(out_dir: str | Path, *, archs: Sequence[str] = (DEFAULT_ARCH,), sizes: Iterable[int] | None = None,
          jobs: int | None = None, progress: Callable[[CompiledUnit], None] | None = None) -> dict:
    """Compile every unit for every architecture into ``out_dir`` with a manifest; returns it.

    Each binary is checked for every kernel name the backend launches before it is written.
    NVRTC releases the GIL, so the units compile in threads, ``jobs`` at a time.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = [(f, s, a) for a in archs for f, s in all_units(sizes)]
    t0 = time.perf_counter()

    def one(item):
        unit = compile_unit(*item, verbose=True)
        check_symbols(unit)
        (out / binary_name(unit.file, unit.size, unit.arch)).write_bytes(unit.cubin)
        if progress:
            progress(unit)
        return unit

    with ThreadPoolExecutor(max(1, jobs or os.cpu_count() or 1)) as ex:
        units = list(ex.map(one, work))
    manifest = {
        "format": MANIFEST_FORMAT,
        "source_digest": sources_digest(),
        "toolkit": nvrtc_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "units": [{
            "file": u.file, "size": u.size, "arch": u.arch,
            "options": list(portable_options(u.file, u.size, u.arch)),
            "kernels": u.kernels, "binary": binary_name(u.file, u.size, u.arch),
            "sha256": hashlib.sha256(u.cubin).hexdigest(), "compile_seconds": round(u.seconds, 2),
            "resources": parse_ptxas_log(u.log),
        } for u in units],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


def prebuilt_binary(folder: str | Path, file: str, size: int, arch: str) -> tuple[bytes | None, str]:
    """The unit's binary from a prebuilt folder, or None and why it was not used (stale
    sources, other options, no such unit, a damaged file)."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as e:
        return None, f"{folder}: no readable {MANIFEST} ({e})"
    if manifest.get("source_digest") != sources_digest():
        return None, (f"{folder}: stale, built from kernel sources {manifest.get('source_digest')}, "
                      f"these are {sources_digest()}")
    for entry in manifest.get("units", []):
        if (entry.get("file"), entry.get("size"), entry.get("arch")) != (file, size, arch):
            continue
        if tuple(entry.get("options", ())) != portable_options(file, size, arch):
            return None, f"{folder}: {file} size {size} was built with other options {entry.get('options')}"
        try:
            data = (folder / entry["binary"]).read_bytes()
        except OSError as e:
            return None, f"{folder}: {e}"
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            return None, f"{folder}: {entry['binary']} does not match its manifest checksum"
        return data, f"prebuilt {folder / entry['binary']}"
    return None, f"{folder}: has no {file} size {size} for {arch}"


def cache_dir() -> Path:
    return cache_root() / "kernels"


def _cache_path(file: str, size: int, arch: str) -> Path:
    key = hashlib.sha256(" ".join(portable_options(file, size, arch)).encode()).hexdigest()[:12]
    return cache_dir() / f"{Path(file).stem}_{size}.{arch}.{sources_digest()}.{key}.cubin"


def load_binary(file: str, size: int, arch: str, *, kernel_dirs: Sequence[str | Path] | None = None,
                compile: Callable[..., CompiledUnit] = compile_unit) -> tuple[bytes, str]:
    """The unit's cubin and where it came from (see the module docstring for the order)."""
    if kernel_dirs is None:
        env = os.environ.get("HEA_KERNEL_DIR")
        kernel_dirs = [d for d in env.split(os.pathsep) if d] if env else []
    for folder in kernel_dirs:
        data, why = prebuilt_binary(folder, file, size, arch)
        if data is not None:
            return data, why
        log.warning("not using prebuilt kernels: %s", why)
    cached = _cache_path(file, size, arch)
    if cached.is_file():
        return cached.read_bytes(), f"cache {cached}"
    unit = compile(file, size, arch)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(unit.cubin)
        os.replace(tmp, cached)  # atomic: concurrent processes agree
    except OSError as e:  # a read-only home still runs, it only compiles again next time
        log.warning("could not cache compiled kernels in %s: %s", cached.parent, e)
    return unit.cubin, f"compiled by {nvrtc_version()} in {unit.seconds:.1f} s"
