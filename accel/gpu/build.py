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
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .sources import cache_root, source_dir, sources_digest

log = logging.getLogger(__name__)

#: kernel name (without the size suffix) -> source file of its family
KERNEL_FILES = {
    "paillier_encrypt": "paillier_encrypt.cu", "paillier_obfuscate": "paillier_encrypt.cu",
    "paillier_rerandomize": "paillier_encrypt.cu", "paillier_encrypt_with": "paillier_encrypt.cu",
    "paillier_crt_obfuscate": "paillier_encrypt.cu", "paillier_crt_encrypt": "paillier_encrypt.cu",
    "paillier_decrypt": "paillier_decrypt.cu",
    "he_add": "homomorphic.cu", "he_add_plain": "homomorphic.cu", "he_mul_scalar": "homomorphic.cu",
    "he_product": "reduce.cu",
    "matvec_tables": "matvec.cu", "matvec_partial": "matvec.cu", "matvec_finish": "matvec.cu",
    "powmod": "modexp.cu", "powmod_coop": "modexp_coop.cu",
    "paillier_encrypt_coop": "paillier_coop.cu", "paillier_obfuscate_coop": "paillier_coop.cu",
    "djn_table": "djn.cu", "djn_encrypt": "djn.cu",
    "djn_table_coop": "djn_coop.cu", "djn_encrypt_coop": "djn_coop.cu",
    "paillier_decrypt_coop": "decrypt_coop.cu",
    "he_add_coop": "homomorphic_coop.cu", "he_product_coop": "homomorphic_coop.cu",
    "he_mul_scalar_coop": "homomorphic_coop.cu",
}
#: Paillier size classes: plaintext limbs of keys up to 1024, 2048, 3072 and 4096 bits
KEY_CLASSES = (32, 64, 96, 128)
#: generic powmod: modulus limbs up to 8192 bits (n^2 of a 4096-bit key)
MOD_CLASSES = (32, 64, 96, 128, 192, 256)
#: the files whose size parameter is a modulus width, not a key class
MODEXP_FILE = "modexp.cu"
MODEXP_FILES = (MODEXP_FILE, "modexp_coop.cu")
#: cooperative kernels: threads per number (a group of lanes of one warp) by modulus limbs, as
#: coop_tpi() in kernels/coop_mont.cuh (tests/test_coop_kernels.py checks that they agree); the
#: Paillier ones work modulo n^2, so key class LP takes COOP_TPI[2 * LP]
COOP_TPI = {32: 8, 64: 16, 96: 32, 128: 32, 192: 32, 256: 32}
#: the architecture the prebuilt binaries target by default (H100 / H200)
DEFAULT_ARCH = "sm_90"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

_NAME = re.compile(r"^(?P<family>[a-z_]+?)_(?P<size>\d+)$")


class KernelBuildError(RuntimeError):
    """NVRTC rejected a unit, or its binary lacks a kernel the backend launches."""


