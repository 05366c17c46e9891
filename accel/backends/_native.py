"""The CPU backend's native batch engine (``gmp_batch.c``): built at run time, loaded with ctypes.

One C call per batch on GMP's mpn layer replaces gmpy2's per-element Python loop for the
multiplication-only ops (add, add_plain, sum) and for DJN's comb encryption. :func:`load`
compiles the source once per source hash, compiler and flags into the per-user cache
(``$HEA_CACHE_DIR`` or ``~/.cache/he-accel``; atomic rename, so concurrent builders agree), like
the kernel emulator. Where it cannot (no C compiler, no ``gmp.h`` or ``libgmp``, a big-endian
or non-64-bit-limb machine, ``HEA_CPU_NATIVE=0``), :class:`NativeUnavailable` says why and the
backend keeps the gmpy2 path. Every function here takes and returns packed little-endian blobs.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

CFLAGS = ("-O3", "-shared", "-fPIC", "-Wall", "-Wextra")
LIBS = ("-lgmp",)
SOURCE = Path(__file__).with_name("gmp_batch.c")
#: Included by gmp_batch.c (the DJN path on AVX-512 IFMA): part of the build's hash.
IFMA_SOURCE = Path(__file__).with_name("djn_ifma.c")

_c_size = ctypes.c_size_t
_c_ptr = ctypes.c_char_p
_libs: dict[str, ctypes.CDLL] = {}
_failed: dict[str, str] = {}  # why the build failed, so that a process tries once
_lock = threading.Lock()


class NativeUnavailable(RuntimeError):
    """The native engine cannot be built or loaded here; the message says why."""


class NativeError(RuntimeError):
    """The native engine failed (out of memory)."""


def cache_dir() -> Path:
    return Path(os.environ.get("HEA_CACHE_DIR") or Path.home() / ".cache" / "he-accel")


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise NativeUnavailable("no C compiler (cc, gcc or $CC) to build the native engine")
    return cc


def build(cc: str | None = None) -> Path:
    """The compiled library's path (built once per source, compiler and flags)."""
    if os.environ.get("HEA_CPU_NATIVE", "").strip().lower() in ("0", "no", "off", "false"):
        raise NativeUnavailable("disabled by HEA_CPU_NATIVE")
    if sys.byteorder != "little" or ctypes.sizeof(ctypes.c_void_p) != 8:
        raise NativeUnavailable("the native engine needs a little-endian 64-bit machine")
    cc = cc or _compiler()
    try:
        source = SOURCE.read_bytes() + b"\0" + IFMA_SOURCE.read_bytes()
    except OSError as e:
        raise NativeUnavailable(f"the native engine's source is missing: {e}") from None
    digest = hashlib.sha256(b"\0".join([source, cc.encode(), *(f.encode() for f in CFLAGS + LIBS)])).hexdigest()[:16]
    return compile_cached(cache_dir() / f"gmp_batch-{digest}.so", cc, CFLAGS, [SOURCE], "the native engine", 120)


def compile_cached(out: Path, cc: str, flags: tuple[str, ...], sources: list[Path], what: str, timeout: int) -> Path:
    """out, compiled from sources (with LIBS) unless it exists: built under a temporary name
    beside it and renamed, so a concurrent or interrupted build never leaves half a library.
    NativeUnavailable naming ``what`` where the compiler fails or cannot run."""
    if out.exists():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            proc = subprocess.run([cc, *flags, "-o", str(tmp_out), *(str(s) for s in sources), *LIBS],
                                  capture_output=True, text=True, timeout=timeout)
            if proc.returncode:
                raise NativeUnavailable(f"building {what} with {cc} failed: "
                                        f"{proc.stderr.strip()[-800:] or proc.returncode}")
            os.replace(tmp_out, out)
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"cannot build {what} with {cc}: {e}") from None
    return out


