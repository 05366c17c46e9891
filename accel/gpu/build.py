"""Building the CUDA kernels: one path for run-time compilation, prebuilt binaries and CI.

A *unit* is one kernel family (one ``kernels/*.cu`` file) at one size class: the file compiled
with ``-DHEA_KEY_CLASS=LP`` (or ``-DHEA_MOD_LIMBS=L`` for ``modexp*.cu``) defines exactly the
kernels ``<name>_<size>`` of that family. :func:`compile_unit` compiles a unit through NVRTC
(CuPy's bindings, which need no GPU) into a cubin for one architecture; :class:`CupyRuntime
<accel.gpu.runtime.CupyRuntime>` loads what it returns, ``he-accel kernels build`` writes the
same binaries with a manifest, and the CI test compiles them and reads their symbol tables, so
what the device would launch is what CI checked.

Where a binary comes from (:func:`load_binary`), in order:
1. ``HEA_KERNEL_DIR`` (or ``kernel_dirs``): a folder written by ``he-accel kernels build``,
   used only when its manifest's source digest, options and architecture match;
2. the per-user cache (``$HEA_CACHE_DIR`` or ``~/.cache/he-accel``), whose file names carry the
   source digest and options, so a stale entry is never even looked up;
3. NVRTC, whose output then goes into the per-user cache.

This module is ``he-accel kernels build|report`` (:func:`main_kernels`) and the one import of the
parts, each in its own module: the kernel name table (:mod:`accel.gpu.names`), NVRTC
(:mod:`accel.gpu.compiler`), prebuilt folders and the cache (:mod:`accel.gpu.binaries`) and the
resource report (:mod:`accel.gpu.report`).
"""
from __future__ import annotations

from pathlib import Path

# every name this module has offered, from its home now (accel.gpu.runtime, bench/ and the tests import them here)
from .binaries import (  # noqa: F401
    MANIFEST, MANIFEST_FORMAT, binary_name, build, cache_dir, load_binary, prebuilt_binary, read_manifest,
)
from .compiler import (  # noqa: F401
    CompiledUnit, KernelBuildError, check_symbols, compile_options, compile_unit, cubin_symbols, kernel_code,
    nvrtc_version, portable_options, size_define,
)
from .names import (  # noqa: F401
    COOP_TPI, DEFAULT_ARCH, KERNEL_FILES, KEY_CLASSES, MOD_CLASSES, MODEXP_FILE, MODEXP_FILES, all_units,
    kernels_of, size_classes, source_files, split_kernel_name, unit_of,
)
from .report import SM90, classes_for_bits, format_report, parse_ptxas_log, report_rows, theoretical_occupancy  # noqa: F401
from .sources import cache_root, source_dir, sources_digest  # noqa: F401


def main_kernels(args) -> int:
    """``he-accel kernels build|report`` (see accel/cli.py for the flags)."""
    import sys  # noqa: PLC0415

    sizes = classes_for_bits(args.bits) if args.bits else None
    if args.action == "build":
        def progress(u: CompiledUnit) -> None:
            print(f"  {u.arch} {u.file:<22} size {u.size:<4} {u.seconds:6.1f} s", flush=True)

        print(f"building kernels ({nvrtc_version()}, sources {sources_digest()}) into {args.out}", flush=True)
        try:
            manifest = build(args.out, archs=args.arch, sizes=sizes, jobs=args.jobs, progress=progress)
        except KernelBuildError as e:
            print(f"kernel build failed: {e}", file=sys.stderr)
            return 1
        print(f"built {len(manifest['units'])} binaries in {manifest['wall_seconds']} s; "
              f"use them with HEA_KERNEL_DIR={Path(args.out).resolve()}")
        return 0
    # report: from a prebuilt folder, or build into a temporary one
    if args.source:
        manifest = read_manifest(args.source)
    else:
        import tempfile  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as tmp:
            manifest = build(tmp, archs=args.arch, sizes=sizes, jobs=args.jobs)
    rows = report_rows(manifest)
    if sizes is not None:
        rows = [r for r in rows if r["size"] in sizes or (r["file"] in MODEXP_FILES and r["size"] // 2 in sizes)]
    print(f"kernel resources ({manifest['toolkit']}, sources {manifest['source_digest']}; "
          f"occupancy: theoretical, sm_90 limits, {128} threads per block)")
    print(format_report(rows))
    return 0
