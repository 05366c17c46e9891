"""The README's main job: start ``he-accel serve``, do a real client round trip, show metrics.

The server runs as a subprocess on ephemeral ports (CPU fallback without a GPU). The client
generates a key pair on the service, encrypts, adds, sums, multiplies by scalars, runs a
matrix product and decrypts through ``get_backend("remote")`` and :class:`EncryptedVector`;
every result is checked against numpy. Then the metrics endpoint is scraped and parsed.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np


@contextmanager
def running_server(*args: str, env: dict[str, str] | None = None, startup_timeout: float = 60.0,
                   on_serving: Callable[[str], None] | None = None
                   ) -> Iterator[tuple[subprocess.Popen, int, int | None]]:
    """``he-accel serve`` in a subprocess on free ports: yields (process, grpc port, metrics port).
    ``on_serving`` receives the server's "serving on port ... (backend ...)" line."""
    cmd = [sys.executable, "-m", "accel.cli", "serve", "--address", "127.0.0.1:0", *args]
    if "--metrics-port" not in args:
        cmd += ["--metrics-port", "0"]
    if "--key-store" not in args and "HEA_KEY_STORE" not in (env or {}):
        cmd += ["--key-store", "memory"]  # a throwaway server: nothing written to the user's key store
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=None, text=True,
                            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + startup_timeout
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {proc.returncode} before serving")
            if "serving on port" in line:
                break
        m = re.search(r"serving on port (\d+)", line)
        if not m:
            raise RuntimeError("the server did not report its port in time")
        mm = re.search(r"metrics on port (\d+)", line)
        if on_serving is not None:
            on_serving(line.strip())
        yield proc, int(m.group(1)), int(mm.group(1)) if mm else None
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def wait_healthy(target: str, timeout: float = 30.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout, wait_for_ready=True)
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"the server is not serving: {resp.status}")


SNAPSHOT = ("heaccel_requests_total", "heaccel_ciphertexts_total", "heaccel_batch_executions_total",
            "heaccel_batched_requests_total", "heaccel_keys_held", "heaccel_cpu_fallbacks_total",
            "heaccel_queue_depth_requests", "heaccel_inflight_requests", "heaccel_gpu_utilization_ratio",
            "heaccel_gpu_memory_used_bytes", "heaccel_build_info")


def metrics_snapshot(port: int) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name in SNAPSHOT:
                out.append((s.name, dict(s.labels), s.value))
    return out


def run(backend: str = "auto", bits: int = 2048, size: int = 1000, cols: int = 4) -> int:
    from accel import EncryptedVector, get_backend

    print(f"he-accel service demo: starting `he-accel serve --backend {backend}` ...", flush=True)
    serving: list[str] = []
    with running_server("--backend", backend, "--min-key-bits", str(min(bits, 1024)),
                        on_serving=serving.append) as (proc, port, mport):
        target = f"127.0.0.1:{port}"
        wait_healthy(target)
        print(f"  server up on {target} (pid {proc.pid}), metrics on :{mport}; health SERVING")
        m = re.search(r"\(backend (\w+)\)", serving[0] if serving else "")
        ran_on = m.group(1) if m else "unknown"
        fallback = "; 'auto' found no usable GPU" if backend == "auto" and ran_on == "cpu" else ""
        print(f"  the service computes on backend {ran_on}{fallback}")
        be = get_backend("remote", target=target)
        ok = True
        try:
            def step(name, fn, count):
                t0 = time.perf_counter()
                out = fn()
                dt = time.perf_counter() - t0
                print(f"  {name:<26}{dt:8.2f} s   {count / dt:12,.1f} /s")
                return out

            pk, sk = step("keygen (on the service)", lambda: be.client.generate_keypair(bits), 1)
            print(f"    {pk!r}; the private key stays on the service, bound to this caller")
            rng = np.random.default_rng()  # plaintext data only; obfuscators come from the server's CSPRNG
            x, y = rng.normal(size=size), rng.normal(size=size)
            X = rng.normal(size=(size, cols))
            ex = step("encrypt", lambda: EncryptedVector.encrypt(pk, x, backend=be), size)
            ey = step("encrypt (CRT, key holder)", lambda: EncryptedVector.encrypt(pk, y, backend=be, private_key=sk),
                      size)
            s = step("add", lambda: ex + ey, size)
            a = step("axpy 2.5*x + y", lambda: ex * 2.5 + ey, size)
            tot = step("sum", lambda: ex.sum(), size)
            mv = step(f"matvec ({cols} cols)", lambda: ex.dot(X), size * cols)
            dec = step("decrypt", lambda: s.decrypt(sk), size)
            checks = {"x + y": (dec, x + y), "2.5 x + y": (a.decrypt(sk), 2.5 * x + y),
                      "sum x": (tot.decrypt(sk), x.sum()), "x^T X": (mv.decrypt(sk), x @ X)}
            for name, (got, want) in checks.items():
                good = bool(np.allclose(got, want, rtol=1e-9, atol=1e-9))
                ok &= good
                print(f"  check {name:<12} {'ok' if good else 'MISMATCH'} (max abs err {np.max(np.abs(got - want)):.2e})")
        finally:
            be.close()
        if mport:
            print("  metrics snapshot (Prometheus text, parsed):")
            for name, labels, value in metrics_snapshot(mport):
                lab = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                print(f"    {name}{{{lab}}} {value:g}")
    print("service demo:", "all results match" if ok else "FAILED")
    return 0 if ok else 1
