"""Throughput of the raw batch ops on one backend, with single-core gmpy2 as the unit.

Each op runs once to warm up (pool start, caches), then ``repeats`` times; the median is the
figure, min and max are kept. A sample of every measured batch is checked against an
independent gmpy2 computation: a fast wrong answer is an error, not a figure.

Records follow the project schema ``{device, backend, op, key_bits, batch, ops_per_s,
commit, date, command}`` plus ``min_ops_per_s``, ``max_ops_per_s``, ``repeats``, ``workers``.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import random
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gmpy2

from accel import CpuBackend, ObfuscatorPool, PrivateKey, PublicKey, generate_keypair, get_backend
from accel.backends.base import Backend

ALL_OPS = ["powmod_1core", "keygen", "encrypt", "encrypt_crt", "encrypt_djn", "encrypt_pooled", "decrypt",
           "decrypt_nocrt", "add", "add_plain", "mul", "sum", "matvec", "rerandomize",
           "add_packed", "add_plain_packed", "sum_packed",
           "encrypt_device", "encrypt_djn_device", "decrypt_device", "add_device", "mul_device",
           "add_mont_device", "sum_mont_device"]
#: The cheap ops on packed blobs in and out (the CPU's resident form: ciphertexts stay packed
#: between calls, converted once outside the timing), against the same ops on lists of ints.
#: A peer's figure for these is its op on its own vectors (fate_utils, HEU keep theirs native).
PACKED_OPS = {"add_packed": "add", "add_plain_packed": "add_plain", "sum_packed": "sum"}
#: Ops on device-resident batches (GPU backend only): no host conversion inside the timing.
#: ``*_mont_device``: ciphertexts kept in Montgomery form (GpuBackend.to_montgomery; the
#: conversions in and out are outside the timing, paid once per chain).
DEVICE_OPS = ["encrypt_device", "encrypt_djn_device", "decrypt_device", "add_device", "mul_device",
              "add_mont_device", "sum_mont_device"]
DEFAULT_OPS = ["powmod_1core", "encrypt", "encrypt_crt", "decrypt", "decrypt_nocrt", "add", "mul",
               "sum", "matvec"]


class BenchCheckError(AssertionError):
    """A measured batch gave a wrong result."""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(backend: Backend) -> str:
    if backend.name == "cpu":
        return f"{cpu_name()} x{os.cpu_count()} cores"
    devs = backend.describe().get("devices") or [{}]
    return ", ".join(str(d.get("name", d.get("runtime", backend.name))) for d in devs)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Measurement:
    op: str
    batch: int
    seconds: list[float] = field(default_factory=list)
    note: str = ""
    rows: int = 0  # the batch as the caller gave it, where ``batch`` counts elements (matvec)

    @property
    def ops_per_s(self) -> float:
        return self.batch / statistics.median(self.seconds)

    @property
    def min_ops_per_s(self) -> float:
        return self.batch / max(self.seconds)

    @property
    def max_ops_per_s(self) -> float:
        return self.batch / min(self.seconds)


class _Oracle:
    """Independent textbook Paillier decryption (c^lambda, no CRT) for the sample checks."""

    def __init__(self, sk: PrivateKey):
        n = gmpy2.mpz(sk.public_key.n)
        self.n, self.n2 = n, n * n
        self.lam = gmpy2.lcm(sk.p - 1, sk.q - 1)
        self.mu = gmpy2.invert((gmpy2.powmod(n + 1, self.lam, self.n2) - 1) // n, n)

    def dec(self, c: int) -> int:
        return int((gmpy2.powmod(c, self.lam, self.n2) - 1) // self.n * self.mu % self.n)


def _sample(count: int, k: int = 8) -> list[int]:
    return sorted(random.sample(range(count), min(k, count)))


#: The clock of every timed run: wall time (the default), or this process's CPU time
#: (``use_clock("cpu")``): the per-core cost of in-process work, unaffected by time slices lost
#: to other processes on a loaded machine (caches and a shared core still are).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def use_clock(name: str) -> None:
    global _clock
    if name not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {name!r}")
    _clock = CLOCKS[name]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``repeats`` times: each run's seconds on the chosen clock, and the last result."""
    out = None
    times = []
    for _ in range(repeats):
        t = _clock()
        out = fn()
        times.append(_clock() - t)
    return times, out


