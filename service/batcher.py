"""Dynamic batching: concurrent requests for the same key and op run as one backend call.

Each request becomes a :class:`Job` with a coalescing ``group`` (op, key, mode...). Workers
(one per GPU, or as configured) take the oldest group, wait at most ``max_delay`` from its
first job's arrival for more jobs of that group (up to ``max_batch`` elements; a group that
already holds ``preferred_batch`` elements runs at once, as waiting buys it little), concatenate
their inputs, run one backend call and split the result. The queue is bounded in elements:
a submit that would overflow it raises :class:`ResourceExhausted` (back-pressure). Jobs whose
caller has gone (deadline, cancellation) are dropped before they run. If a merged call fails,
its jobs are rerun one by one, so one bad request never fails its neighbours.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

from . import defaults
from .errors import Cancelled, ResourceExhausted

log = logging.getLogger(__name__)

# run(*merged_inputs) -> packed output of out_width bytes per element (elementwise jobs), or
# any result for a job that runs alone.
Runner = Callable[..., Any]


@dataclass(eq=False)
class Job:
    group: Hashable
    count: int
    inputs: tuple[Sequence, ...]
    run: Runner
    out_width: int = 0              # 0: not elementwise, runs alone
    op: str = ""
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    owner: str = ""                 # the caller's identity: queued work is capped per identity
    deadline: float | None = None   # time.monotonic() after which nobody waits for the result

    @property
    def abandoned(self) -> bool:
        return self.cancelled or (self.deadline is not None and time.monotonic() >= self.deadline)

    @property
    def elementwise(self) -> bool:
        return self.out_width > 0

    def cancel(self) -> None:
        """The caller has gone: drop the job if it has not started."""
        self.cancelled = True


class BatchObserver:
    """Hooks for metrics; the default does nothing."""

    def executed(self, op: str, requests: int, elements: int, seconds: float) -> None: ...

    def queue_changed(self, requests: int, elements: int) -> None: ...


class DynamicBatcher:
    def __init__(self, *, workers: int = 1, max_batch: int = defaults.MAX_BATCH,
                 max_delay: float = defaults.MAX_DELAY_MS / 1000,
                 max_queue_elements: int = defaults.MAX_QUEUE_ELEMENTS, preferred_batch: int = defaults.PREFERRED_BATCH,
                 max_identity_queue_elements: int | None = None, observer: BatchObserver | None = None):
        if workers < 1 or max_batch < 1 or max_delay < 0 or max_queue_elements < 1:
            raise ValueError("workers, max_batch and max_queue_elements must be >= 1, max_delay >= 0")
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.preferred_batch = min(preferred_batch, max_batch)
        self.max_queue_elements = max_queue_elements
        self.max_identity_queue_elements = max_identity_queue_elements or max_queue_elements
        self._per_owner: collections.Counter[str] = collections.Counter()
        self.observer = observer or BatchObserver()
        self._groups: collections.OrderedDict[Hashable, collections.deque[Job]] = collections.OrderedDict()
        self._claimed: set[Hashable] = set()
        self._queued_elements = 0
        self._queued_requests = 0
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [threading.Thread(target=self._work, name=f"heaccel-batch-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- producer side ---------------------------------------------------------------------
    def submit(self, job: Job) -> Future:
        with self._cond:
            if self._closing:
                raise ResourceExhausted("the server is shutting down")
            if self._queued_requests and self._queued_elements + job.count > self.max_queue_elements:
                raise ResourceExhausted(
                    f"the work queue is full ({self._queued_elements} elements queued); retry later")
            mine = self._per_owner[job.owner]
            if mine and mine + job.count > self.max_identity_queue_elements:
                raise ResourceExhausted(
                    f"this identity has {mine} elements queued, its share is {self.max_identity_queue_elements}; "
                    "retry later")
            self._per_owner[job.owner] += job.count
            self._groups.setdefault(job.group, collections.deque()).append(job)
            self._queued_elements += job.count
            self._queued_requests += 1
            self._notify_queue()
            self._cond.notify_all()
        return job.future

    def depth(self) -> tuple[int, int]:
        with self._cond:
            return self._queued_requests, self._queued_elements

    def _notify_queue(self) -> None:
        self.observer.queue_changed(self._queued_requests, self._queued_elements)

    # -- consumer side ---------------------------------------------------------------------
    def _oldest_free_group(self) -> Hashable | None:
        for g in self._groups:
            if g not in self._claimed:
                return g
        return None

    def _take(self) -> list[Job] | None:
        """Block until a batch is ready; None when closing and drained."""
        with self._cond:
            while True:
                g = self._oldest_free_group()
                if g is not None:
                    break
                if self._closing and not self._groups:
                    return None
                self._cond.wait()
            self._claimed.add(g)
            try:
                jobs = self._groups[g]
                if jobs[0].elementwise:
                    deadline = jobs[0].arrived + self.max_delay
                    while not self._closing:
                        total = sum(j.count for j in jobs)
                        left = deadline - time.monotonic()
                        if total >= self.preferred_batch or left <= 0:
                            break
                        self._cond.wait(left)
                batch = [jobs.popleft()]
                if batch[0].elementwise:
                    total = batch[0].count
                    while jobs and total + jobs[0].count <= self.max_batch:
                        total += jobs[0].count
                        batch.append(jobs.popleft())
                if not jobs:
                    del self._groups[g]
                self._queued_requests -= len(batch)
                self._queued_elements -= sum(j.count for j in batch)
                for j in batch:
                    self._per_owner[j.owner] -= j.count
                    if not self._per_owner[j.owner]:
                        del self._per_owner[j.owner]
                self._notify_queue()
                return batch
            finally:
                self._claimed.discard(g)
                self._cond.notify_all()

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            live = []
            for job in batch:
                if job.abandoned:
                    job.future.set_exception(Cancelled("the caller cancelled or its deadline passed"))
                elif job.future.set_running_or_notify_cancel():
                    live.append(job)
            if live:
                self._execute(live)

    def _execute(self, jobs: list[Job]) -> None:
        start = time.perf_counter()
        try:
            if len(jobs) == 1:
                results = [jobs[0].run(*jobs[0].inputs)]
            else:
                merged = tuple(_concat([j.inputs[k] for j in jobs]) for k in range(len(jobs[0].inputs)))
                out = jobs[0].run(*merged)
                results, pos = [], 0
                for j in jobs:
                    size = j.count * j.out_width
                    results.append(out[pos:pos + size])
                    pos += size
        except BaseException as e:  # noqa: BLE001 - every failure goes to the callers
            if len(jobs) > 1:
                log.info("a merged %s batch of %d requests failed (%s); rerunning them one by one",
                         jobs[0].op, len(jobs), type(e).__name__)
                for j in jobs:
                    self._execute([j])
                return
            jobs[0].future.set_exception(e)
            return
        self.observer.executed(jobs[0].op, len(jobs), sum(j.count for j in jobs), time.perf_counter() - start)
        for j, r in zip(jobs, results):
            j.future.set_result(r)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Stop accepting work, finish what is queued, stop the workers."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)


def _concat(parts: list[Sequence]) -> Sequence:
    if isinstance(parts[0], (bytes, bytearray, memoryview)):
        return b"".join(parts)
    out: list = []
    for p in parts:
        out.extend(p)
    return out
