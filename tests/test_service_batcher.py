"""The dynamic batcher: coalescing, bounds, back-pressure, cancellation, failure isolation."""
from __future__ import annotations

import threading
import time

import pytest

from accel.service.batcher import DynamicBatcher, Job
from accel.service.errors import Cancelled, ResourceExhausted


class Recorder:
    """A backend stand-in: elementwise 'square' over 4-byte ints, recording each call."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None):
        self.calls: list[int] = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, blob: bytes, ks: list[int]) -> bytes:
        vals = [int.from_bytes(blob[i:i + 4], "little") for i in range(0, len(blob), 4)]
        if self.fail_on is not None and self.fail_on in vals:
            raise ValueError(f"plaintext[{vals.index(self.fail_on)}] is out of range")
        with self.lock:
            self.calls.append(len(vals))
        time.sleep(self.delay)
        return b"".join(((v * k) % 2**32).to_bytes(4, "little") for v, k in zip(vals, ks))


def job(run, values, k=3, group=("mul", "key")):
    blob = b"".join(v.to_bytes(4, "little") for v in values)
    return Job(group, len(values), (blob, [k] * len(values)), run, 4, "mul")


def decode(blob):
    return [int.from_bytes(blob[i:i + 4], "little") for i in range(0, len(blob), 4)]


def test_concurrent_requests_coalesce_and_split_correctly():
    rec = Recorder(delay=0.01)
    b = DynamicBatcher(max_batch=10_000, max_delay=0.05)
    try:
        futs = [b.submit(job(rec, list(range(i, i + 10)), k=i + 1)) for i in range(50)]
        for i, f in enumerate(futs):
            assert decode(f.result(10)) == [v * (i + 1) for v in range(i, i + 10)]
    finally:
        b.close()
    assert sum(rec.calls) == 500
    assert len(rec.calls) < 10, rec.calls  # 50 requests, a handful of executions


def test_max_batch_bounds_each_execution():
    rec = Recorder(delay=0.01)
    b = DynamicBatcher(max_batch=25, max_delay=0.05)
    try:
        futs = [b.submit(job(rec, [i] * 10)) for i in range(20)]
        for f in futs:
            f.result(10)
    finally:
        b.close()
    assert max(rec.calls) <= 25 and sum(rec.calls) == 200


def test_oversize_single_job_still_runs_alone():
    rec = Recorder()
    b = DynamicBatcher(max_batch=5, max_delay=0.001)
    try:
        assert decode(b.submit(job(rec, list(range(12)), k=2)).result(10)) == [2 * v for v in range(12)]
    finally:
        b.close()
    assert rec.calls == [12]


def test_groups_do_not_mix():
    rec = Recorder(delay=0.005)
    b = DynamicBatcher(max_batch=1000, max_delay=0.02)
    try:
        fa = [b.submit(job(rec, [1, 2], k=2, group=("mul", "A"))) for _ in range(5)]
        fb = [b.submit(job(rec, [1, 2], k=5, group=("mul", "B"))) for _ in range(5)]
        assert all(decode(f.result(10)) == [2, 4] for f in fa)
        assert all(decode(f.result(10)) == [5, 10] for f in fb)
    finally:
        b.close()


def test_queue_bound_gives_resource_exhausted_and_loses_nothing():
    gate = threading.Event()

    def slow(blob, ks):
        gate.wait(10)
        return blob

    b = DynamicBatcher(max_batch=4, max_delay=0.0, max_queue_elements=8)
    try:
        first = b.submit(job(slow, [1, 2, 3, 4]))      # taken by the worker, blocks on the gate
        time.sleep(0.05)
        queued = [b.submit(job(slow, [5, 6, 7, 8])), b.submit(job(slow, [9, 10, 11, 12]))]
        with pytest.raises(ResourceExhausted, match="queue is full"):
            b.submit(job(slow, [13]))
        gate.set()
        assert decode(first.result(10)) == [1, 2, 3, 4]
        assert [decode(f.result(10)) for f in queued] == [[5, 6, 7, 8], [9, 10, 11, 12]]
    finally:
        gate.set()
        b.close()


def test_cancelled_jobs_are_dropped_before_running():
    gate = threading.Event()
    rec = Recorder()

    def blocker(blob, ks):
        gate.wait(10)
        return blob

    b = DynamicBatcher(max_batch=100, max_delay=0.0)
    try:
        b.submit(job(blocker, [1], group=("x",)))
        time.sleep(0.05)
        j = job(rec, [7, 8])
        f = b.submit(j)
        j.cancel()
        gate.set()
        with pytest.raises(Cancelled):
            f.result(10)
    finally:
        gate.set()
        b.close()
    assert rec.calls == []


def test_a_bad_request_fails_alone_in_a_merged_batch():
    rec = Recorder(fail_on=666)
    gate = threading.Event()

    def blocker(blob, ks):
        gate.wait(10)
        return blob

    b = DynamicBatcher(max_batch=1000, max_delay=0.0)
    try:
        b.submit(job(blocker, [1], group=("x",)))       # hold the worker so the next three merge
        time.sleep(0.05)
        good1 = b.submit(job(rec, [1, 2]))
        bad = b.submit(job(rec, [3, 666]))
        good2 = b.submit(job(rec, [4]))
        gate.set()
        assert decode(good1.result(10)) == [3, 6]
        assert decode(good2.result(10)) == [12]
        with pytest.raises(ValueError, match=r"plaintext\[1\]"):  # its own index, not the merged one
            bad.result(10)
    finally:
        gate.set()
        b.close()


def test_close_drains_queued_work():
    rec = Recorder(delay=0.01)
    b = DynamicBatcher(max_batch=3, max_delay=0.5)
    futs = [b.submit(job(rec, [i])) for i in range(7)]
    b.close(timeout=10)
    assert [decode(f.result(0)) for f in futs] == [[3 * i] for i in range(7)]
    with pytest.raises(ResourceExhausted, match="shutting down"):
        b.submit(job(rec, [1]))


def test_several_workers_run_in_parallel():
    active, peak = [0], [0]
    lock = threading.Lock()

    def run(blob, ks):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return blob

    b = DynamicBatcher(workers=2, max_batch=1, max_delay=0.0)
    try:
        futs = [b.submit(job(run, [i], group=("g", i))) for i in range(4)]
        for f in futs:
            f.result(10)
    finally:
        b.close()
    assert peak[0] == 2
