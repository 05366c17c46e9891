"""The gmpy2 CPU backend: all cores through a process pool, blobs over the pipes.

gmpy2's ``powmod`` holds the GIL, so parallelism needs processes. Each task carries one or two
packed blobs plus the key's integers, and returns one blob: IPC stays about 2 x the data size,
negligible next to a 2048-bit modexp (milliseconds) and worth it for the cheap ops (add, sum)
only on large batches, hence per-op thresholds. Workers start by ``forkserver`` (safe beside
threads, e.g. a gRPC server) and are created lazily on the first parallel call.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, Callable

from ..keys import PrivateKey, PublicKey, RandomSource
from ..packing import split_blob
from . import _gmp_ops as ops
from .base import Backend

log = logging.getLogger(__name__)

#: Minimum batch per op before the pool is used: modexp ops parallelise from a few elements,
#: mulmod-only ops (a few microseconds each) only when the batch amortises the copying.
HEAVY_MIN_PARALLEL = 4
LIGHT_MIN_PARALLEL = 20000


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CpuBackend(Backend):
    """Paillier batch arithmetic on gmpy2 using ``workers`` processes (default: all cores).

    ``workers=1`` runs everything in the calling process. ``chunks_per_worker`` trades load
    balance against per-task overhead. The pool is shut down by :meth:`close` (or at exit).
    """

    name = "cpu"

    def __init__(self, workers: int | None = None, *, rng: RandomSource | None = None,
                 chunks_per_worker: int = 4, start_method: str | None = None):
        super().__init__(rng=rng)
        self.workers = max(1, int(workers or _available_cores()))
        self.chunks_per_worker = max(1, int(chunks_per_worker))
        self._start_method = start_method or ("forkserver" if os.name == "posix" else "spawn")
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.tasks_submitted = 0

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "workers": self.workers, "start_method": self._start_method}

    def __repr__(self) -> str:
        return f"<CpuBackend workers={self.workers}>"

    # -- pool --------------------------------------------------------------------------------
    def _pool(self) -> Executor:
        with self._lock:
            if self._closed:
                raise RuntimeError("this CpuBackend is closed")
            if self._executor is None:
                ctx = multiprocessing.get_context(self._start_method)
                if self._start_method == "forkserver":
                    ctx.set_forkserver_preload(["accel.backends._gmp_ops"])
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
                # multiprocessing's Finalize, not weakref.finalize: inside a multiprocessing
                # child, atexit never runs and the exit joins every child process first, so an
                # unclosed pool would hang the exit; exit-priority finalizers run before that join.
                multiprocessing.util.Finalize(self, _shutdown, args=(self._executor,), exitpriority=10)
                log.debug("started %d CPU worker processes (%s)", self.workers, self._start_method)
            return self._executor

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ex, self._executor = self._executor, None
        if ex is not None:
            _stop(ex, wait=True)

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
        if size is None:
            return [fn(*lead, *(b for b, _ in chunked), *(extra_chunked or []), *args, offset=0)]
        starts = list(range(0, count, size))
        pieces = [split_blob(b, w, size) for b, w in chunked]
        pool = self._pool()
        futures = []
        for k, start in enumerate(starts):
            blobs = [p[k][1] for p in pieces]
            lists = [lst[start : start + size] for lst in (extra_chunked or [])]
            futures.append(pool.submit(fn, *lead, *blobs, *lists, *args, offset=start))
        self.tasks_submitted += len(futures)
        return [f.result() for f in futures]

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
        if ms is None:
            return b"".join(self._map(ops.encrypt_djn, count, HEAVY_MIN_PARALLEL, [(rs, pw)],
                                      args=(pk.n, djn.hs, pw, cw), lead=(None,)))
        return b"".join(self._map(ops.encrypt_djn, count, HEAVY_MIN_PARALLEL, [(ms, pw), (rs, pw)],
                                  args=(pk.n, djn.hs, pw, cw)))

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
        return b"".join(self._map(ops.add, len(a) // cw, LIGHT_MIN_PARALLEL, [(a, cw), (b, cw)],
                                  args=(pk.nsquare, cw)))

    def _add_plain(self, pk: PublicKey, cs: bytes, ms: bytes) -> bytes:
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        return b"".join(self._map(ops.add_plain, len(cs) // cw, LIGHT_MIN_PARALLEL,
                                  [(cs, cw), (ms, pw)], args=(pk.n, pw, cw)))

    def _mul(self, pk: PublicKey, cs: bytes, ks: list[int]) -> bytes:
        cw = pk.ciphertext_width
        return b"".join(self._map(ops.mul, len(cs) // cw, HEAVY_MIN_PARALLEL, [(cs, cw)],
                                  extra_chunked=[ks], args=(pk.nsquare, cw)))

    def _sum(self, pk: PublicKey, cs: bytes) -> bytes:
        cw = pk.ciphertext_width
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
        if size is None:
            return ops.powmod(bases, exps, mod)
        pool = self._pool()
        futures = [pool.submit(ops.powmod, bases[i : i + size], exps[i : i + size], mod)
                   for i in range(0, count, size)]
        return [v for f in futures for v in f.result()]


def _stop(executor: Executor, *, wait: bool) -> None:
    """shutdown(cancel_futures=True): tasks not yet started are dropped. Python 3.8 has no
    such flag (FATE 1.x runs there), so its pending futures are cancelled first."""
    if sys.version_info >= (3, 9):
        executor.shutdown(wait=wait, cancel_futures=True)
        return
    for item in list((getattr(executor, "_pending_work_items", None) or {}).values()):
        item.future.cancel()
    executor.shutdown(wait=wait)


def _shutdown(executor: Executor) -> None:
    """At exit or when the backend is collected: stop the pool without waiting on it. The
    workers hold no state worth keeping, and at a multiprocessing child's exit they may not
    wake for the shutdown sentinel before that exit joins them, so they are terminated."""
    workers = list((getattr(executor, "_processes", None) or {}).values())  # a snapshot, before shutdown clears it
    _stop(executor, wait=False)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