def load(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """The library at ``path`` (what a worker is told to use), else built here; cached per process."""
    key = str(path) if path is not None else ""
    with _lock:
        lib = _libs.get(key)
        if lib is not None:
            return lib
        if key in _failed:
            raise NativeUnavailable(_failed[key])
        try:
            file = str(path) if path is not None else str(build())
            try:
                lib = ctypes.CDLL(file)
            except OSError as e:
                raise NativeUnavailable(f"cannot load the native engine {file}: {e}") from None
            if lib.hea_limb_bits() != 64:
                raise NativeUnavailable("the native engine needs GMP with 64-bit limbs")
        except NativeUnavailable as e:
            _failed[key] = str(e)
            raise
        _declare(lib)
        lib.path = file  # type: ignore[attr-defined]
        _libs[key] = _libs[file] = lib
        return lib


def _declare(lib: ctypes.CDLL) -> None:
    bad = ctypes.POINTER(ctypes.c_int)
    lib.hea_mulmod.restype = ctypes.c_long
    lib.hea_mulmod.argtypes = [_c_ptr, _c_size, _c_ptr, _c_ptr, ctypes.c_void_p, _c_size, _c_size, bad]
    lib.hea_product.restype = ctypes.c_long
    lib.hea_product.argtypes = [_c_ptr, _c_size, _c_ptr, _c_size, _c_size, ctypes.c_void_p]
    lib.hea_product_redc.restype = ctypes.c_long
    lib.hea_product_redc.argtypes = lib.hea_product.argtypes
    lib.hea_product_groups.restype = ctypes.c_long
    lib.hea_product_groups.argtypes = [_c_ptr, _c_size, _c_ptr, ctypes.POINTER(ctypes.c_size_t), _c_size, _c_size,
                                       ctypes.c_void_p]
    lib.hea_add_plain.restype = ctypes.c_long
    lib.hea_add_plain.argtypes = [_c_ptr, _c_size, _c_ptr, _c_size, _c_ptr, _c_ptr, ctypes.c_void_p, _c_size, bad]
    lib.hea_djn_table.restype = ctypes.c_long
    lib.hea_djn_table.argtypes = [_c_ptr, _c_size, _c_ptr, _c_size, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.hea_djn_encrypt.restype = ctypes.c_long
    lib.hea_djn_encrypt.argtypes = [_c_ptr, _c_size, _c_ptr, _c_size, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                    _c_ptr, _c_ptr, ctypes.c_void_p, _c_size, bad]
    lib.hea_ifma_available.restype = ctypes.c_int
    lib.hea_ifma_available.argtypes = []
    lib.hea_ifma_digits.restype = _c_size
    lib.hea_ifma_digits.argtypes = [_c_size]
    lib.hea_djn_table52.restype = ctypes.c_long
    lib.hea_djn_table52.argtypes = lib.hea_djn_table.argtypes
    lib.hea_djn_encrypt52.restype = ctypes.c_long
    lib.hea_djn_encrypt52.argtypes = lib.hea_djn_encrypt.argtypes


def probe() -> tuple[str | None, str | None]:
    """(path of the loaded library, None) or (None, why not): never raises."""
    try:
        return load().path, None  # type: ignore[attr-defined]
    except NativeUnavailable as e:
        return None, str(e)


# -- batch calls on blobs --------------------------------------------------------------------
def _bytes(x: int, width: int) -> bytes:
    return int(x).to_bytes(width, "little")


#: The gmpy2 path's messages, so that both paths fail alike.
_CIPHER = "{what}[{index}] is out of range: must be in [1, n^2)"
_PLAIN = "{what}[{index}] is out of range: must be < n"


def _check(result: int, what: tuple, bad: ctypes.c_int, offset: int) -> None:
    """Raise for a failed call: ``what[bad]`` is (name, message) of the operand refused."""
    if result == -1:
        return
    if result == -2:
        raise NativeError("the native engine ran out of memory")
    name, message = what[bad.value]
    raise ValueError(message.format(what=name, index=offset + result))


def mulmod(lib, a: bytes, b: bytes, mod: int, width: int, offset: int = 0) -> bytes:
    count = len(a) // width
    out = ctypes.create_string_buffer(count * width)
    bad = ctypes.c_int(0)
    r = lib.hea_mulmod(_bytes(mod, width), width, a, b, out, count, width, ctypes.byref(bad))
    _check(r, (("ciphertext a", _CIPHER), ("ciphertext b", _CIPHER)), bad, offset)
    return out.raw


def product(lib, a: bytes, mod: int, width: int, offset: int = 0) -> bytes:
    out = ctypes.create_string_buffer(width)
    r = lib.hea_product_redc(_bytes(mod, width), width, a, len(a) // width, width, out)
    _check(r, (("ciphertext", _CIPHER),), ctypes.c_int(0), offset)
    return out.raw


def product_groups(lib, a: bytes, counts: list[int], mod: int, width: int) -> bytes:
    """The product mod ``mod`` of each consecutive run of ``counts[g]`` numbers (1 for none)."""
    groups = len(counts)
    out = ctypes.create_string_buffer(max(groups, 1) * width)
    sizes = (ctypes.c_size_t * max(groups, 1))(*counts)
    r = lib.hea_product_groups(_bytes(mod, width), width, a, sizes, groups, width, out)
    _check(r, (("ciphertext", _CIPHER),), ctypes.c_int(0), 0)
    return out.raw[:groups * width]


def add_plain(lib, cs: bytes, ms: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    count = len(cs) // cw
    out = ctypes.create_string_buffer(count * cw)
    bad = ctypes.c_int(0)
    r = lib.hea_add_plain(_bytes(n, pw), pw, _bytes(n * n, cw), cw, cs, ms, out, count, ctypes.byref(bad))
    _check(r, (("ciphertext", _CIPHER), ("plaintext", _PLAIN)), bad, offset)
    return out.raw


#: The DJN engines of the native library: "mpn" (portable: GMP's constant-time calls, 64-bit
#: limbs) and "ifma" (AVX-512 IFMA, 52-bit digits; x86-64 CPUs that have it, see djn_ifma.c).
ENGINES = ("mpn", "ifma")


def ifma_unavailable(lib, ciphertext_width: int) -> str | None:
    """Why the IFMA engine cannot run this size here, or None when it can."""
    if os.environ.get("HEA_CPU_IFMA", "").strip().lower() in ("0", "no", "off", "false"):
        return "turned off by HEA_CPU_IFMA"
    if not lib.hea_ifma_available():
        return "this CPU (or compiler) has no AVX-512 IFMA"
    if not ifma_digits(ciphertext_width):
        return f"ciphertexts of {ciphertext_width} bytes are beyond the IFMA path's sizes"
    return None


def djn_engine(lib, ciphertext_width: int) -> str:
    """The engine DJN encryption uses here: "ifma" where the CPU has it (runtime CPUID check) and
    HEA_CPU_IFMA does not turn it off, else the portable "mpn"."""
    return "mpn" if ifma_unavailable(lib, ciphertext_width) else "ifma"


#: The IFMA path's largest size: 24 x 8 digits of 52 bits (HEA_IFMA_MAX_ZMM in djn_ifma.c).
IFMA_MAX_DIGITS = 192


def ifma_digits(ciphertext_width: int) -> int:
    """52-bit digits per number on the IFMA path (a multiple of 8 with 2^(52 digits) > 2 n^2),
    0 beyond its sizes; the same as djn_ifma.c's hea_ifma_digits."""
    digits = -(-(8 * ciphertext_width + 1) // 52)
    digits = -(-digits // 8) * 8
    return digits if digits <= IFMA_MAX_DIGITS else 0


def _table_shape(exponent_bits: int, window: int, cw: int, engine: str) -> tuple[int, int, int]:
    if engine not in ENGINES:
        raise ValueError(f"unknown DJN engine {engine!r}: one of {ENGINES}")
    width = -(-cw // 8) if engine == "mpn" else ifma_digits(cw)
    if not width:
        raise ValueError(f"the IFMA engine does not take {cw}-byte ciphertexts")
    return -(-exponent_bits // window), 1 << window, width


def _aligned(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint64 array on a 64-byte boundary (whole cache lines per vector load)."""
    count = int(np.prod(shape))
    raw = np.empty(count + 8, dtype=np.uint64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip:skip + count].reshape(shape)


def djn_table_build(lib, n: int, hs: int, exponent_bits: int, window: int, cw: int, engine: str = "mpn") -> np.ndarray:
    """The comb table in Montgomery form, a window's entries contiguous, shape (windows, 2^window, width):
    engine "mpn": T[k][d] = hs^(d 2^(window k)) R mod n^2 with R = 2^(64 limbs), ``width`` uint64 limbs;
    engine "ifma": R = 2^(52 digits), ``width`` 52-bit digits in uint64 (hea_ifma_digits: a multiple of 8)."""
    shape = _table_shape(exponent_bits, window, cw, engine)
    table = _aligned(shape)
    build = lib.hea_djn_table if engine == "mpn" else lib.hea_djn_table52
    if build(_bytes(n * n, cw), cw, _bytes(hs, cw), cw, shape[0], window, table.ctypes.data) != -1:
        raise ValueError("DJN comb table: hs must be below n^2, and n odd")
    return table


@lru_cache(maxsize=4)
def djn_table(lib_path: str, n: int, hs: int, exponent_bits: int, window: int, cw: int,
              path: str | None = None, engine: str = "mpn") -> np.ndarray:
    """The table from ``path`` (memory-mapped: every process on the machine shares its pages)
    when that file holds it, else built here; cached per process either way."""
    shape = _table_shape(exponent_bits, window, cw, engine)
    if path is not None:
        try:
            table = np.load(path, mmap_mode="r")
            if table.shape == shape and table.dtype == np.uint64 and table.flags.c_contiguous:
                return table
        except (OSError, ValueError):
            pass  # missing or damaged: build it
    return djn_table_build(load(lib_path), n, hs, exponent_bits, window, cw, engine)


def djn_encrypt(lib, ms: bytes | None, rs: bytes, n: int, hs: int, exponent_bits: int, window: int,
                pw: int, cw: int, table_path: str | None = None, offset: int = 0, engine: str | None = None) -> bytes:
    """(1 + m n) hs^r mod n^2 per (m, r), or hs^r alone without plaintexts (see gmp_batch.c and
    djn_ifma.c). ``engine``: None for :func:`djn_engine`'s choice; ``table_path`` must hold that
    engine's table."""
    engine = engine or djn_engine(lib, cw)
    why = ifma_unavailable(lib, cw) if engine == "ifma" else None
    if why:
        raise NativeUnavailable(f"the IFMA DJN engine cannot run: {why}")
    count = len(rs) // pw
    table = djn_table(lib.path, int(n), int(hs), exponent_bits, window, cw, table_path, engine)
    out = ctypes.create_string_buffer(count * cw)
    bad = ctypes.c_int(0)
    encrypt = lib.hea_djn_encrypt if engine == "mpn" else lib.hea_djn_encrypt52
    r = encrypt(_bytes(n, pw), pw, _bytes(n * n, cw), cw, table.ctypes.data, table.shape[0], window,
                rs, ms, out, count, ctypes.byref(bad))
    if r == -3:
        raise NativeUnavailable("the IFMA DJN engine refused this CPU or size")
    if r >= 0 and bad.value == 0:
        raise ValueError("a DJN exponent is longer than the key's exponent_bits")
    _check(r, (("exponent", _PLAIN), ("plaintext", _PLAIN)), bad, offset)
    return out.raw


#: The IFMA engine's comb window (see djn_window).
IFMA_WINDOW = 6

#: Most bytes one key's native comb table may take.
DJN_TABLE_BYTES = 64 << 20


def djn_window(ciphertext_width: int, exponent_bits: int, engine: str = "mpn") -> int:
    """The comb window (4..9 bits) of the native DJN path. Each window costs one Montgomery
    multiplication (~ limbs^2) plus a constant-time selection that reads all 2^w entries
    (~ 2^w limbs), so wider windows mean fewer multiplications but longer reads.
    Engine "mpn": the weights are the two costs measured on gmp_batch (AMD EPYC, 64 limbs: 4.1 us
    and 0.65 us for 128 entries). Engine "ifma": 6, the fastest of w = 4..9 measured at 1024, 2048
    and 3072-bit keys (AMD EPYC, bench/RESULTS.md); 5 and 7 were within 1-20%, 8 was 1.6x slower:
    its multiplication is 8x cheaper, so the scan weighs more."""
    if engine == "ifma":
        w, digits = IFMA_WINDOW, ifma_digits(ciphertext_width)
        while w > 4 and -(-exponent_bits // w) * (1 << w) * digits * 8 > DJN_TABLE_BYTES:
            w -= 1
        return w
    limbs = -(-ciphertext_width // 8)
    best_w, best = 4, None
    for w in range(4, 10):
        windows = -(-exponent_bits // w)
        if windows * (1 << w) * limbs * 8 > DJN_TABLE_BYTES:
            break
        cost = windows * (limbs * limbs * 1.0e-3 + (1 << w) * limbs * 7.9e-5)
        if best is None or cost < best:
            best_w, best = w, cost
    return best_w
