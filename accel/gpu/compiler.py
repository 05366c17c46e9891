"""NVRTC compilation of one unit (a kernel file at one size class) into a cubin for one
architecture, through CuPy's bindings (no GPU needed), and the check that the binary defines
every kernel the backend may launch from it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .names import DEFAULT_ARCH, MODEXP_FILES, kernels_of, size_classes
from .sources import source_dir, sources_digest


class KernelBuildError(RuntimeError):
    """NVRTC rejected a unit, or its binary lacks a kernel the backend launches."""


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