def split_kernel_name(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m or m["family"] not in KERNEL_FILES:
        raise KeyError(f"unknown kernel {name!r}")
    return m["family"], int(m["size"])


def unit_of(kernel: str) -> tuple[str, int]:
    """(source file, size) of the unit that defines ``kernel``."""
    family, size = split_kernel_name(kernel)
    return KERNEL_FILES[family], size


def size_classes(file: str) -> tuple[int, ...]:
    return MOD_CLASSES if file in MODEXP_FILES else KEY_CLASSES


def source_files() -> list[str]:
    return sorted(set(KERNEL_FILES.values()))


def all_units(sizes: Iterable[int] | None = None) -> list[tuple[str, int]]:
    """Every (file, size) pair; ``sizes`` keeps only those classes (key classes in limbs, which
    also keeps the powmod classes of the same width and of their n^2)."""
    keep = None if sizes is None else set(sizes)
    out = []
    for f in source_files():
        for s in size_classes(f):
            if keep is None or s in keep or (f in MODEXP_FILES and s // 2 in keep):
                out.append((f, s))
    return out


def kernels_of(file: str, size: int) -> list[str]:
    """The kernel names a unit must define: what the backend may launch from it."""
    return sorted(f"{fam}_{size}" for fam, f in KERNEL_FILES.items() if f == file)


def size_define(file: str, size: int) -> str:
    if size not in size_classes(file):
        raise KeyError(f"{file} has no size class {size}")
    return f"-DHEA_MOD_LIMBS={size}" if file in MODEXP_FILES else f"-DHEA_KEY_CLASS={size}"


def portable_options(file: str, size: int, arch: str) -> tuple[str, ...]:
    """The options that determine the binary (the include path is added at compile time)."""
    return ("-std=c++17", size_define(file, size), f"--gpu-architecture={arch}")


def compile_options(file: str, size: int, arch: str, *, verbose: bool = False) -> tuple[str, ...]:
    """Exactly what NVRTC gets: the portable options, the include folder, and with ``verbose``
    ptxas's resource report (registers, stack, spills: ``he-accel kernels report``)."""
    opts = (*portable_options(file, size, arch), f"--include-path={source_dir()}")
    return (*opts, "--ptxas-options=-v") if verbose else opts


def kernel_code(file: str) -> str:
    """The source text NVRTC compiles. The digest line ties a binary to all of the headers."""
    return f"// he-accel kernel sources {sources_digest()}\n" + (source_dir() / file).read_text()


def nvrtc_version() -> str:
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415 (optional dependency)

    major, minor = nvrtc.getVersion()
    return f"NVRTC {major}.{minor}"


@dataclass
class CompiledUnit:
    file: str
    size: int
    arch: str
    cubin: bytes
    log: str = ""
    seconds: float = 0.0
    kernels: list[str] = field(default_factory=list)


def compile_unit(file: str, size: int, arch: str = DEFAULT_ARCH, *, verbose: bool = False) -> CompiledUnit:
    """Compile one unit to a cubin with NVRTC (no GPU needed). Raises :class:`KernelBuildError`
    with NVRTC's log when the source does not compile."""
    from cupy_backends.cuda.libs import nvrtc  # noqa: PLC0415

    t0 = time.perf_counter()
    prog = nvrtc.createProgram(kernel_code(file), file, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(compile_options(file, size, arch, verbose=verbose)))
        except nvrtc.NVRTCError as e:
            raise KernelBuildError(f"NVRTC failed on {file} size {size} {arch}: {e}\n"
                                   f"{nvrtc.getProgramLog(prog)[-4000:]}") from e
        cubin = _whole_cubin(prog, nvrtc.getCUBIN)
        build_log = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return CompiledUnit(file, size, arch, cubin, build_log, time.perf_counter() - t0, kernels_of(file, size))


def _libnvrtc():
    """The NVRTC library CuPy has loaded (dlopen by soname finds the loaded copy first)."""
    import ctypes  # noqa: PLC0415

    for name in ("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", "nvrtc64_130_0.dll", "nvrtc64_120_0.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _elf_size(image: bytes) -> int:
    """Bytes a 64-bit ELF image needs: up to the end of its program and section header tables."""
    import struct  # noqa: PLC0415

    if len(image) < 64 or image[:4] != b"\x7fELF":
        return len(image)
    phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
    return max(phoff + phentsize * phnum, shoff + shentsize * shnum)


def _whole_cubin(prog: int, cupy_get_cubin: Callable[[int], bytes]) -> bytes:
    """The cubin of a compiled NVRTC program, every byte of it. CuPy 14's ``getCUBIN`` returns
    one byte short (it strips a terminator a binary does not have), which cuts the ELF program
    header table and makes the driver refuse the image; so read it through NVRTC's C API."""
    import ctypes  # noqa: PLC0415

    lib = _libnvrtc()
    if lib is not None:
        size = ctypes.c_size_t()
        if lib.nvrtcGetCUBINSize(ctypes.c_void_p(prog), ctypes.byref(size)) == 0:
            buf = ctypes.create_string_buffer(size.value)
            if lib.nvrtcGetCUBIN(ctypes.c_void_p(prog), buf) == 0:
                return buf.raw
    cubin = cupy_get_cubin(prog)
    if len(cubin) < _elf_size(cubin):
        raise KernelBuildError(f"NVRTC's cubin came back truncated ({len(cubin)} of {_elf_size(cubin)} bytes) "
                               "and libnvrtc could not be opened to read it whole")
    return cubin


def cubin_symbols(cubin: bytes) -> set[str]:
    """The function symbols of a cubin's ELF symbol table (the names the driver can look up)."""
    import io  # noqa: PLC0415

    from elftools.elf.elffile import ELFFile  # noqa: PLC0415 (pyelftools: test/gpu extras)

    elf = ELFFile(io.BytesIO(cubin))
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        return set()
    return {s.name for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}


def check_symbols(unit: CompiledUnit) -> None:
    """Every kernel the backend may launch from this unit is in the binary, by its exact name."""
    missing = sorted(set(unit.kernels) - cubin_symbols(unit.cubin))
    if missing:
        raise KernelBuildError(f"{unit.file} size {unit.size} {unit.arch}: the binary lacks "
                               f"{', '.join(missing)}")


def binary_name(file: str, size: int, arch: str) -> str:
    return f"{Path(file).stem}_{size}.{arch}.cubin"


# -- prebuilt folders ---------------------------------------------------------------------------------
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


# -- resource report ----------------------------------------------------------------------------------
_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_PROPS = re.compile(r"Function properties for (\w+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_STACK = re.compile(r"(\d+) bytes cumulative stack size")


def parse_ptxas_log(text: str) -> dict[str, dict]:
    """ptxas ``-v`` output -> per kernel: registers, stack frame, spill stores and loads,
    cumulative stack, shared memory, and the spills of the ``__noinline__`` routines it calls
    (reported after the kernel's own lines; their spills are paid inside the kernel)."""
    out: dict[str, dict] = {}
    entry = target = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            entry = m[1]
            out[entry] = {"registers": 0, "stack_frame": 0, "spill_stores": 0, "spill_loads": 0,
                          "cumulative_stack": 0, "smem": 0, "callee_spill_stores": 0, "callee_spill_loads": 0}
            target = None
        elif entry is not None and (m := _PROPS.search(line)):
            target = "self" if m[1] == entry else "callee"
        elif entry is not None and (m := _FRAME.search(line)):
            rec = out[entry]
            if target == "self":
                rec.update(stack_frame=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
            elif target == "callee":
                rec["callee_spill_stores"] += int(m[2])
                rec["callee_spill_loads"] += int(m[3])
        elif entry is not None and (m := _USED.search(line)):
            rec = out[entry]
            rec["registers"] = int(m[1])
            if s := _SMEM.search(line):
                rec["smem"] = int(s[1])
            if s := _STACK.search(line):
                rec["cumulative_stack"] = int(s[1])
    return out


#: sm_90 limits per multiprocessor (CUDA C Programming Guide, compute capability 9.0)
#: (the system reserves 1 KB of shared memory per resident block)
SM90 = {"regs": 65536, "warps": 64, "blocks": 32, "smem": 228 * 1024, "smem_reserved": 1024, "reg_unit": 256,
        "max_regs": 255}


def theoretical_occupancy(registers: int, block: int, smem: int = 0, limits: dict = SM90) -> float:
    """Resident warps / maximum warps per SM for a launch of ``block`` threads per block."""
    warps_per_block = -(-block // 32)
    regs_per_warp = -(-max(1, registers) * 32 // limits["reg_unit"]) * limits["reg_unit"]
    by_regs = (limits["regs"] // regs_per_warp) // warps_per_block
    by_warps = limits["warps"] // warps_per_block
    by_smem = limits["smem"] // (smem + limits.get("smem_reserved", 0)) if smem else limits["blocks"]
    blocks = min(by_regs, by_warps, by_smem, limits["blocks"])
    return blocks * warps_per_block / limits["warps"]


def classes_for_bits(bits: Iterable[int]) -> list[int]:
    """Key sizes in bits -> the Paillier size classes that serve them."""
    out = []
    for b in bits:
        lp = next((c for c in KEY_CLASSES if 32 * c >= int(b)), None)
        if lp is None:
            raise ValueError(f"no kernel size class for {b}-bit keys (largest: {32 * KEY_CLASSES[-1]})")
        out.append(lp)
    return sorted(set(out))


def report_rows(manifest: dict, block: int = 128) -> list[dict]:
    """One row per kernel and size class of a manifest (``build`` output), with the theoretical
    occupancy on sm_90 at the backend's launch shape (``block`` threads per block)."""
    rows = []
    for u in sorted(manifest["units"], key=lambda u: (u["arch"], u["file"], u["size"])):
        for name, r in sorted(u["resources"].items()):
            rows.append({"kernel": name, "file": u["file"], "size": u["size"], "arch": u["arch"], **r,
                         "occupancy": theoretical_occupancy(r["registers"], block, r.get("smem", 0))})
    return rows


def format_report(rows: list[dict], block: int = 128) -> str:
    """A markdown table of :func:`report_rows`."""
    head = ("| kernel | arch | registers | stack frame B | spill st/ld B | callee spill st/ld B | smem B "
            f"| occupancy @{block} |\n|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| `{r['kernel']}` | {r['arch']} | {r['registers']} | {r['stack_frame']} "
                     f"| {r['spill_stores']}/{r['spill_loads']} | {r['callee_spill_stores']}/{r['callee_spill_loads']} "
                     f"| {r['smem']} | {r['occupancy']:.0%} |")
    return "\n".join(lines)


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
