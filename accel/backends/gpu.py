"""The CUDA backend: the raw batch API on the kernels of ``kernels/*.cu``.

Same interface and edge behaviour as :class:`~accel.backends.cpu.CpuBackend` (validation and
CSPRNG randomness live in :class:`~accel.backends.base.Backend`; r is drawn on the host and
copied over, never curand). Specific to this backend:

* **Device-resident batches.** Pass device limb arrays (from :meth:`GpuBackend.to_device` or
  a previous result) and results stay on the device: encrypt -> add -> matvec -> decrypt
  with no host round trip. :meth:`to_host` brings them back as numpy limbs.
* **Montgomery form (opt-in).** :meth:`GpuBackend.to_montgomery` (or ``to_device(...,
  montgomery=pk)``) turns device ciphertexts into a :class:`~accel.gpu.resident.MontgomeryArray`
  (c R mod n^2, converted on the device once per chain); the device-resident ``raw_*`` methods
  take and return those, an add costing one Montgomery multiplication instead of two
  (``kernels/resident_coop.cu``). :meth:`from_montgomery`, :meth:`to_host` and ``raw_decrypt``
  convert out. Plain arrays and another key's arrays are refused with a clear error.
* **Splitting.** Host batches are cut into pieces that fit the device memory (and
  ``max_batch``); pieces go to every device given, one thread per device.
* **Fallback.** A device failure (out of memory, launch or driver error, a key size with no
  kernel class, an even powmod modulus) reruns that call on the CPU backend with the same
  inputs and randomness, logs a warning and counts it in ``stats["cpu_fallbacks"]``; nothing
  is lost. Bad input is not a device failure: it raises the CPU backend's ValueError.

This module schedules (pieces, devices, streams, key records, fallback, counters); every
kernel is launched by its typed launcher in :mod:`accel.gpu.launch`.
"""
from __future__ import annotations

import functools
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
from ..gpu.launch import DJN_COMB_BITS, SUM_CHUNK, DeviceKey, Launcher  # noqa: F401 (SUM_CHUNK: its old home)
from ..gpu.limbs import UnsupportedSizeError, crt_rec, key_class, mod_class, pub_rec
from ..gpu.resident import MontgomeryArray, from_montgomery_limbs, montgomery_radix, to_montgomery_limbs
from ..gpu.runtime import DeviceFailure, KernelRuntime
from ..keys import PrivateKey, PublicKey, RandomSource
from ..packing import blob_to_limbs, to_blob
from .base import (
    Backend,
    EncryptMode,
    KeyMismatchError,
    encrypt_mode,
    int_matrix,
    need_djn,
    need_private,
    need_public,
    same_count,
    signed_ints,
)

log = logging.getLogger(__name__)

#: Elements per launch at most (pieces also shrink to fit free device memory).
DEFAULT_MAX_BATCH = 1 << 18
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


