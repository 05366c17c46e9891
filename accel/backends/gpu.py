"""The CUDA backend: the raw batch API on the kernels of ``kernels/*.cu``.

Same interface and edge behaviour as :class:`~accel.backends.cpu.CpuBackend` (validation and
CSPRNG randomness live in :class:`~accel.backends.base.Backend`; r is drawn on the host and
copied over, never curand). Specific to this backend:

* **Device-resident batches.** Pass device limb arrays (from :meth:`GpuBackend.to_device` or
  a previous result) and results stay on the device: encrypt -> add -> matvec -> decrypt
  with no host round trip. :meth:`to_host` brings them back as numpy limbs.
* **Splitting.** Host batches are cut into pieces that fit the device memory (and
  ``max_batch``); pieces go to every device given, one thread per device.
* **Fallback.** A device failure (out of memory, launch or driver error, a key size with no
  kernel class, an even powmod modulus) reruns that call on the CPU backend with the same
  inputs and randomness, logs a warning and counts it in ``stats["cpu_fallbacks"]``; nothing
  is lost. Bad input is not a device failure: it raises the CPU backend's ValueError.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from ..djn import DjnKey
from ..gpu import errors as E
from ..gpu.limbs import (
    UnsupportedSizeError,
    crt_rec,
    key_class,
    mod_class,
    mod_rec,
    montgomery_powers,
    pub_rec,
    signed_magnitudes,
)
from ..gpu.build import COOP_TPI
from ..gpu.runtime import DeviceFailure, KernelRuntime
from ..keys import PrivateKey, PublicKey, RandomSource
from ..packing import to_blob
from .base import Backend, KeyMismatchError, _int_matrix, _need_djn, _need_private, _need_public, _signed_ints

log = logging.getLogger(__name__)

#: Elements per launch at most (pieces also shrink to fit free device memory).
DEFAULT_MAX_BATCH = 1 << 18
#: Tree fan-in of the sum kernel.
SUM_CHUNK = 32
#: Batches below this many elements per extra device stay on one device.
MIN_PER_DEVICE = 4096


class DeviceFallbackWarning(RuntimeWarning):
    """A call ran on the CPU because the device failed; the result is still correct."""


def _make_runtimes(runtime: Any, devices: Sequence[int] | None) -> list[KernelRuntime]:
    if isinstance(runtime, KernelRuntime):
        return [runtime]
    if isinstance(runtime, (list, tuple)) and runtime and all(isinstance(r, KernelRuntime) for r in runtime):
        return list(runtime)
    if runtime in (None, "cupy"):
        from ..gpu.runtime import CupyRuntime  # noqa: PLC0415

        if devices is None:
            import cupy  # noqa: PLC0415

            devices = range(cupy.cuda.runtime.getDeviceCount())
        out = [CupyRuntime(d) for d in devices]
        if not out:
            raise RuntimeError("CuPy sees no CUDA device")
        return out
    if runtime == "emulated":
        from ..gpu.emulator import EmulatedRuntime  # noqa: PLC0415

        return [EmulatedRuntime(d) for d in (devices or [0])]
    if callable(runtime):
        return [runtime(d) for d in (devices or [0])]
    raise ValueError(f"unknown runtime {runtime!r}")


class GpuBackend(Backend):
    """Paillier batch arithmetic on CUDA devices.

    Args:
        devices: device ids to use (default: every device CuPy sees).
        runtime: ``"cupy"`` (default), ``"emulated"`` (the kernels compiled for the CPU: tests),
            a :class:`KernelRuntime`, a list of them, or a factory ``device_id -> runtime``.
        fallback: the backend that takes over when a device fails (default: a CpuBackend made
            on first need and closed with this one).
        max_batch: most elements per launch.
        min_per_device: batches are shared among devices only in pieces at least this large.
        rng: randomness source (default: the OS CSPRNG).
        cooperative: run textbook encryption, obfuscators and ``powmod`` (when no exponent is
            negative) on the cooperative kernels (a group of threads per number, limbs in
            registers: ``kernels/paillier_coop.cu``, ``kernels/modexp_coop.cu``). Opt-in until
            they are measured on a device: None (default) reads ``HEA_GPU_COOPERATIVE=1``;
            False keeps the one-thread-per-number kernels for every call.
    """

    name = "gpu"

    def __init__(self, devices: Sequence[int] | None = None, *, runtime: Any = None,
                 fallback: Backend | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 min_per_device: int = MIN_PER_DEVICE, rng: RandomSource | None = None,
                 cooperative: bool | None = None):
        super().__init__(rng=rng)
        if cooperative is None:
            cooperative = os.environ.get("HEA_GPU_COOPERATIVE", "") == "1"
        self.cooperative = bool(cooperative)
        try:
            self.runtimes = _make_runtimes(runtime, devices)
        except ImportError as e:
            raise ImportError(f"CuPy is not installed: {e}") from e
        self.max_batch = max(1, int(max_batch))
        self.min_per_device = max(1, int(min_per_device))
        self._fallback = fallback
        self._own_fallback = fallback is None
        self._lock = threading.Lock()
        self._pub_cache: dict[tuple[int, int], Any] = {}
        self._djn_cache: dict[tuple[int, int, int, int], Any] = {}
        self._closed = False
        self.stats: Counter = Counter()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "devices": [rt.describe() for rt in self.runtimes],
                "max_batch": self.max_batch}

    def __repr__(self) -> str:
        return f"<GpuBackend {[rt.describe() for rt in self.runtimes]}>"

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pub_cache.clear()
            self._djn_cache.clear()
            fb, self._fallback = self._fallback, None
        if fb is not None and self._own_fallback:
            fb.close()

    @property
    def fallback(self) -> Backend:
        with self._lock:
            if self._closed:
                raise RuntimeError("this GpuBackend is closed")
            if self._fallback is None:
                from .cpu import CpuBackend  # noqa: PLC0415

                self._fallback = CpuBackend()
            return self._fallback

    # -- device arrays -------------------------------------------------------------------------
    def to_device(self, batch: Any, width: int, *, device: int = 0) -> Any:
        """Copy a batch (ints, limbs or blob) of ``width``-byte numbers to a device."""
        blob, _ = to_blob(batch, width, "value")
        return self.runtimes[device].upload(_limbs(blob, width))

    def to_host(self, dev: Any) -> np.ndarray:
        """A device limb array back as numpy limbs."""
        return self._runtime_of(dev).download(dev)

    def is_device(self, x: Any) -> bool:
        return any(rt.is_device(x) for rt in self.runtimes)

    def _runtime_of(self, x: Any) -> KernelRuntime:
        for rt in self.runtimes:
            if rt.is_device(x):
                dev_id = getattr(getattr(x, "device", None), "id", rt.device_id)
                if dev_id == rt.device_id:
                    return rt
        for rt in self.runtimes:
            if rt.is_device(x):
                return rt
        raise TypeError("not a device array of this backend")

    # -- launching -----------------------------------------------------------------------------
    def _launch(self, rt: KernelRuntime, kernel: str, threads: int, args: list[Any], *,
                offset: int = 0, names: dict[int, str] | None = None) -> None:
        err = rt.upload(np.array([E.NO_ERROR], dtype=np.uint64))
        rt.launch(kernel, threads, [*args, err])
        self.stats["launches"] += 1
        E.raise_for(rt.download(err)[0], offset, names)

    def _pub(self, rt: KernelRuntime, pk: PublicKey) -> tuple[int, Any]:
        lp = key_class(pk)
        key = (id(rt), pk.n)
        with self._lock:
            rec = self._pub_cache.get(key)
        if rec is None:
            rec = rt.upload(pub_rec(pk, lp))
            with self._lock:
                if len(self._pub_cache) > 64:
                    self._pub_cache.clear()
                self._pub_cache[key] = rec
        return lp, rec

    def _fallback_call(self, reason: BaseException, cpu: Callable[[], Any]) -> Any:
        self.stats["cpu_fallbacks"] += 1
        msg = f"GPU backend fell back to the CPU for one call: {reason}"
        log.warning(msg)
        warnings.warn(msg, DeviceFallbackWarning, stacklevel=4)
        return cpu()

    def _pieces(self, count: int, bytes_per_element: int) -> list[tuple[KernelRuntime, int, int]]:
        """(runtime, start, stop) pieces: devices share large batches; each piece fits memory."""
        n_dev = max(1, min(len(self.runtimes), count // self.min_per_device))
        per_dev = -(-count // n_dev)
        out = []
        for d in range(n_dev):
            rt = self.runtimes[d]
            lo, hi = d * per_dev, min(count, (d + 1) * per_dev)
            cap = self.max_batch
            free = rt.free_bytes()
            if free is not None:  # half the free memory, shared by the pieces in flight
                cap = max(1, min(cap, int(free * 0.5) // rt.streams // max(1, bytes_per_element)))
            if rt.streams > 1 and hi - lo >= self.min_per_device:  # a piece per stream
                cap = min(cap, -(-(hi - lo) // rt.streams))
            for s in range(lo, hi, cap):
                out.append((rt, s, min(hi, s + cap)))
        if len(out) > n_dev:
            self.stats["split_batches"] += 1
        return out

    def _elementwise(self, count: int, inputs: list[tuple[bytes | None, int]], out_width: int,
                     device_fn: Callable[[KernelRuntime, list[Any], int], Any],
                     cpu_fn: Callable[[], bytes]) -> bytes:
        """Run an element-wise op over host blobs, piece by piece, devices in parallel."""
        if count == 0:
            return b""
        per = out_width + sum(w for _, w in inputs)
        try:
            pieces = self._pieces(count, per)

            def run(piece):
                rt, s, e = piece
                devs = [None if b is None else rt.upload(_limbs(b[s * w : e * w], w)) for b, w in inputs]
                return rt.download(device_fn(rt, devs, s)).tobytes()

            # One host thread per stream of every device used: pieces on different streams
            # overlap their copies with each other's kernels, devices run side by side.
            used = {id(p[0]): p[0] for p in pieces}.values()
            workers = min(len(pieces), sum(rt.streams for rt in used))
            if workers > 1:
                with ThreadPoolExecutor(workers) as ex:
                    parts = list(ex.map(run, pieces))
            else:
                parts = [run(p) for p in pieces]
            return b"".join(parts)
        except (DeviceFailure, UnsupportedSizeError) as e:
            return self._fallback_call(e, cpu_fn)

    # -- device-level ops (device arrays in, device arrays out) ----------------------------------
    def _d_encrypt(self, rt, pk, ms, rs, offset=0):
        lp, key = self._pub(rt, pk)
        out = rt.empty((ms.shape[0], pk.ciphertext_width // 4))
        if self.cooperative:  # a group of COOP_TPI[2 lp] threads per number (mod n^2)
            kernel, threads = f"paillier_encrypt_coop_{lp}", ms.shape[0] * COOP_TPI[2 * lp]
        else:
            kernel, threads = f"paillier_encrypt_{lp}", ms.shape[0]
        self._launch(rt, kernel, threads,
                     [out, ms, rs, np.uint64(ms.shape[0]), key, np.int32(ms.shape[1]), np.int32(out.shape[1])],
                     offset=offset)
        return out

    def _d_obfuscate(self, rt, pk, rs, offset=0):
        lp, key = self._pub(rt, pk)
        out = rt.empty((rs.shape[0], pk.ciphertext_width // 4))
        if self.cooperative:
            kernel, threads = f"paillier_obfuscate_coop_{lp}", rs.shape[0] * COOP_TPI[2 * lp]
        else:
            kernel, threads = f"paillier_obfuscate_{lp}", rs.shape[0]
        self._launch(rt, kernel, threads,
                     [out, rs, np.uint64(rs.shape[0]), key, np.int32(rs.shape[1]), np.int32(out.shape[1])],
                     offset=offset)
        return out

    def _d_rerandomize(self, rt, pk, cs, rs, offset=0):
        lp, key = self._pub(rt, pk)
        out = rt.empty(cs.shape)
        self._launch(rt, f"paillier_rerandomize_{lp}", cs.shape[0],
                     [out, cs, rs, np.uint64(cs.shape[0]), key, np.int32(rs.shape[1]), np.int32(cs.shape[1])],
                     offset=offset)
        return out

    def _d_encrypt_with(self, rt, pk, ms, obf, offset=0):
        lp, key = self._pub(rt, pk)
        out = rt.empty((ms.shape[0], pk.ciphertext_width // 4))
        self._launch(rt, f"paillier_encrypt_with_{lp}", ms.shape[0],
                     [out, ms, obf, np.int32(obf is not None), np.uint64(ms.shape[0]), key,
                      np.int32(ms.shape[1]), np.int32(out.shape[1])],
                     offset=offset, names={E.CIPHERTEXT_RANGE: "obfuscator"})
        return out

    def _d_crt(self, rt, sk, ms, zp, zq, offset=0):
        pk = sk.public_key
        lp = key_class(pk, sk)
        key = rt.upload(crt_rec(sk, lp))  # secret: per call, wiped before its memory is reused
        try:
            count = zp.shape[0]
            out = rt.empty((count, pk.ciphertext_width // 4))
            cs_ = np.int32(out.shape[1])
            if ms is None:
                self._launch(rt, f"paillier_crt_obfuscate_{lp}", count,
                             [out, zp, zq, np.uint64(count), key, np.int32(zp.shape[1]), cs_], offset=offset)
            else:
                self._launch(rt, f"paillier_crt_encrypt_{lp}", count,
                             [out, ms, zp, zq, np.uint64(count), key, np.int32(ms.shape[1]), cs_], offset=offset)
            return out
        finally:
            rt.wipe(key)

    def _d_decrypt(self, rt, sk, cs, offset=0):
        pk = sk.public_key
        lp = key_class(pk, sk)
        key = rt.upload(crt_rec(sk, lp))
        try:
            out = rt.empty((cs.shape[0], pk.plaintext_width // 4))
            self._launch(rt, f"paillier_decrypt_{lp}", cs.shape[0],
                         [out, cs, np.uint64(cs.shape[0]), key, np.int32(out.shape[1]), np.int32(cs.shape[1])],
                         offset=offset)
            return out
        finally:
            rt.wipe(key)

    def _d_add(self, rt, pk, a, b, offset=0, names=None):
        lp, key = self._pub(rt, pk)
        out = rt.empty(a.shape)
        self._launch(rt, f"he_add_{lp}", a.shape[0], [out, a, b, np.uint64(a.shape[0]), key, np.int32(a.shape[1])],
                     offset=offset, names=names or {})
        return out

    def _d_add_plain(self, rt, pk, cs, ms, offset=0):
        lp, key = self._pub(rt, pk)
        out = rt.empty(cs.shape)
        self._launch(rt, f"he_add_plain_{lp}", cs.shape[0],
                     [out, cs, ms, np.uint64(cs.shape[0]), key, np.int32(ms.shape[1]), np.int32(cs.shape[1])],
                     offset=offset)
        return out

    def _d_mul(self, rt, pk, cs, ks: list[int], offset=0):
        lp, key = self._pub(rt, pk)
        kl = max(1, -(-max((abs(k).bit_length() for k in ks), default=1) // 32))
        mags, neg = signed_magnitudes(ks, kl)
        out = rt.empty(cs.shape)
        self._launch(rt, f"he_mul_scalar_{lp}", cs.shape[0],
                     [out, cs, rt.upload(mags), rt.upload(neg), np.uint64(cs.shape[0]), key,
                      np.int32(cs.shape[1]), np.int32(kl)], offset=offset)
        return out

    def _d_sum(self, rt, pk, cs, offset=0):
        """Tree reduction: one launch per level of fan-in SUM_CHUNK; returns a (1, width) array."""
        lp, key = self._pub(rt, pk)
        r_powers = rt.upload(montgomery_powers(pk.nsquare, 2 * lp, SUM_CHUNK))
        cur, check = cs, 1
        while True:
            count = cur.shape[0]
            groups = -(-count // SUM_CHUNK)
            out = rt.empty((groups, cs.shape[1]))
            self._launch(rt, f"he_product_{lp}", groups,
                         [out, cur, np.uint64(count), np.uint64(SUM_CHUNK), key, r_powers,
                          np.int32(cs.shape[1]), np.int32(check)], offset=offset)
            cur, check = out, 0
            if groups == 1:
                return cur

    def _d_matvec(self, rt, pk, cs, rows_x: list[list[int]], offset=0):
        lp, key = self._pub(rt, pk)
        rows, cols = cs.shape[0], len(rows_x[0])
        flat = [x for row in rows_x for x in row]
        bits = max((abs(x).bit_length() for x in flat), default=0)
        xl = max(1, -(-bits // 32))
        mags, neg = signed_magnitudes(flat, xl)
        has_neg = int(neg.any())
        w = 2 * lp
        tables = rt.empty((rows, 16, w))
        self._launch(rt, f"matvec_tables_{lp}", rows,
                     [tables, cs, np.uint64(rows), key, np.int32(cs.shape[1])], offset=offset)
        # Row chunks: enough (chunk, column) threads to fill the device, few enough that the
        # squarings (shared by a chunk's rows) stay a small part of the work.
        chunk_rows = max(1, min(rows, (rows * cols) // 16384 or 1))
        chunks = -(-rows // chunk_rows)
        pos = rt.empty((chunks * cols, w))
        negs = rt.empty((chunks * cols, w)) if has_neg else None
        err_free = [pos, negs, tables, rt.upload(mags), rt.upload(neg), np.uint64(rows), np.uint64(cols),
                    np.uint64(chunk_rows), np.int32(xl), np.int32(bits), np.int32(has_neg), key]
        rt.launch(f"matvec_partial_{lp}", chunks * cols, err_free)
        self.stats["launches"] += 1
        out = rt.empty((cols, cs.shape[1]))
        self._launch(rt, f"matvec_finish_{lp}", cols,
                     [out, pos, negs, np.uint64(chunks), np.uint64(cols), np.int32(has_neg), key,
                      np.int32(cs.shape[1])], names={E.NOT_INVERTIBLE: "matvec column"})
        return out

    def _djn_table(self, rt, pk: PublicKey, djn: DjnKey):
        lp, key = self._pub(rt, pk)
        windows = djn.exponent_bits // 4
        ck = (id(rt), pk.n, djn.hs, djn.exponent_bits)
        with self._lock:
            tab = self._djn_cache.get(ck)
        if tab is None:
            w = 2 * lp
            hs_m = (djn.hs << (32 * w)) % pk.nsquare
            tab = rt.empty((windows, 16, w))
            rt.launch(f"djn_table_{lp}", windows, [tab, rt.upload(_int_limbs(hs_m, w)), np.int32(windows), key])
            self.stats["launches"] += 1
            with self._lock:
                if len(self._djn_cache) > 8:
                    self._djn_cache.clear()
                self._djn_cache[ck] = tab
        return lp, key, tab, windows

    def _d_djn(self, rt, pk, djn, ms, rs, offset=0):
        lp, key, tab, windows = self._djn_table(rt, pk, djn)
        count = rs.shape[0]
        out = rt.empty((count, pk.ciphertext_width // 4))
        ps = ms.shape[1] if ms is not None else rs.shape[1]
        self._launch(rt, f"djn_encrypt_{lp}", count,
                     [out, ms, np.int32(ms is not None), rs, np.uint64(count), tab, np.int32(windows), key,
                      np.int32(ps), np.int32(rs.shape[1]), np.int32(out.shape[1])], offset=offset)
        return out

    # -- blob hooks ----------------------------------------------------------------------------
    def _encrypt(self, pk, ms, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(ms) // pw, [(ms, pw), (rs, pw)], cw,
                                 lambda rt, d, s: self._d_encrypt(rt, pk, d[0], d[1], s),
                                 lambda: self.fallback._encrypt(pk, ms, rs))

    def _encrypt_crt(self, sk, ms, zp, zq):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(ms) // pw, [(ms, pw), (zp, pw), (zq, pw)], cw,
                                 lambda rt, d, s: self._d_crt(rt, sk, d[0], d[1], d[2], s),
                                 lambda: self.fallback._encrypt_crt(sk, ms, zp, zq))

    def _encrypt_with(self, pk, ms, obf):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        count = len(ms) // pw
        if obf is not None and len(obf) != count * cw:
            raise ValueError(f"got {len(obf) // cw} obfuscators for {count} plaintexts")
        return self._elementwise(count, [(ms, pw), (obf, cw)], cw,
                                 lambda rt, d, s: self._d_encrypt_with(rt, pk, d[0], d[1], s),
                                 lambda: self.fallback._encrypt_with(pk, ms, obf))

    def _encrypt_djn(self, pk, djn, ms, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(rs) // pw, [(ms, pw), (rs, pw)], cw,
                                 lambda rt, d, s: self._d_djn(rt, pk, djn, d[0], d[1], s),
                                 lambda: self.fallback._encrypt_djn(pk, djn, ms, rs))

    def _obfuscators(self, pk, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(rs) // pw, [(rs, pw)], cw,
                                 lambda rt, d, s: self._d_obfuscate(rt, pk, d[0], s),
                                 lambda: self.fallback._obfuscators(pk, rs))

    def _obfuscators_crt(self, sk, zp, zq):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(zp) // pw, [(zp, pw), (zq, pw)], cw,
                                 lambda rt, d, s: self._d_crt(rt, sk, None, d[0], d[1], s),
                                 lambda: self.fallback._obfuscators_crt(sk, zp, zq))

    def _decrypt(self, sk, cs):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(cs) // cw, [(cs, cw)], pw,
                                 lambda rt, d, s: self._d_decrypt(rt, sk, d[0], s),
                                 lambda: self.fallback._decrypt(sk, cs))

    def _add(self, pk, a, b):
        cw = pk.ciphertext_width
        names = {E.CIPHERTEXT_RANGE: "ciphertext a"}
        return self._elementwise(len(a) // cw, [(a, cw), (b, cw)], cw,
                                 lambda rt, d, s: self._d_add(rt, pk, d[0], d[1], s, names),
                                 lambda: self.fallback._add(pk, a, b))

    def _add_plain(self, pk, cs, ms):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(cs) // cw, [(cs, cw), (ms, pw)], cw,
                                 lambda rt, d, s: self._d_add_plain(rt, pk, d[0], d[1], s),
                                 lambda: self.fallback._add_plain(pk, cs, ms))

    def _mul(self, pk, cs, ks):
        cw = pk.ciphertext_width
        return self._elementwise(len(cs) // cw, [(cs, cw)], cw,
                                 lambda rt, d, s: self._d_mul(rt, pk, d[0], ks[s : s + d[0].shape[0]], s),
                                 lambda: self.fallback._mul(pk, cs, ks))

    def _rerandomize(self, pk, cs, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(cs) // cw, [(cs, cw), (rs, pw)], cw,
                                 lambda rt, d, s: self._d_rerandomize(rt, pk, d[0], d[1], s),
                                 lambda: self.fallback._rerandomize(pk, cs, rs))

    def _rerandomize_with(self, pk, cs, obf):
        cw = pk.ciphertext_width
        if len(obf) != len(cs):
            raise ValueError(f"got {len(obf) // cw} obfuscators for {len(cs) // cw} ciphertexts")
        names = {E.CIPHERTEXT_RANGE: "ciphertext", E.SECOND_RANGE: "obfuscator"}
        return self._elementwise(len(cs) // cw, [(cs, cw), (obf, cw)], cw,
                                 lambda rt, d, s: self._d_add(rt, pk, d[0], d[1], s, names),
                                 lambda: self.fallback._rerandomize_with(pk, cs, obf))

    def _sum(self, pk, cs):
        cw = pk.ciphertext_width
        count = len(cs) // cw
        if count == 0:
            return (1).to_bytes(cw, "little")
        partials = self._elementwise_reduce(count, cs, cw, lambda rt, d, s: self._d_sum(rt, pk, d, s),
                                            lambda: self.fallback._sum(pk, cs))
        return _combine(partials, pk.nsquare, cw)

    def _matvec(self, pk, cs, rows_x):
        cw = pk.ciphertext_width
        rows, cols = len(cs) // cw, len(rows_x[0])
        if cols == 0:
            return b""
        per_row = cw * 17 + 4 * cols * max(1, pk.n.bit_length() // 32)
        partials = self._elementwise_reduce(
            rows, cs, per_row, lambda rt, d, s: self._d_matvec(rt, pk, d, rows_x[s : s + d.shape[0]], s),
            lambda: self.fallback._matvec(pk, cs, rows_x), out_count=cols)
        return _combine(partials, pk.nsquare, cw, cols)

    def _elementwise_reduce(self, count, cs, per_element, device_fn, cpu_fn, out_count=1):
        """Pieces each reduce to ``out_count`` ciphertexts; returns the list of piece blobs."""
        cw = len(cs) // count
        try:
            parts = []
            for rt, s, e in self._pieces(count, per_element):
                dev = rt.upload(_limbs(cs[s * cw : e * cw], cw))
                parts.append(rt.download(device_fn(rt, dev, s)).tobytes())
            return parts
        except (DeviceFailure, UnsupportedSizeError) as e:
            return [self._fallback_call(e, cpu_fn)]

    def _powmod(self, bases, exps, mod):
        if mod % 2 == 0:  # Montgomery needs an odd modulus; documented CPU path
            self.stats["cpu_powmod_even_modulus"] += 1
            return self.fallback._powmod(bases, exps, mod)
        count = len(bases)
        if count == 0:
            return []
        try:
            lc = mod_class(mod)
            rt = self.runtimes[0]
            el = max(1, -(-max((abs(e).bit_length() for e in exps), default=1) // 32))
            mags, neg = signed_magnitudes(exps, el)
            base_limbs = np.stack([_int_limbs(b, lc) for b in bases])
            out = rt.empty((count, lc))
            if self.cooperative and not neg.any():
                # one group of COOP_TPI[lc] threads per number; negative exponents need the
                # one-thread kernel's per-element inversion
                self._launch(rt, f"powmod_coop_{lc}", count * COOP_TPI[lc],
                             [out, rt.upload(base_limbs), rt.upload(mags), np.uint64(count),
                              rt.upload(mod_rec(mod, lc)), np.int32(lc), np.int32(el), np.int32(0)])
                return [int.from_bytes(row.tobytes(), "little") for row in rt.download(out)]
            self._launch(rt, f"powmod_{lc}", count,
                         [out, rt.upload(base_limbs), rt.upload(mags), rt.upload(neg), np.uint64(count),
                          rt.upload(mod_rec(mod, lc)), np.int32(lc), np.int32(el), np.int32(0)],
                         names={E.NOT_INVERTIBLE: "powmod: base"})
            host = rt.download(out)
            return [int.from_bytes(row.tobytes(), "little") for row in host]
        except (DeviceFailure, UnsupportedSizeError) as e:
            return self._fallback_call(e, lambda: self.fallback._powmod(bases, exps, mod))

    # -- device-resident raw API ---------------------------------------------------------------
    def _dev_or_fallback(self, rt, device_fn, host_fn, host_inputs, out_is_device=True):
        try:
            return device_fn()
        except (DeviceFailure, UnsupportedSizeError) as e:
            hosts = [rt.download(x) if rt.is_device(x) else x for x in host_inputs]
            res = self._fallback_call(e, lambda: host_fn(*hosts))
            return rt.upload(np.asarray(res)) if out_is_device else res

    def _check_dev(self, x, width, what):
        if len(x.shape) != 2 or x.shape[1] * 4 != width:
            raise ValueError(f"{what} device array must have shape (batch, {width // 4}) limbs, got {x.shape}")

    def raw_encrypt(self, pk, ms, *, obfuscate=True, rng=None, obfuscators=None, private_key=None, djn=None):
        if not self.is_device(ms):
            return super().raw_encrypt(pk, ms, obfuscate=obfuscate, rng=rng, obfuscators=obfuscators,
                                       private_key=private_key, djn=djn)
        pk = _need_public(pk)
        rt = self._runtime_of(ms)
        self._check_dev(ms, pk.plaintext_width, "plaintext")
        count, pw = ms.shape[0], pk.plaintext_width
        if not obfuscate or obfuscators is not None:
            obf = obfuscators.take(count) if obfuscators is not None else None
            obf_d = rt.upload(_limbs(obf, pk.ciphertext_width)) if obf is not None else None
            return self._dev_or_fallback(
                rt, lambda: self._d_encrypt_with(rt, pk, ms, obf_d),
                lambda m: _limbs(self.fallback._encrypt_with(pk, m.tobytes(), obf), pk.ciphertext_width), [ms])
        if djn is not None:
            djn = _need_djn(pk, djn)
            rs = self._draw_djn(djn, count, rng)
            return self._dev_or_fallback(
                rt, lambda: self._d_djn(rt, pk, djn, ms, rt.upload(_limbs(rs, pw))),
                lambda m: _limbs(self.fallback._encrypt_djn(pk, djn, m.tobytes(), rs), pk.ciphertext_width), [ms])
        if private_key is not None:
            sk = self._check_private_matches(pk, private_key)
            zp, zq = self._draw_obfuscator_inputs(pk, count, rng, sk)
            return self._dev_or_fallback(
                rt, lambda: self._d_crt(rt, sk, ms, rt.upload(_limbs(zp, pw)), rt.upload(_limbs(zq, pw))),
                lambda m: _limbs(self.fallback._encrypt_crt(sk, m.tobytes(), zp, zq), pk.ciphertext_width), [ms])
        (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
        return self._dev_or_fallback(
            rt, lambda: self._d_encrypt(rt, pk, ms, rt.upload(_limbs(rs, pw))),
            lambda m: _limbs(self.fallback._encrypt(pk, m.tobytes(), rs), pk.ciphertext_width), [ms])

    def raw_decrypt(self, sk, cs):
        if not self.is_device(cs):
            return super().raw_decrypt(sk, cs)
        sk = _need_private(sk)
        pk = sk.public_key
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        return self._dev_or_fallback(
            rt, lambda: self._d_decrypt(rt, sk, cs),
            lambda c: _limbs(self.fallback._decrypt(sk, c.tobytes()), pk.plaintext_width), [cs])

    def raw_add(self, pk, c1, c2):
        if not (self.is_device(c1) and self.is_device(c2)):
            if self.is_device(c1) or self.is_device(c2):
                raise TypeError("raw_add needs both operands on the device or both on the host")
            return super().raw_add(pk, c1, c2)
        pk = _need_public(pk)
        rt = self._runtime_of(c1)
        self._check_dev(c1, pk.ciphertext_width, "ciphertext a")
        self._check_dev(c2, pk.ciphertext_width, "ciphertext b")
        if c1.shape[0] != c2.shape[0]:
            raise ValueError(f"length mismatch: {c1.shape[0]} vs {c2.shape[0]} elements")
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._d_add(rt, pk, c1, c2, 0, {E.CIPHERTEXT_RANGE: "ciphertext a"}),
            lambda a, b: _limbs(self.fallback._add(pk, a.tobytes(), b.tobytes()), cw), [c1, c2])

    def raw_add_plain(self, pk, cs, ms):
        if not self.is_device(cs):
            return super().raw_add_plain(pk, cs, ms)
        pk = _need_public(pk)
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        m_blob, _ = to_blob(rt.download(ms) if self.is_device(ms) else ms, pk.plaintext_width, "plaintext")
        if len(m_blob) // pk.plaintext_width != cs.shape[0]:
            raise ValueError(f"length mismatch: {cs.shape[0]} vs {len(m_blob) // pk.plaintext_width} elements")
        m_dev = rt.upload(_limbs(m_blob, pk.plaintext_width))
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._d_add_plain(rt, pk, cs, m_dev),
            lambda c: _limbs(self.fallback._add_plain(pk, c.tobytes(), m_blob), cw), [cs])

    def raw_mul(self, pk, cs, ks):
        if not self.is_device(cs):
            return super().raw_mul(pk, cs, ks)
        pk = _need_public(pk)
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        k = _signed_ints(ks, "scalar", pk.n)
        if len(k) != cs.shape[0]:
            raise ValueError(f"length mismatch: {cs.shape[0]} ciphertexts, {len(k)} scalars")
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._d_mul(rt, pk, cs, k),
            lambda c: _limbs(self.fallback._mul(pk, c.tobytes(), k), cw), [cs])

    def raw_sum(self, pk, cs):
        if not self.is_device(cs):
            return super().raw_sum(pk, cs)
        pk = _need_public(pk)
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        cw = pk.ciphertext_width
        if cs.shape[0] == 0:
            return rt.upload(_limbs((1).to_bytes(cw, "little"), cw))
        return self._dev_or_fallback(
            rt, lambda: self._d_sum(rt, pk, cs),
            lambda c: _limbs(self.fallback._sum(pk, c.tobytes()), cw), [cs])

    def raw_matvec(self, pk, cs, X):
        if not self.is_device(cs):
            return super().raw_matvec(pk, cs, X)
        pk = _need_public(pk)
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        rows_x, cols = _int_matrix(X, cs.shape[0], pk.n)
        cw = pk.ciphertext_width
        if cs.shape[0] == 0 or cols == 0:
            return rt.upload(_limbs((1).to_bytes(cw, "little") * cols, cw))
        return self._dev_or_fallback(
            rt, lambda: self._d_matvec(rt, pk, cs, rows_x),
            lambda c: _limbs(self.fallback._matvec(pk, c.tobytes(), rows_x), cw), [cs])

    def raw_rerandomize(self, pk, cs, *, rng=None, obfuscators=None, private_key=None):
        if not self.is_device(cs):
            return super().raw_rerandomize(pk, cs, rng=rng, obfuscators=obfuscators, private_key=private_key)
        pk = _need_public(pk)
        rt = self._runtime_of(cs)
        self._check_dev(cs, pk.ciphertext_width, "ciphertext")
        count, cw, pw = cs.shape[0], pk.ciphertext_width, pk.plaintext_width
        if obfuscators is not None or private_key is not None:
            if obfuscators is not None:
                obf = obfuscators.take(count)
            else:
                zp, zq = self._draw_obfuscator_inputs(pk, count, rng, private_key)
                obf = self._obfuscators_crt(private_key, zp, zq)
            obf_d = rt.upload(_limbs(obf, cw))
            return self._dev_or_fallback(
                rt, lambda: self._d_add(rt, pk, cs, obf_d, 0, {E.CIPHERTEXT_RANGE: "ciphertext",
                                                               E.SECOND_RANGE: "obfuscator"}),
                lambda c: _limbs(self.fallback._rerandomize_with(pk, c.tobytes(), obf), cw), [cs])
        (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
        return self._dev_or_fallback(
            rt, lambda: self._d_rerandomize(rt, pk, cs, rt.upload(_limbs(rs, pw))),
            lambda c: _limbs(self.fallback._rerandomize(pk, c.tobytes(), rs), cw), [cs])


def _limbs(blob: bytes, width: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4").astype(np.uint32).reshape(-1, width // 4)


def _int_limbs(x: int, count: int) -> np.ndarray:
    return np.frombuffer(int(x).to_bytes(4 * count, "little"), dtype="<u4").astype(np.uint32)


def _combine(parts: list[bytes], n2: int, cw: int, cols: int = 1) -> bytes:
    """Multiply piece results column-wise mod n^2 (pieces of a split sum or matvec)."""
    if len(parts) == 1:
        return parts[0]
    acc = [1] * cols
    for part in parts:
        for j in range(cols):
            acc[j] = acc[j] * int.from_bytes(part[j * cw : (j + 1) * cw], "little") % n2
    return b"".join(v.to_bytes(cw, "little") for v in acc)


__all__ = ["DeviceFallbackWarning", "GpuBackend", "KeyMismatchError"]