def run_ops(backend: Backend, bits: int, batch: int, repeats: int, ops: list[str],
            keys: tuple[PublicKey, PrivateKey] | None = None,
            progress: Callable[[str], None] | None = None, inputs: Any = None,
            prepared: dict | None = None) -> list[Measurement]:
    """Measure ``ops`` at one key size and batch size on one backend.

    ``inputs`` (a :class:`accel.bench.peers.Inputs`) fixes the plaintexts, scalars and matrix, so that
    peers measured in the same run see the same ones; by default plaintexts span [0, n).
    """
    pk, sk = keys or generate_keypair(bits)
    oracle = _Oracle(sk)
    n, n2 = pk.n, pk.nsquare
    ms = list(inputs.ms[:batch]) if inputs is not None else [secrets.randbelow(n) for _ in range(batch)]
    batch = len(ms)
    say = progress or (lambda _msg: None)
    # ``prepared``: the encrypted inputs by (n, plaintexts), shared by the backends of one run
    # (any backend's ciphertexts serve every backend: the same key)
    ready = prepared.get((n, tuple(ms))) if prepared is not None else None
    if ready is None:
        say("preparing ciphertexts")
        ready = (backend.raw_encrypt(pk, ms, private_key=sk), backend.raw_encrypt(pk, ms[::-1], private_key=sk))
        if prepared is not None:
            prepared.clear()  # one input set at a time
            prepared[(n, tuple(ms))] = ready
    cs, cs2 = list(ready[0]), list(ready[1])
    results: list[Measurement] = []

    def check(name: str, got: list[int], want: Callable[[int], int], idx: list[int] | None = None) -> None:
        for i in idx if idx is not None else _sample(len(got)):
            if oracle.dec(got[i]) != want(i) % n:
                raise BenchCheckError(f"{name}: wrong result at index {i}")

    warm = min(batch, max(8, 2 * getattr(backend, "workers", 1)))

    for op in ops:
        say(op)
        if op == "powmod_1core":
            # The unit: one core, one gmpy2 powmod(r, n, n^2) per value, as textbook encryption needs.
            k = max(50, min(batch, 200))
            rs = [gmpy2.mpz(secrets.randbelow(n - 1) + 1) for _ in range(k)]
            nn, nn2 = gmpy2.mpz(n), gmpy2.mpz(n2)
            times, _ = timed(lambda: [gmpy2.powmod(r, nn, nn2) for r in rs], repeats)
            results.append(Measurement(op, k, times, "single core, gmpy2.powmod(r, n, n^2)"))
            continue
        if op == "keygen":
            # key generation runs on the host CPU whatever the backend: one key per repeat
            times, _ = timed(lambda: generate_keypair(bits), repeats)
            results.append(Measurement(op, 1, times, "keys/s, CSPRNG primes, host CPU"))
            continue
        if op == "encrypt":
            backend.raw_encrypt(pk, ms[:warm])
            times, out = timed(lambda: backend.raw_encrypt(pk, ms), repeats)
            check(op, out, lambda i: ms[i])
        elif op == "encrypt_crt":
            backend.raw_encrypt(pk, ms[:warm], private_key=sk)
            times, out = timed(lambda: backend.raw_encrypt(pk, ms, private_key=sk), repeats)
            check(op, out, lambda i: ms[i])
        elif op == "encrypt_djn":
            from accel.djn import DjnKey

            djn = DjnKey.generate(pk)
            backend.raw_encrypt(pk, ms[:warm], djn=djn)
            times, out = timed(lambda: backend.raw_encrypt(pk, ms, djn=djn), repeats)
            check(op, out, lambda i: ms[i])
            results.append(Measurement(op, batch, times, f"DJN hs^r, |r| = {djn.exponent_bits} bits"))
            continue
        elif op in DEVICE_OPS:
            if not hasattr(backend, "to_device"):
                continue
            times, note = _device_op(op, backend, pk, sk, ms, cs, cs2, repeats, check)
            results.append(Measurement(op, batch, times, note))
            continue
        elif op == "encrypt_pooled":
            # Online cost only: the pool is filled before each timed run.
            pool = ObfuscatorPool(pk, backend, capacity=batch, private_key=sk, start=False)
            times = []
            for _ in range(repeats):
                pool.fill()
                t = time.perf_counter()
                out = backend.raw_encrypt(pk, ms, obfuscators=pool)
                times.append(time.perf_counter() - t)
            pool.close()
            check(op, out, lambda i: ms[i])
        elif op == "decrypt":
            backend.raw_decrypt(sk, cs[:warm])
            times, out = timed(lambda: backend.raw_decrypt(sk, cs), repeats)
            if out != ms:
                raise BenchCheckError("decrypt: wrong result")
        elif op == "decrypt_nocrt":
            if not isinstance(backend, CpuBackend):
                continue
            w = pk.ciphertext_width
            blob = b"".join(c.to_bytes(w, "little") for c in cs)
            backend.decrypt_without_crt(sk, blob[: warm * w])
            times, out = timed(lambda: backend.decrypt_without_crt(sk, blob), repeats)
            pw = pk.plaintext_width
            if [int.from_bytes(out[i * pw:(i + 1) * pw], "little") for i in range(batch)] != ms:
                raise BenchCheckError("decrypt_nocrt: wrong result")
        elif op in PACKED_OPS:
            from accel.packing import blob_to_ints, ints_to_blob

            cw = pk.ciphertext_width
            a, b, m = ints_to_blob(cs, cw), ints_to_blob(cs2, cw), ints_to_blob(ms, pk.plaintext_width)
            fn = {"add_packed": lambda: backend.raw_add(pk, a, b),
                  "add_plain_packed": lambda: backend.raw_add_plain(pk, a, m),
                  "sum_packed": lambda: backend.raw_sum(pk, a)}[op]
            times, out = timed(fn, repeats)
            if not isinstance(out, bytes):
                raise BenchCheckError(f"{op}: packed input gave {type(out).__name__}, not packed output")
            want = {"add_packed": lambda i: ms[i] + ms[batch - 1 - i], "add_plain_packed": lambda i: 2 * ms[i],
                    "sum_packed": lambda _i: sum(ms)}[op]
            check(op, blob_to_ints(out, cw), want, [0] if op == "sum_packed" else None)
            results.append(Measurement(op, batch, times, "packed blobs in and out (converted once, not timed)"))
            continue
        elif op == "add":
            times, out = timed(lambda: backend.raw_add(pk, cs, cs2), repeats)
            check(op, out, lambda i: ms[i] + ms[batch - 1 - i])
        elif op == "add_plain":
            times, out = timed(lambda: backend.raw_add_plain(pk, cs, ms), repeats)
            check(op, out, lambda i: 2 * ms[i])
        elif op == "mul":
            ks = (list(inputs.ks[:batch]) if inputs is not None
                  else [secrets.randbelow(1 << 64) - (1 << 63) for _ in range(batch)])
            backend.raw_mul(pk, cs[:warm], ks[:warm])
            times, out = timed(lambda: backend.raw_mul(pk, cs, ks), repeats)
            check(op, out, lambda i: ms[i] * ks[i])
        elif op == "sum":
            times, out = timed(lambda: backend.raw_sum(pk, cs), repeats)
            check(op, [out], lambda _i: sum(ms), [0])
        elif op == "matvec":
            # FATE's X^T [d]: rows = batch ciphertexts, 8 columns of signed 32-bit features.
            cols = inputs.cols if inputs is not None else 8
            X = (inputs.X[:batch] if inputs is not None
                 else [[secrets.randbelow(1 << 32) - (1 << 31) for _ in range(cols)] for _ in range(batch)])
            backend.raw_matvec(pk, cs[:warm], X[:warm])
            times, out = timed(lambda: backend.raw_matvec(pk, cs, X), repeats)
            check(op, out, lambda j: sum(ms[i] * X[i][j] for i in range(batch)), list(range(cols)))
            # Throughput in ciphertext x column products, the unit a per-element loop would pay.
            results.append(Measurement(op, batch * cols, times, f"{batch}x{cols} int32 matrix, per element",
                                       rows=batch))
            continue
        elif op == "rerandomize":
            backend.raw_rerandomize(pk, cs[:warm])
            times, out = timed(lambda: backend.raw_rerandomize(pk, cs), repeats)
            check(op, out, lambda i: ms[i])
        else:
            raise ValueError(f"unknown op {op!r}; choose from {', '.join(ALL_OPS)}")
        results.append(Measurement(op, batch, times))
    return results