def _device_resident(key: str, width: str, what: str, *, paired: str | None = None):
    """The rule of every device-resident ``raw_<op>`` override.

    A host batch goes to :class:`Backend`'s ``raw_<op>`` unchanged. A device batch gets its key
    checked (``key``: "public" or "private"), its runtime found and its shape checked against
    the key's ``width`` ("plaintext" or "ciphertext") before the decorated body runs as
    ``body(self, rt, key, batch, *rest)``. ``paired`` names a second operand that must be on the
    same side as the first (both device or both host). Ciphertexts in Montgomery form
    (:class:`MontgomeryArray`, all of the op's operands, of this key) go to
    ``_montgomery_<op>`` instead, which keeps the form. The override keeps the base method's
    signature and documentation.
    """
    def wrap(body: Callable) -> Callable:
        name = body.__name__

        @functools.wraps(getattr(Backend, name))
        def method(self, k, batch, *args, **kwargs):
            on_device = self.is_device(batch)
            other = (args[0] if args else kwargs.get(paired)) if paired else None
            if paired and on_device != self.is_device(other):
                raise TypeError(f"{name} needs both operands on the device or both on the host")
            if not on_device:
                return getattr(super(GpuBackend, self), name)(k, batch, *args, **kwargs)
            k = need_private(k) if key == "private" else need_public(k)
            pk = k.public_key if key == "private" else k
            if any(isinstance(a, MontgomeryArray) for a in (*args, *kwargs.values()) if a is not other):
                raise TypeError(f"{name}: only the ciphertexts of an op are kept in Montgomery form")
            montgomery = isinstance(batch, MontgomeryArray) or isinstance(other, MontgomeryArray)
            if montgomery:
                if width != "ciphertext":
                    raise TypeError(f"{name}: {what}s are never in Montgomery form (only ciphertexts are)")
                _same_form(pk, name, batch, *([other] if paired else []))
            _check_dev(batch, getattr(pk, f"{width}_width"), what)
            if montgomery:
                return getattr(self, f"_montgomery_{name}")(self._runtime_of(batch), k, batch, *args, **kwargs)
            return body(self, self._runtime_of(batch), k, batch, *args, **kwargs)
        method.__qualname__ = f"GpuBackend.{name}"
        return method
    return wrap


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
        cooperative: run textbook encryption, obfuscators, DJN encryption (8-bit comb tables),
            CRT decryption, ``add``, ``sum``, ``mul`` and ``powmod`` (this one when no exponent
            is negative) on the cooperative kernels (a group of threads per number, limbs in
            registers: ``kernels/paillier_coop.cu``, ``djn_coop.cu``, ``decrypt_coop.cu``,
            ``homomorphic_coop.cu``, ``modexp_coop.cu``), and invert the results of negative
            scalars and the negative entries' column products of ``matvec`` together by
            Montgomery's trick (``inverse_coop.cu``). Opt-in until they
            are measured on a device: None (default) reads ``HEA_GPU_COOPERATIVE=1``;
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
        self._pub_cache: dict[tuple[int, int], DeviceKey] = {}
        self._djn_cache: dict[tuple[int, int, int, int, bool], Any] = {}
        self._closed = False
        self.stats: Counter = Counter()
        #: every kernel launch goes through here (counted in ``stats["launches"]``)
        self.launcher = Launcher(self.stats)

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
    def to_device(self, batch: Any, width: int, *, device: int = 0, montgomery: PublicKey | None = None) -> Any:
        """Copy a batch (ints, limbs or blob) of ``width``-byte numbers to a device.

        ``montgomery``: the PublicKey of these ciphertexts, to keep them in its Montgomery form
        (a :class:`MontgomeryArray`, converted on the device: see :meth:`to_montgomery`)."""
        if montgomery is not None and not isinstance(montgomery, PublicKey):
            raise TypeError("montgomery= takes the PublicKey whose Montgomery form to keep the ciphertexts in")
        blob, _ = to_blob(batch, width, "value")
        dev = self.runtimes[device].upload(blob_to_limbs(blob, width))
        return dev if montgomery is None else self.to_montgomery(montgomery, dev)

    def to_host(self, dev: Any) -> np.ndarray:
        """A device limb array back as numpy limbs (a MontgomeryArray converted out first: the
        ciphertexts themselves)."""
        if isinstance(dev, MontgomeryArray):
            dev = self.from_montgomery(dev)
        return self._runtime_of(dev).download(dev)

    def to_montgomery(self, pk: PublicKey, cs: Any) -> MontgomeryArray:
        """Device ciphertexts of ``pk`` (a normal-form device array: ``raw_encrypt``'s result,
        ``to_device``'s) in Montgomery form, c R mod n^2: one multiplication by R^2 each, on the
        device. The device-resident ``raw_*`` methods then keep that form (an add is one
        multiplication); :meth:`from_montgomery` (or ``to_host``, ``raw_decrypt``) converts out."""
        pk = need_public(pk)
        if isinstance(cs, MontgomeryArray):
            raise TypeError("these ciphertexts are in Montgomery form already")
        if not any(rt.is_device(cs) for rt in self.runtimes):
            raise TypeError("to_montgomery takes a device array (GpuBackend.to_device, or to_device(..., montgomery=pk))")
        _check_dev(cs, pk.ciphertext_width, "ciphertext")
        montgomery_radix(pk)  # a key with no kernel size class has no Montgomery form here: UnsupportedSizeError
        rt = self._runtime_of(cs)
        out = self._dev_or_fallback(rt, lambda: self._call(rt, pk, self.launcher.he_to_mont, cs),
                                    lambda c: to_montgomery_limbs(pk, _ciphertexts_in_range(pk, c)), [cs])
        return MontgomeryArray(out, pk)

    def from_montgomery(self, x: MontgomeryArray) -> Any:
        """The normal-form device array of a :class:`MontgomeryArray`: one REDC each, on the device."""
        if not isinstance(x, MontgomeryArray):
            raise TypeError(f"from_montgomery takes a MontgomeryArray, got {type(x).__name__}")
        pk, rt = x.public_key, self._runtime_of(x)
        return self._dev_or_fallback(rt, lambda: self._call(rt, pk, self.launcher.he_from_mont, x.data),
                                     lambda d: from_montgomery_limbs(pk, _ciphertexts_in_range(pk, d)), [x.data])

    def is_device(self, x: Any) -> bool:
        if isinstance(x, MontgomeryArray):
            x = x.data
        return any(rt.is_device(x) for rt in self.runtimes)

    def _runtime_of(self, x: Any) -> KernelRuntime:
        if isinstance(x, MontgomeryArray):
            x = x.data
        for rt in self.runtimes:
            if rt.is_device(x):
                dev_id = getattr(getattr(x, "device", None), "id", rt.device_id)
                if dev_id == rt.device_id:
                    return rt
        for rt in self.runtimes:
            if rt.is_device(x):
                return rt
        raise TypeError("not a device array of this backend")

    # -- key records -----------------------------------------------------------------------------
    def _pub(self, rt: KernelRuntime, pk: PublicKey) -> DeviceKey:
        """The public key's record on ``rt``, uploaded once and cached."""
        cache_key = (id(rt), pk.n)
        with self._lock:
            rec = self._pub_cache.get(cache_key)
        if rec is None:
            lp = key_class(pk)
            rec = DeviceKey(lp, rt.upload(pub_rec(pk, lp)), pk.plaintext_width // 4, pk.ciphertext_width // 4,
                            pk.nsquare)
            with self._lock:
                if len(self._pub_cache) > 64:
                    self._pub_cache.clear()
                self._pub_cache[cache_key] = rec
        return rec

    def _call(self, rt: KernelRuntime, key: PublicKey | PrivateKey, launch: Callable[..., Any],
              *args: Any, **kwargs: Any) -> Any:
        """``launch(rt, record, *args, **kwargs)`` with ``key``'s record on ``rt``: a public
        key's from the cache; a private key's uploaded for this call only and wiped after it
        (secret: never cached, its memory zeroed before the allocator reuses it)."""
        if not isinstance(key, PrivateKey):
            return launch(rt, self._pub(rt, key), *args, **kwargs)
        pk = key.public_key
        lp = key_class(pk, key)
        record = rt.upload(crt_rec(key, lp))
        try:
            return launch(rt, DeviceKey(lp, record, pk.plaintext_width // 4, pk.ciphertext_width // 4, pk.nsquare),
                          *args, **kwargs)
        finally:
            rt.wipe(record)

    def _djn(self, rt: KernelRuntime, pk: PublicKey, djn: DjnKey, ms: Any | None, rs: Any, offset: int = 0) -> Any:
        """DJN encryption with the fixed-base table of ``djn`` on ``rt`` (built once, cached)."""
        key = self._pub(rt, pk)
        coop = self.cooperative  # the two kernels' tables differ (row width), hence in the cache key
        ck = (id(rt), pk.n, djn.hs, djn.exponent_bits, coop)
        with self._lock:
            table = self._djn_cache.get(ck)
        if table is None:
            table = self.launcher.djn_table(rt, key, djn.hs, djn.exponent_bits, cooperative=coop)
            with self._lock:
                if len(self._djn_cache) > 8:
                    self._djn_cache.clear()
                self._djn_cache[ck] = table
        return self.launcher.djn_encrypt(rt, key, table, ms, rs, cooperative=coop, offset=offset)

    # -- scheduling ------------------------------------------------------------------------------
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
                devs = [None if b is None else rt.upload(blob_to_limbs(b[s * w : e * w], w)) for b, w in inputs]
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

    def _elementwise_reduce(self, count, cs, per_element, device_fn, cpu_fn, out_count=1):
        """Pieces each reduce to ``out_count`` ciphertexts; returns the list of piece blobs."""
        cw = len(cs) // count
        try:
            parts = []
            for rt, s, e in self._pieces(count, per_element):
                dev = rt.upload(blob_to_limbs(cs[s * cw : e * cw], cw))
                parts.append(rt.download(device_fn(rt, dev, s)).tobytes())
            return parts
        except (DeviceFailure, UnsupportedSizeError) as e:
            return [self._fallback_call(e, cpu_fn)]

    # -- blob hooks ----------------------------------------------------------------------------
    def _encrypt(self, pk, ms, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(ms) // pw, [(ms, pw), (rs, pw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.paillier_encrypt, d[0], d[1],
                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._encrypt(pk, ms, rs))

    def _encrypt_crt(self, sk, ms, zp, zq):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(ms) // pw, [(ms, pw), (zp, pw), (zq, pw)], cw,
            lambda rt, d, s: self._call(rt, sk, self.launcher.paillier_crt_encrypt, d[0], d[1], d[2], offset=s),
            lambda: self.fallback._encrypt_crt(sk, ms, zp, zq))

    def _encrypt_with(self, pk, ms, obf):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        count = len(ms) // pw
        if obf is not None and len(obf) != count * cw:
            raise ValueError(f"got {len(obf) // cw} obfuscators for {count} plaintexts")
        return self._elementwise(
            count, [(ms, pw), (obf, cw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.paillier_encrypt_with, d[0], d[1], offset=s),
            lambda: self.fallback._encrypt_with(pk, ms, obf))

    def _encrypt_djn(self, pk, djn, ms, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(len(rs) // pw, [(ms, pw), (rs, pw)], cw,
                                 lambda rt, d, s: self._djn(rt, pk, djn, d[0], d[1], s),
                                 lambda: self.fallback._encrypt_djn(pk, djn, ms, rs))

    def _obfuscators(self, pk, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(rs) // pw, [(rs, pw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.paillier_obfuscate, d[0],
                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._obfuscators(pk, rs))

    def _given_or_crt_obfuscators(self, pk, count, rng, obfuscators, private_key):
        """count obfuscators r^n mod n^2: the pool's where one is given, else made by CRT with the
        private key (rerandomize's two fast paths)."""
        if obfuscators is not None:
            return obfuscators.take(count)
        zp, zq = self._draw_obfuscator_inputs(pk, count, rng, private_key)
        return self._obfuscators_crt(private_key, zp, zq)

    def _obfuscators_crt(self, sk, zp, zq):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(zp) // pw, [(zp, pw), (zq, pw)], cw,
            lambda rt, d, s: self._call(rt, sk, self.launcher.paillier_crt_obfuscate, d[0], d[1], offset=s),
            lambda: self.fallback._obfuscators_crt(sk, zp, zq))

    def _decrypt(self, sk, cs):
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(cs) // cw, [(cs, cw)], pw,
            lambda rt, d, s: self._call(rt, sk, self.launcher.paillier_decrypt, d[0],
                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._decrypt(sk, cs))

    def _add(self, pk, a, b):
        cw = pk.ciphertext_width
        names = {E.CIPHERTEXT_RANGE: "ciphertext a"}
        return self._elementwise(
            len(a) // cw, [(a, cw), (b, cw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.he_add, d[0], d[1],
                                        cooperative=self.cooperative, offset=s, names=names),
            lambda: self.fallback._add(pk, a, b))

    def _add_plain(self, pk, cs, ms):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(cs) // cw, [(cs, cw), (ms, pw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.he_add_plain, d[0], d[1], offset=s),
            lambda: self.fallback._add_plain(pk, cs, ms))

    def _mul(self, pk, cs, ks):
        cw = pk.ciphertext_width
        return self._elementwise(
            len(cs) // cw, [(cs, cw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.he_mul_scalar, d[0], ks[s : s + d[0].shape[0]],
                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._mul(pk, cs, ks))

    def _rerandomize(self, pk, cs, rs):
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return self._elementwise(
            len(cs) // cw, [(cs, cw), (rs, pw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.paillier_rerandomize, d[0], d[1], offset=s),
            lambda: self.fallback._rerandomize(pk, cs, rs))

    def _rerandomize_with(self, pk, cs, obf):
        cw = pk.ciphertext_width
        if len(obf) != len(cs):
            raise ValueError(f"got {len(obf) // cw} obfuscators for {len(cs) // cw} ciphertexts")
        names = {E.CIPHERTEXT_RANGE: "ciphertext", E.SECOND_RANGE: "obfuscator"}
        return self._elementwise(
            len(cs) // cw, [(cs, cw), (obf, cw)], cw,
            lambda rt, d, s: self._call(rt, pk, self.launcher.he_add, d[0], d[1],
                                        cooperative=self.cooperative, offset=s, names=names),
            lambda: self.fallback._rerandomize_with(pk, cs, obf))

    def _sum(self, pk, cs):
        cw = pk.ciphertext_width
        count = len(cs) // cw
        if count == 0:
            return (1).to_bytes(cw, "little")
        partials = self._elementwise_reduce(
            count, cs, cw, lambda rt, d, s: self._call(rt, pk, self.launcher.product, d,
                                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._sum(pk, cs))
        return _combine(partials, pk.nsquare, cw)

    def _matvec(self, pk, cs, rows_x):
        cw = pk.ciphertext_width
        rows, cols = len(cs) // cw, len(rows_x[0])
        if cols == 0:
            return b""
        per_row = cw * 17 + 4 * cols * max(1, pk.n.bit_length() // 32)
        partials = self._elementwise_reduce(
            rows, cs, per_row,
            lambda rt, d, s: self._call(rt, pk, self.launcher.matvec, d, rows_x[s : s + d.shape[0]],
                                        cooperative=self.cooperative, offset=s),
            lambda: self.fallback._matvec(pk, cs, rows_x), out_count=cols)
        return _combine(partials, pk.nsquare, cw, cols)

    def _powmod(self, bases, exps, mod):
        if mod % 2 == 0:  # Montgomery needs an odd modulus; documented CPU path
            self.stats["cpu_powmod_even_modulus"] += 1
            return self.fallback._powmod(bases, exps, mod)
        if not bases:
            return []
        try:
            rt = self.runtimes[0]
            out = self.launcher.powmod(rt, mod_class(mod), bases, exps, mod, cooperative=self.cooperative)
            return [int.from_bytes(row.tobytes(), "little") for row in rt.download(out)]
        except (DeviceFailure, UnsupportedSizeError) as e:
            return self._fallback_call(e, lambda: self.fallback._powmod(bases, exps, mod))

    # -- device-resident raw API (one rule: _device_resident) ------------------------------------
    def _dev_or_fallback(self, rt, device_fn, host_fn, host_inputs, out_is_device=True):
        try:
            return device_fn()
        except (DeviceFailure, UnsupportedSizeError) as e:
            hosts = [rt.download(x) if rt.is_device(x) else x for x in host_inputs]
            res = self._fallback_call(e, lambda: host_fn(*hosts))
            return rt.upload(np.asarray(res)) if out_is_device else res

    @_device_resident("public", "plaintext", "plaintext")
    def raw_encrypt(self, rt, pk, ms, *, obfuscate=True, rng=None, obfuscators=None, private_key=None, djn=None):
        count, pw, cw = ms.shape[0], pk.plaintext_width, pk.ciphertext_width
        mode = encrypt_mode(obfuscate=obfuscate, obfuscators=obfuscators, djn=djn, private_key=private_key)
        if mode in (EncryptMode.DETERMINISTIC, EncryptMode.POOLED):
            obf = obfuscators.take(count) if mode is EncryptMode.POOLED else None
            obf_d = rt.upload(blob_to_limbs(obf, cw)) if obf is not None else None
            return self._dev_or_fallback(
                rt, lambda: self._call(rt, pk, self.launcher.paillier_encrypt_with, ms, obf_d),
                lambda m: blob_to_limbs(self.fallback._encrypt_with(pk, m.tobytes(), obf), cw), [ms])
        if mode is EncryptMode.DJN:
            djn = need_djn(pk, djn)
            rs = self._draw_djn(djn, count, rng)
            return self._dev_or_fallback(
                rt, lambda: self._djn(rt, pk, djn, ms, rt.upload(blob_to_limbs(rs, pw))),
                lambda m: blob_to_limbs(self.fallback._encrypt_djn(pk, djn, m.tobytes(), rs), cw), [ms])
        if mode is EncryptMode.CRT:
            sk = self._check_private_matches(pk, private_key)
            zp, zq = self._draw_obfuscator_inputs(pk, count, rng, sk)
            return self._dev_or_fallback(
                rt, lambda: self._call(rt, sk, self.launcher.paillier_crt_encrypt, ms,
                                       rt.upload(blob_to_limbs(zp, pw)), rt.upload(blob_to_limbs(zq, pw))),
                lambda m: blob_to_limbs(self.fallback._encrypt_crt(sk, m.tobytes(), zp, zq), cw), [ms])
        (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.paillier_encrypt, ms, rt.upload(blob_to_limbs(rs, pw)),
                                   cooperative=self.cooperative),
            lambda m: blob_to_limbs(self.fallback._encrypt(pk, m.tobytes(), rs), cw), [ms])

    @_device_resident("private", "ciphertext", "ciphertext")
    def raw_decrypt(self, rt, sk, cs):
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, sk, self.launcher.paillier_decrypt, cs, cooperative=self.cooperative),
            lambda c: blob_to_limbs(self.fallback._decrypt(sk, c.tobytes()), sk.public_key.plaintext_width), [cs])

    @_device_resident("public", "ciphertext", "ciphertext a", paired="c2")
    def raw_add(self, rt, pk, c1, c2):
        _check_dev(c2, pk.ciphertext_width, "ciphertext b")
        same_count(c1.shape[0], c2.shape[0])
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.he_add, c1, c2, cooperative=self.cooperative,
                                   names={E.CIPHERTEXT_RANGE: "ciphertext a"}),
            lambda a, b: blob_to_limbs(self.fallback._add(pk, a.tobytes(), b.tobytes()), cw), [c1, c2])

    @_device_resident("public", "ciphertext", "ciphertext")
    def raw_add_plain(self, rt, pk, cs, ms):
        m_blob, _ = to_blob(rt.download(ms) if self.is_device(ms) else ms, pk.plaintext_width, "plaintext")
        same_count(cs.shape[0], len(m_blob) // pk.plaintext_width)
        m_dev = rt.upload(blob_to_limbs(m_blob, pk.plaintext_width))
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.he_add_plain, cs, m_dev),
            lambda c: blob_to_limbs(self.fallback._add_plain(pk, c.tobytes(), m_blob), cw), [cs])

    @_device_resident("public", "ciphertext", "ciphertext")
    def raw_mul(self, rt, pk, cs, ks):
        k = signed_ints(ks, "scalar", pk.n)
        same_count(cs.shape[0], len(k), ("ciphertexts", "scalars"))
        cw = pk.ciphertext_width
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.he_mul_scalar, cs, k, cooperative=self.cooperative),
            lambda c: blob_to_limbs(self.fallback._mul(pk, c.tobytes(), k), cw), [cs])

    @_device_resident("public", "ciphertext", "ciphertext")
    def raw_sum(self, rt, pk, cs):
        cw = pk.ciphertext_width
        if cs.shape[0] == 0:
            return rt.upload(blob_to_limbs((1).to_bytes(cw, "little"), cw))
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.product, cs, cooperative=self.cooperative),
            lambda c: blob_to_limbs(self.fallback._sum(pk, c.tobytes()), cw), [cs])

    @_device_resident("public", "ciphertext", "ciphertext")
    def raw_matvec(self, rt, pk, cs, X):
        rows_x, cols = int_matrix(X, cs.shape[0], pk.n)
        cw = pk.ciphertext_width
        if cs.shape[0] == 0 or cols == 0:
            return rt.upload(blob_to_limbs((1).to_bytes(cw, "little") * cols, cw))
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.matvec, cs, rows_x, cooperative=self.cooperative),
            lambda c: blob_to_limbs(self.fallback._matvec(pk, c.tobytes(), rows_x), cw), [cs])

    @_device_resident("public", "ciphertext", "ciphertext")
    def raw_rerandomize(self, rt, pk, cs, *, rng=None, obfuscators=None, private_key=None):
        count, cw, pw = cs.shape[0], pk.ciphertext_width, pk.plaintext_width
        if obfuscators is not None or private_key is not None:
            obf = self._given_or_crt_obfuscators(pk, count, rng, obfuscators, private_key)
            obf_d = rt.upload(blob_to_limbs(obf, cw))
            names = {E.CIPHERTEXT_RANGE: "ciphertext", E.SECOND_RANGE: "obfuscator"}
            return self._dev_or_fallback(
                rt, lambda: self._call(rt, pk, self.launcher.he_add, cs, obf_d, cooperative=self.cooperative,
                                   names=names),
                lambda c: blob_to_limbs(self.fallback._rerandomize_with(pk, c.tobytes(), obf), cw), [cs])
        (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
        return self._dev_or_fallback(
            rt, lambda: self._call(rt, pk, self.launcher.paillier_rerandomize, cs, rt.upload(blob_to_limbs(rs, pw))),
            lambda c: blob_to_limbs(self.fallback._rerandomize(pk, c.tobytes(), rs), cw), [cs])

    # -- the same ops on MontgomeryArray operands (c R mod n^2): results keep the form ------------
    def _montgomery_call(self, rt: KernelRuntime, pk: PublicKey, device_fn: Callable[[], Any],
                         cpu_fn: Callable[..., np.ndarray], inputs: list[Any]) -> MontgomeryArray:
        """device_fn()'s Montgomery-form device array, wrapped. On a device failure the inputs go
        to cpu_fn as host limbs (MontgomeryArrays converted out, range-checked), and its
        normal-form result comes back converted in."""
        try:
            return MontgomeryArray(device_fn(), pk)
        except (DeviceFailure, UnsupportedSizeError) as e:
            def cpu() -> np.ndarray:
                hosts = [from_montgomery_limbs(pk, _ciphertexts_in_range(pk, rt.download(x.data)))
                         if isinstance(x, MontgomeryArray) else x for x in inputs]
                return to_montgomery_limbs(pk, np.asarray(cpu_fn(*hosts)))
            return MontgomeryArray(rt.upload(self._fallback_call(e, cpu)), pk)

    def _montgomery_raw_add(self, rt, pk, c1, c2):
        _check_dev(c2, pk.ciphertext_width, "ciphertext b")
        same_count(len(c1), len(c2))
        cw = pk.ciphertext_width
        return self._montgomery_call(
            rt, pk, lambda: self._call(rt, pk, self.launcher.he_add_mont, c1.data, c2.data,
                                       names={E.CIPHERTEXT_RANGE: "ciphertext a"}),
            lambda a, b: blob_to_limbs(self.fallback._add(pk, a.tobytes(), b.tobytes()), cw), [c1, c2])

    def _montgomery_raw_sum(self, rt, pk, cs):
        cw = pk.ciphertext_width
        if len(cs) == 0:  # E(0) = 1, whose Montgomery form is R mod n^2
            return MontgomeryArray(rt.upload(to_montgomery_limbs(pk, blob_to_limbs((1).to_bytes(cw, "little"), cw))),
                                   pk)
        return self._montgomery_call(
            rt, pk, lambda: self._call(rt, pk, self.launcher.product_mont, cs.data),
            lambda c: blob_to_limbs(self.fallback._sum(pk, c.tobytes()), cw), [cs])

    def _montgomery_raw_mul(self, rt, pk, cs, ks):
        k = signed_ints(ks, "scalar", pk.n)
        same_count(len(cs), len(k), ("ciphertexts", "scalars"))
        if any(v < 0 for v in k):  # c^-1 per element: the normal-form kernels invert, then back in
            return self.to_montgomery(pk, self.raw_mul(pk, self.from_montgomery(cs), k))
        cw = pk.ciphertext_width
        return self._montgomery_call(
            rt, pk, lambda: self._call(rt, pk, self.launcher.he_mul_scalar_mont, cs.data, k),
            lambda c: blob_to_limbs(self.fallback._mul(pk, c.tobytes(), k), cw), [cs])

    def _montgomery_raw_add_plain(self, rt, pk, cs, ms):
        m_blob, _ = to_blob(rt.download(ms) if self.is_device(ms) else ms, pk.plaintext_width, "plaintext")
        same_count(len(cs), len(m_blob) // pk.plaintext_width)
        m_dev = rt.upload(blob_to_limbs(m_blob, pk.plaintext_width))
        cw = pk.ciphertext_width
        return self._montgomery_call(
            rt, pk, lambda: self._call(rt, pk, self.launcher.he_add_plain_mont, cs.data, m_dev),
            lambda c: blob_to_limbs(self.fallback._add_plain(pk, c.tobytes(), m_blob), cw), [cs])

    def _montgomery_raw_rerandomize(self, rt, pk, cs, *, rng=None, obfuscators=None, private_key=None):
        count, cw, pw = len(cs), pk.ciphertext_width, pk.plaintext_width
        if obfuscators is not None or private_key is not None:
            obf = self._given_or_crt_obfuscators(pk, count, rng, obfuscators, private_key)
            obf_m = self.to_montgomery(pk, rt.upload(blob_to_limbs(obf, cw)))
            names = {E.CIPHERTEXT_RANGE: "ciphertext", E.SECOND_RANGE: "obfuscator"}
            return self._montgomery_call(
                rt, pk, lambda: self._call(rt, pk, self.launcher.he_add_mont, cs.data, obf_m.data, names=names),
                lambda c: blob_to_limbs(self.fallback._rerandomize_with(pk, c.tobytes(), obf), cw), [cs])
        (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
        return self._montgomery_call(
            rt, pk, lambda: self._call(rt, pk, self.launcher.he_rerandomize_mont, cs.data,
                                       rt.upload(blob_to_limbs(rs, pw))),
            lambda c: blob_to_limbs(self.fallback._rerandomize(pk, c.tobytes(), rs), cw), [cs])

    def _montgomery_raw_decrypt(self, rt, sk, cs):
        return self.raw_decrypt(sk, self.from_montgomery(cs))  # plaintexts: never in Montgomery form

    def _montgomery_raw_matvec(self, rt, pk, cs, X):  # the matrix kernels read normal form
        return self.to_montgomery(pk, self.raw_matvec(pk, self.from_montgomery(cs), X))


def _same_form(pk: PublicKey, op: str, *operands: Any) -> None:
    """Every ciphertext operand of ``op`` in ``pk``'s Montgomery form (never mixed with normal form)."""
    for x in operands:
        if not isinstance(x, MontgomeryArray):
            raise TypeError(f"{op}: one operand is in Montgomery form and another is not; convert with "
                            "GpuBackend.to_montgomery or from_montgomery first")
        if x.public_key.n != pk.n:
            raise KeyMismatchError(f"{op}: a Montgomery-form array of another key")


def _ciphertexts_in_range(pk: PublicKey, rows: np.ndarray) -> np.ndarray:
    """The rows, checked as the kernels check them: 0 < c < n^2 (the CPU fallback's conversions)."""
    n2 = pk.nsquare
    for i, row in enumerate(np.asarray(rows)):
        c = int.from_bytes(np.ascontiguousarray(row, dtype=np.uint32).tobytes(), "little")
        if not 0 < c < n2:
            raise ValueError(f"ciphertext[{i}] is out of range: must be in [1, n^2)")
    return rows

def _check_dev(x: Any, width: int, what: str) -> None:
    if len(x.shape) != 2 or x.shape[1] * 4 != width:
        raise ValueError(f"{what} device array must have shape (batch, {width // 4}) limbs, got {x.shape}")


def _combine(parts: list[bytes], n2: int, cw: int, cols: int = 1) -> bytes:
    """Multiply piece results column-wise mod n^2 (pieces of a split sum or matvec)."""
    if len(parts) == 1:
        return parts[0]
    acc = [1] * cols
    for part in parts:
        for j in range(cols):
            acc[j] = acc[j] * int.from_bytes(part[j * cw : (j + 1) * cw], "little") % n2
    return b"".join(v.to_bytes(cw, "little") for v in acc)


__all__ = ["DeviceFallbackWarning", "GpuBackend", "KeyMismatchError", "MontgomeryArray"]
