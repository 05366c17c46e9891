"""The gmpy2 CPU backend: all cores through a process pool, blobs over the pipes.

gmpy2's ``powmod`` holds the GIL, so parallelism needs processes. Each task carries one or two
packed blobs plus the key's integers, and returns one blob: IPC stays about 2 x the data size,
negligible next to a 2048-bit modexp (milliseconds) and worth it for the cheap ops (add, sum)
only on large batches, hence per-op thresholds.

The workers (:mod:`._pool`) are fresh interpreters running a module of ours, never the caller's
``__main__``, so the backend works in a script without a main guard, ``python - < file``,
``python -c``, notebooks and daemonic processes alike; they die with their parent, on kill -9
too. ``pool="shared"`` (or ``HEA_CPU_POOL=shared``) uses one pool per machine and user for
every process instead, e.g. FATE's per-task processes. Where no worker can start, the backend
runs in process and warns once, with the reason.

The multiplication-only ops (add, add_plain, sum) and DJN's comb encryption run in the native
engine (:mod:`._native`, C on GMP's mpn layer, one call per chunk) where it builds, else in
gmpy2; ``describe()`` says which and why. On lists of ints in process, add, add_plain and sum
take the engine's CPython extension (:mod:`._native_ints`: no packing to bytes) where that
builds too.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import warnings
import weakref
from typing import Any, Callable

from ..keys import PrivateKey, PublicKey, RandomSource
from ..packing import from_blob, split_blob, to_blob
from . import _gmp_ops as ops
from . import _native, _native_ints
from ._pool import PoolUnavailable, WorkerPool, connect_shared, runtime_dir
from .base import Backend, group_counts, need_public, same_count

log = logging.getLogger(__name__)

#: Minimum batch per op before the pool is used: modexp ops parallelise from a few elements,
#: mulmod-only ops (a few microseconds each) only when the batch amortises the copying.
HEAVY_MIN_PARALLEL = 4
LIGHT_MIN_PARALLEL = 4096

POOL_KINDS = ("private", "shared")
_inline_warned = False
#: DJN comb table files kept in the runtime directory (the newest; each is tens of MB).
DJN_TABLE_FILES = 8


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _warn_inline_once(reason: str) -> None:
    global _inline_warned
    if not _inline_warned:
        _inline_warned = True
        warnings.warn(f"he-accel's CPU backend runs in this process only (one core): {reason}",
                      RuntimeWarning, stacklevel=4)


class CpuBackend(Backend):
    """Paillier batch arithmetic on gmpy2 using ``workers`` processes (default: all cores).

    ``workers=1`` runs everything in the calling process. ``chunks_per_worker`` trades load
    balance against per-task overhead. ``pool``: ``"private"`` (this process's own workers,
    the default) or ``"shared"`` (the machine's pool server for this user, started on first use
    and stopped after ``shared_idle`` seconds without clients, at ``shared_socket`` or
    ``HEA_CPU_POOL_SOCKET`` or a per-user default); the default kind comes from ``HEA_CPU_POOL``.
    The pool is shut down by :meth:`close` (or at exit). ``native``: use the native engine for
    add, add_plain, sum and DJN encryption; None (the default) where it builds (``HEA_CPU_NATIVE=0``
    turns it off), True to require it (raises :class:`accel.backends._native.NativeUnavailable`),
    False for gmpy2 only. ``djn_engine``: the native DJN engine, None (the default) for AVX-512
    IFMA where the CPU has it (``HEA_CPU_IFMA=0`` turns it off) else the portable one, ``"mpn"``
    to force the portable one, ``"ifma"`` to require IFMA (DJN encryption then raises
    :class:`~accel.backends._native.NativeUnavailable` on a CPU without it).
    ``native_ints``: lists of ints through the engine's CPython extension
    (no packing to bytes) where it builds; False packs them for the ctypes engine instead.
    """

    name = "cpu"

    def __init__(self, workers: int | None = None, *, rng: RandomSource | None = None,
                 chunks_per_worker: int = 4, pool: str | None = None, shared_idle: float = 120.0,
                 shared_socket: str | None = None, native: bool | None = None, djn_engine: str | None = None,
                 native_ints: bool = True):
        super().__init__(rng=rng)
        if djn_engine is not None and (djn_engine not in _native.ENGINES or native is False):
            raise ValueError(f"djn_engine must be None or one of {_native.ENGINES} (with the native engine), "
                             f"got {djn_engine!r}")
        self.djn_engine = djn_engine
        self.workers = max(1, int(workers or _available_cores()))
        self.chunks_per_worker = max(1, int(chunks_per_worker))
        self.pool_kind = pool or os.environ.get("HEA_CPU_POOL") or "private"
        if self.pool_kind not in POOL_KINDS:
            raise ValueError(f"pool must be one of {POOL_KINDS}, got {self.pool_kind!r}")
        self.shared_idle = shared_idle
        self.shared_socket = shared_socket or os.environ.get("HEA_CPU_POOL_SOCKET") or None
        self._executor: WorkerPool | None = None
        self._inline_reason: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._djn_files: dict[tuple, str | None] = {}
        self.tasks_submitted = 0
        if native is None:
            self.native_lib, self.native_note = _native.probe()
        elif native:
            self.native_lib, self.native_note = _native.load().path, None
        else:
            self.native_lib, self.native_note = None, "turned off (native=False)"
        # the extension for lists of ints; without it the ctypes engine packs them to bytes
        if self.native_lib is None:
            self.native_ints, self.native_ints_note = None, self.native_note
        elif native_ints:
            self.native_ints, self.native_ints_note = _native_ints.probe()
        else:
            self.native_ints, self.native_ints_note = None, "turned off (native_ints=False)"

    def describe(self) -> dict[str, Any]:
        """What runs where: ``native`` is the native engine's library (None: gmpy2 only, with
        ``native_unavailable`` saying why)."""
        return {"backend": self.name, "workers": self.workers, "pool": self.pool_kind,
                "in_process_only": self._inline_reason, "native": self.native_lib,
                "native_unavailable": self.native_note, "djn_engine": self._djn_engine_note(),
                "native_ints": getattr(self.native_ints, "path", None),
                "native_ints_unavailable": self.native_ints_note}

    def _djn_engine_note(self) -> str:
        """Which native DJN engine runs at 2048-bit keys (4096-bit n^2), and why not IFMA."""
        if self.native_lib is None:
            return "gmpy2"
        if self.djn_engine == "mpn":
            return "mpn (djn_engine='mpn')"
        why = _native.ifma_unavailable(_native.load(self.native_lib), 512)
        if why is not None and self.djn_engine == "ifma":
            return f"ifma required, unavailable: {why}"
        return "ifma" if why is None else f"mpn ({why})"

    def __repr__(self) -> str:
        return f"<CpuBackend workers={self.workers} pool={self.pool_kind}>"

    # -- pool --------------------------------------------------------------------------------
    def _pool(self) -> WorkerPool | None:
        """The worker pool, started on first use; None where workers cannot run (warned once)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this CpuBackend is closed")
            ex = self._executor
            if ex is not None and ex.pid == os.getpid() and not ex.broken:
                return ex
            if self._inline_reason is not None:
                return None
            try:  # a forked child's inherited pool is not ours: start our own
                if self.pool_kind == "shared":
                    ex = connect_shared(self.workers, idle=self.shared_idle, socket_path=self.shared_socket)
                else:
                    ex = WorkerPool(self.workers)
            except (PoolUnavailable, PermissionError) as e:
                self._inline_reason = str(e)
                log.info("CPU backend in process only: %s", e)
                _warn_inline_once(str(e))
                return None
            self._executor = ex
            weakref.finalize(self, ex.terminate)
            log.debug("started %d CPU worker slots (%s pool)", ex.workers, self.pool_kind)
            return ex

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None and ex.pid == os.getpid():
            ex.shutdown()

    def _chunk_size(self, count: int, min_parallel: int) -> int | None:
        """Elements per task, or None to run inline."""
        if self.workers == 1 or count < min_parallel:
            return None
        tasks = min(count, self.workers * self.chunks_per_worker)
        return -(-count // tasks)

    def _map(self, fn: Callable[..., bytes], count: int, min_parallel: int,
             chunked: list[tuple[bytes, int]], extra_chunked: list[list[Any]] | None = None,
             args: tuple = (), lead: tuple = ()) -> list[bytes]:
        """Run ``fn(*chunk_blobs, *chunk_lists, *args, offset=...)`` over chunks; results in order.

        ``chunked``: (blob, width) pairs split by element; ``extra_chunked``: plain lists split
        the same way (scalars, matrix rows); ``lead``: fixed arguments placed first.
        """
        size = self._chunk_size(count, min_parallel)
        pool = None if size is None else self._pool()
        if pool is None:
            return [fn(*lead, *(b for b, _ in chunked), *(extra_chunked or []), *args, offset=0)]
        starts = list(range(0, count, size))
        pieces = [split_blob(b, w, size) for b, w in chunked]
        futures = []
        for k, start in enumerate(starts):
            blobs = [p[k][1] for p in pieces]
            lists = [lst[start : start + size] for lst in (extra_chunked or [])]
            futures.append(pool.submit(fn.__name__, *lead, *blobs, *lists, *args, offset=start))
        self.tasks_submitted += len(futures)
        return [f.result() for f in futures]

    # -- cheap ops on lists: in process without packing ------------------------------------------
    # A mulmod costs a few microseconds, so packing to blobs and back (four conversions per
    # element) would cost about as much again: lists of ints that stay in process go to the
    # native extension (digits to limbs in C), else to gmpy2 where no native engine runs.
    def _list_path(self, count: int, *batches: Any) -> str | None:
        """"ext", "gmpy2" or None (the packed path) for a batch of lists."""
        if self._closed:
            raise RuntimeError("this CpuBackend is closed")
        if not all(type(b) in (list, tuple) for b in batches) or self._chunk_size(count, LIGHT_MIN_PARALLEL):
            return None
        if self.native_ints is not None:
            return "ext"
        # The ctypes engine is faster than gmpy2's loop even with the packing to blobs.
        return "gmpy2" if self.native_lib is None else None

    def raw_add(self, pk: PublicKey, c1: Any, c2: Any) -> Any:
        path = self._list_path(len(c1) if type(c1) in (list, tuple) else 0, c1, c2)
        if path is not None:
            pk = need_public(pk)
            same_count(len(c1), len(c2))
            if path == "gmpy2":
                return ops.add_ints(c1, c2, pk.nsquare)
            out = self.native_ints.add(c1, c2, pk.nsquare, pk.ciphertext_width)
            if out is not None:  # None: an element it does not take; the packed path says which
                return out
        return super().raw_add(pk, c1, c2)

    def raw_add_plain(self, pk: PublicKey, cs: Any, ms: Any) -> Any:
        path = self._list_path(len(cs) if type(cs) in (list, tuple) else 0, cs, ms)
        if path is not None:
            pk = need_public(pk)
            same_count(len(cs), len(ms))
            if path == "gmpy2":
                return ops.add_plain_ints(cs, ms, pk.n)
            out = self.native_ints.add_plain(cs, ms, pk.n, pk.nsquare, pk.plaintext_width, pk.ciphertext_width)
            if out is not None:
                return out
        return super().raw_add_plain(pk, cs, ms)

    def raw_sum(self, pk: PublicKey, cs: Any) -> Any:
        path = self._list_path(len(cs) if type(cs) in (list, tuple) else 0, cs)
        if path is not None:
            pk = need_public(pk)
            if path == "gmpy2":
                return ops.product_ints(cs, pk.nsquare)
            out = self.native_ints.product(cs, pk.nsquare, pk.ciphertext_width)
            if out is not None:
                return out
        return super().raw_sum(pk, cs)

    def raw_sum_groups(self, pk: PublicKey, cs: Any, counts: Any) -> Any:
        path = self._list_path(len(cs) if type(cs) in (list, tuple) else 0, cs)
        if path is not None:
            pk = need_public(pk)
            sizes = group_counts(counts, len(cs))
            if path == "gmpy2":
                return ops.product_groups_ints(cs, sizes, pk.nsquare)
            out = self.native_ints.products(cs, sizes, pk.nsquare, pk.ciphertext_width)
            if out is not None:
                return out
        if self.native_lib is not None and not self._closed:
            # packed input (the service's requests): the same grouped product, through ctypes, in
            # this process (groups do not split on the pool's element chunks)
            pk = need_public(pk)
            blob, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
            sizes = group_counts(counts, len(blob) // pk.ciphertext_width)
            out = ops.product_groups_native(self.native_lib, blob, sizes, pk.nsquare, pk.ciphertext_width)
            return from_blob(out, pk.ciphertext_width, packing)
        return super().raw_sum_groups(pk, cs, counts)

    # -- hooks -------------------------------------------------------------------------------
    def _encrypt(self, pk: PublicKey, ms: bytes, rs: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.encrypt_textbook, len(ms) // pw, HEAVY_MIN_PARALLEL,
                                  [(ms, pw), (rs, pw)], args=(pk.n, pw, cw)))

    def _encrypt_crt(self, sk: PrivateKey, ms: bytes, zp: bytes, zq: bytes) -> bytes:
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.encrypt_crt, len(ms) // pw, HEAVY_MIN_PARALLEL,
                                  [(ms, pw), (zp, pw), (zq, pw)], args=(sk.p, sk.q, pw, cw)))

    def _encrypt_with(self, pk: PublicKey, ms: bytes, obf: bytes | None) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        count = len(ms) // pw
        if obf is not None and len(obf) != count * cw:
            raise ValueError(f"got {len(obf) // cw} obfuscators for {count} plaintexts")
        if obf is None:
            return b"".join(self._map(ops.encrypt_with, count, LIGHT_MIN_PARALLEL, [(ms, pw)],
                                      args=(None, pk.n, pw, cw)))
        return b"".join(self._map(ops.encrypt_with, count, LIGHT_MIN_PARALLEL, [(ms, pw), (obf, cw)],
                                  args=(pk.n, pw, cw)))

    def _encrypt_djn(self, pk: PublicKey, djn, ms: bytes | None, rs: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        count = len(rs) // pw
        if self.native_lib is not None:
            engine = self.djn_engine or _native.djn_engine(_native.load(self.native_lib), cw)
            window = _native.djn_window(cw, djn.exponent_bits, engine)
            parallel = self._chunk_size(count, HEAVY_MIN_PARALLEL) is not None
            path = self._djn_table_file(pk, djn, window, native=engine) if parallel else None
            args = (pk.n, djn.hs, djn.exponent_bits, window, path, pw, cw, engine)
            lead = (self.native_lib,) if ms is not None else (self.native_lib, None)
            chunked = [(ms, pw), (rs, pw)] if ms is not None else [(rs, pw)]
            return b"".join(self._map(ops.encrypt_djn_native, count, HEAVY_MIN_PARALLEL, chunked, args=args,
                                      lead=lead))
        window = ops.djn_window(cw, djn.exponent_bits)
        parallel = self._chunk_size(count, HEAVY_MIN_PARALLEL) is not None
        path = self._djn_table_file(pk, djn, window) if parallel else None
        args = (pk.n, djn.hs, djn.exponent_bits, window, path, pw, cw)
        if ms is None:
            return b"".join(self._map(ops.encrypt_djn, count, HEAVY_MIN_PARALLEL, [(rs, pw)], args=args,
                                      lead=(None,)))
        return b"".join(self._map(ops.encrypt_djn, count, HEAVY_MIN_PARALLEL, [(ms, pw), (rs, pw)], args=args))

    def _djn_table_file(self, pk: PublicKey, djn, window: int, native: str | None = None) -> str | None:
        """The key's comb table as a file the workers memory-map (built once per machine: a file
        left by an earlier process is reused), or None: each worker then builds its own.
        ``native``: the native engine's table for that DJN engine ("mpn": Montgomery form in uint64
        limbs; "ifma": in 52-bit digits) instead of gmpy2's."""
        spec = (pk.n, djn.hs, djn.exponent_bits, window, pk.ciphertext_width)
        key = spec + (native,)
        if key in self._djn_files:
            return self._djn_files[key]
        path = None
        try:
            folder = runtime_dir()
            digest = hashlib.sha256(repr(key if native else spec).encode()).hexdigest()[:32]
            path = os.path.join(folder, f"djn-{'native-' if native else ''}{digest}.npy")
            if not os.path.exists(path):
                table = (_native.djn_table(self.native_lib, *spec, engine=native) if native else ops.djn_table(*spec))
                _save_atomically(table, path)
                _prune(folder, "djn-", DJN_TABLE_FILES)
        except OSError as e:  # no private runtime directory here: fine, only slower to start
            log.debug("DJN comb table kept per worker: %s", e)
            path = None
        self._djn_files[key] = path
        return path

    def _obfuscators(self, pk: PublicKey, rs: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.obfuscators_textbook, len(rs) // pw, HEAVY_MIN_PARALLEL,
                                  [(rs, pw)], args=(pk.n, pw, cw)))

    def _obfuscators_crt(self, sk: PrivateKey, zp: bytes, zq: bytes) -> bytes:
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.obfuscators_crt_blob, len(zp) // pw, HEAVY_MIN_PARALLEL,
                                  [(zp, pw), (zq, pw)], args=(sk.p, sk.q, pw, cw)))

    def _decrypt(self, sk: PrivateKey, cs: bytes) -> bytes:
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.decrypt_crt, len(cs) // cw, HEAVY_MIN_PARALLEL, [(cs, cw)],
                                  args=(sk.p, sk.q, sk.hp, sk.hq, sk.q_inverse, pw, cw)))

    def decrypt_without_crt(self, sk: PrivateKey, cs: bytes) -> bytes:
        """Non-CRT decryption c^lambda mod n^2 on packed ciphertexts: a benchmark baseline only."""
        pk = sk.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.decrypt_textbook, len(cs) // cw, HEAVY_MIN_PARALLEL, [(cs, cw)],
                                  args=(pk.n, sk.lam, pw, cw)))

    def _add(self, pk: PublicKey, a: bytes, b: bytes) -> bytes:
        cw = pk.ciphertext_width
        if self.native_lib is not None:
            return b"".join(self._map(ops.add_native, len(a) // cw, LIGHT_MIN_PARALLEL, [(a, cw), (b, cw)],
                                      args=(pk.nsquare, cw), lead=(self.native_lib,)))
        return b"".join(self._map(ops.add, len(a) // cw, LIGHT_MIN_PARALLEL, [(a, cw), (b, cw)],
                                  args=(pk.nsquare, cw)))

    def _add_plain(self, pk: PublicKey, cs: bytes, ms: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        if self.native_lib is not None:
            return b"".join(self._map(ops.add_plain_native, len(cs) // cw, LIGHT_MIN_PARALLEL,
                                      [(cs, cw), (ms, pw)], args=(pk.n, pw, cw), lead=(self.native_lib,)))
        return b"".join(self._map(ops.add_plain, len(cs) // cw, LIGHT_MIN_PARALLEL,
                                  [(cs, cw), (ms, pw)], args=(pk.n, pw, cw)))

    def _mul(self, pk: PublicKey, cs: bytes, ks: list[int]) -> bytes:
        cw = pk.ciphertext_width
        return b"".join(self._map(ops.mul, len(cs) // cw, HEAVY_MIN_PARALLEL, [(cs, cw)],
                                  extra_chunked=[ks], args=(pk.nsquare, cw)))

    def _sum(self, pk: PublicKey, cs: bytes) -> bytes:
        cw = pk.ciphertext_width
        if self.native_lib is not None:
            partials = b"".join(self._map(ops.product_native, len(cs) // cw, LIGHT_MIN_PARALLEL, [(cs, cw)],
                                          args=(pk.nsquare, cw), lead=(self.native_lib,)))
            return partials if len(partials) == cw else ops.product_native(self.native_lib, partials, pk.nsquare, cw)
        partials = b"".join(self._map(ops.product, len(cs) // cw, LIGHT_MIN_PARALLEL, [(cs, cw)],
                                      args=(pk.nsquare, cw)))
        return partials if len(partials) == cw else ops.product(partials, pk.nsquare, cw)

    def _matvec(self, pk: PublicKey, cs: bytes, rows_x: list[list[int]]) -> bytes:
        cw = pk.ciphertext_width
        rows, cols = len(cs) // cw, len(rows_x[0])
        # Rows split across workers; each returns its partial column products.
        partials = self._map(ops.matvec, rows, HEAVY_MIN_PARALLEL, [(cs, cw)],
                             extra_chunked=[rows_x], args=(pk.nsquare, cw))
        if len(partials) == 1:
            return partials[0]
        n2 = pk.nsquare
        acc = [1] * cols
        for part in partials:
            for j, v in enumerate(ops.read(part, cw)):
                acc[j] = acc[j] * int(v) % n2
        return b"".join(v.to_bytes(cw, "little") for v in acc)

    def _rerandomize(self, pk: PublicKey, cs: bytes, rs: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.rerandomize, len(cs) // cw, HEAVY_MIN_PARALLEL,
                                  [(cs, cw), (rs, pw)], args=(pk.n, pw, cw)))

    def _rerandomize_with(self, pk: PublicKey, cs: bytes, obf: bytes) -> bytes:
        cw = pk.ciphertext_width
        if len(obf) != len(cs):
            raise ValueError(f"got {len(obf) // cw} obfuscators for {len(cs) // cw} ciphertexts")
        return b"".join(self._map(ops.rerandomize_with, len(cs) // cw, LIGHT_MIN_PARALLEL,
                                  [(cs, cw), (obf, cw)], args=(pk.n, cw)))

    def _powmod(self, bases: list[int], exps: list[int], mod: int) -> list[int]:
        count = len(bases)
        size = self._chunk_size(count, HEAVY_MIN_PARALLEL)
        pool = None if size is None else self._pool()
        if pool is None:
            return ops.powmod(bases, exps, mod)
        futures = [pool.submit("powmod", bases[i : i + size], exps[i : i + size], mod)
                   for i in range(0, count, size)]
        return [v for f in futures for v in f.result()]


def _save_atomically(table, path: str) -> None:
    import numpy as np

    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _prune(folder: str, prefix: str, keep: int) -> None:
    files = sorted((e for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".npy")),
                   key=lambda e: e.stat().st_mtime, reverse=True)
    for e in files[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(e.path)