def _device_op(op, backend, pk, sk, ms, cs, cs2, repeats, check):
    """Time one op on device-resident batches (copies excluded), then check a sample on the host."""
    from accel.packing import limbs_to_ints

    m_dev = backend.to_device(ms, pk.plaintext_width)
    c_dev = backend.to_device(cs, pk.ciphertext_width)
    c2_dev = backend.to_device(cs2, pk.ciphertext_width)
    batch = len(ms)
    if op == "encrypt_device":
        fn, want = (lambda: backend.raw_encrypt(pk, m_dev)), (lambda i: ms[i])
    elif op == "encrypt_djn_device":
        from accel.djn import DjnKey

        djn = DjnKey.generate(pk)
        fn, want = (lambda: backend.raw_encrypt(pk, m_dev, djn=djn)), (lambda i: ms[i])
    elif op == "decrypt_device":
        fn, want = (lambda: backend.raw_decrypt(sk, c_dev)), None
    elif op == "add_device":
        fn, want = (lambda: backend.raw_add(pk, c_dev, c2_dev)), (lambda i: ms[i] + ms[batch - 1 - i])
    elif op == "add_mont_device":
        x, y = backend.to_montgomery(pk, c_dev), backend.to_montgomery(pk, c2_dev)
        fn, want = (lambda: backend.raw_add(pk, x, y)), (lambda i: ms[i] + ms[batch - 1 - i])
    elif op == "sum_mont_device":
        x = backend.to_montgomery(pk, c_dev)
        fn, want = (lambda: backend.raw_sum(pk, x)), None
    else:
        ks = [secrets.randbelow(1 << 64) - (1 << 63) for _ in range(batch)]
        fn, want = (lambda: backend.raw_mul(pk, c_dev, ks)), (lambda i: ms[i] * ks[i])
    try:
        import cupy
        sync = cupy.cuda.runtime.deviceSynchronize
    except ImportError:  # the emulated runtime: nothing is in flight
        def sync():
            return None

    def synced():
        # the result may still be in flight on the backend's streams: time the device work,
        # not the launch
        result = fn()
        sync()
        return result

    synced()  # warm-up: kernel compilation, key records, tables
    times, out = timed(synced, repeats)
    host = limbs_to_ints(backend.to_host(out))
    if op == "sum_mont_device":
        check(op, host, lambda _i: sum(ms), [0])
    elif want is None:
        if host != ms:
            raise BenchCheckError(f"{op}: wrong result")
    else:
        check(op, host, want)
    return times, "device-resident in and out (no host conversion timed)"


