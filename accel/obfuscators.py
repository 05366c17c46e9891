"""A pool of precomputed obfuscators r^n mod n^2, each handed out once and then forgotten.

Encryption is (1 + m n) * r^n mod n^2 and r^n does not depend on m, so it can be computed
ahead, in idle time, and the online encryption becomes one multiplication. The pool refills
in a background thread (the work itself runs on the backend, e.g. the CPU worker processes)
whenever it falls below ``low_water``.

Safety: every value is removed from the pool when taken, so no obfuscator is ever used
twice (two ciphertexts sharing one would reveal m1 - m2). The values are secret: whoever
learns r^n for a ciphertext learns its plaintext, so the pool lives only in the owning
process's memory and is never serialised. Counters (``stats()``) tell how many were
produced, served from the pool, and computed on demand because the pool ran dry.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

from .keys import PrivateKey, PublicKey, RandomSource

if TYPE_CHECKING:
    from .backends.base import Backend

log = logging.getLogger(__name__)


class ObfuscatorPool:
    """Precomputed r^n mod n^2 for one public key.

    Args:
        public_key: the key whose obfuscators to precompute.
        backend: where the exponentiations run (default: the shared CPU backend).
        capacity: the most values held at once.
        low_water: refill when fewer remain (default: capacity // 2).
        refill_batch: values computed per background step.
        private_key: the matching private key, if the owner holds it: CRT, about 3-4x cheaper.
        rng: the randomness source (default: the OS CSPRNG).
        start: start the background refill thread now.
    """

    def __init__(self, public_key: PublicKey, backend: "Backend | None" = None, *, capacity: int = 4096,
                 low_water: int | None = None, refill_batch: int = 256,
                 private_key: PrivateKey | None = None, rng: RandomSource | None = None,
                 start: bool = True):
        if capacity < 1 or refill_batch < 1:
            raise ValueError("capacity and refill_batch must be >= 1")
        if backend is None:
            from .backends import get_backend

            backend = get_backend("cpu")
        if private_key is not None and private_key.public_key != public_key:
            raise ValueError("the private key does not belong to this public key")
        self.public_key = public_key
        self.backend = backend
        self.capacity = capacity
        self.low_water = capacity // 2 if low_water is None else min(low_water, capacity)
        self.refill_batch = min(refill_batch, capacity)
        self._private_key = private_key
        self._rng = rng
        self._width = public_key.ciphertext_width
        self._values: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.produced = 0
        self.served_from_pool = 0
        self.computed_on_demand = 0
        self.refill_errors = 0
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="obfuscator-pool", daemon=True)
            self._thread.start()
            self._wake.set()

    def close(self) -> None:
        """Stop refilling and drop every precomputed value."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            self._values.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("an ObfuscatorPool holds secrets and cannot be pickled")

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    # -- production --------------------------------------------------------------------------
    def _compute(self, count: int) -> bytes:
        return self.backend.obfuscators(self.public_key, count, rng=self._rng,
                                        private_key=self._private_key)

    def fill(self, count: int | None = None) -> int:
        """Compute up to ``count`` values now (default: to capacity), in the calling thread."""
        with self._lock:
            room = self.capacity - len(self._values)
        count = room if count is None else min(count, room)
        if count <= 0:
            return 0
        blob = self._compute(count)
        w = self._width
        with self._lock:
            self._values.extend(blob[i : i + w] for i in range(0, len(blob), w))
            self.produced += count
        return count

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                with self._lock:
                    level = len(self._values)
                if level >= self.capacity:  # woken at low water: top up to capacity
                    break
                try:
                    self.fill(self.refill_batch)
                except Exception:  # noqa: BLE001 - a failed refill must not kill the thread
                    self.refill_errors += 1
                    log.exception("obfuscator pool refill failed; takes will compute on demand")
                    self._stop.wait(1.0)
                    break

    # -- consumption -------------------------------------------------------------------------
    def take(self, count: int) -> bytes:
        """``count`` obfuscators as a ciphertext-width blob. Values come out of the pool (never
        to be returned again); any shortfall is computed now and counted as on demand."""
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            k = min(count, len(self._values))
            taken = [self._values.popleft() for _ in range(k)]
            self.served_from_pool += k
            level = len(self._values)
        if level <= self.low_water:
            self._wake.set()
        if k < count:
            taken.append(self._compute(count - k))
            with self._lock:
                self.computed_on_demand += count - k
        return b"".join(taken)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "available": len(self._values),
                "capacity": self.capacity,
                "produced": self.produced,
                "served_from_pool": self.served_from_pool,
                "computed_on_demand": self.computed_on_demand,
                "refill_errors": self.refill_errors,
            }