def records(measurements: list[Measurement], backend: Backend, bits: int, repeats: int) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    cmd = " ".join(shlex.quote(a) for a in ["he-accel", *sys.argv[1:]])
    dev, commit = device_name(backend), git_commit()
    out = []
    for m in measurements:
        be_name = "gmpy2-1core" if m.op == "powmod_1core" else backend.name
        out.append({
            "device": dev, "backend": be_name, "op": m.op, "key_bits": bits, "batch": m.rows or m.batch,
            "ops_per_s": round(m.ops_per_s, 2), "commit": commit, "date": now, "command": cmd,
            "min_ops_per_s": round(m.min_ops_per_s, 2), "max_ops_per_s": round(m.max_ops_per_s, 2),
            "repeats": repeats, "workers": getattr(backend, "workers", None), "note": m.note,
        })
    return out


def table(recs: list[dict[str, Any]]) -> str:
    unit = next((r["ops_per_s"] for r in recs if r["op"] == "powmod_1core"), None)
    lines = [f"{'op':<16}{'bits':>6}{'batch':>8}{'ops/s':>14}{'min':>12}{'max':>12}{'x 1-core powmod':>18}"]
    for r in recs:
        ratio = f"{r['ops_per_s'] / unit:.2f}" if unit else "-"
        lines.append(f"{r['op']:<16}{r['key_bits']:>6}{r['batch']:>8}{r['ops_per_s']:>14,.1f}"
                     f"{r['min_ops_per_s']:>12,.1f}{r['max_ops_per_s']:>12,.1f}{ratio:>18}")
    return "\n".join(lines)


def make_backend(name: str, workers: int | None) -> Backend:
    if name == "cpu":
        return CpuBackend(workers=workers)
    return get_backend(name)
