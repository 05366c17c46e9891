"""Service benchmarks (figures, not tests): run them with ``python -m accel.bench.service_bench``.

1. **Overhead**: the same batch op in process (``get_backend(backend)``) and through the
   service on loopback (``he-accel serve`` in a subprocess with the same backend), side by side,
   interleaved, best of ``--repeats``; overhead = service time / library time - 1.
2. **Coalescing**: ``--clients`` concurrent clients each sending ``--request-size``-element
   requests for ``--seconds``; the mean executed batch is read from the server's own metrics
   (increase of ``heaccel_batch_size_sum`` / ``heaccel_batch_executions_total``).
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import threading
import time
from datetime import date
from typing import Any

from accel import generate_keypair, get_backend
from accel.backends import LOCAL_BACKENDS
from accel.packing import ints_to_blob

from .service_demo import running_server, wait_healthy


def _scrape(port: int) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def overhead(backend: str, bits: int, batches: list[int], repeats: int, target: str) -> list[dict[str, Any]]:
    from accel.service.client import HeAccelClient

    pk, sk = generate_keypair(bits)
    local = get_backend(backend)
    rows = []
    with HeAccelClient(target, timeout=600) as c:
        c.import_private_key(sk)
        for n in batches:
            ms = ints_to_blob([random.randrange(pk.n) for _ in range(n)], pk.plaintext_width)
            cs = local.raw_encrypt(pk, ms)
            ks = [random.randrange(-(2**52), 2**52) for _ in range(n)]
            ops = {
                "encrypt": (lambda: local.raw_encrypt(pk, ms), lambda: c.encrypt(pk, ms)),
                "add": (lambda: local.raw_add(pk, cs, cs), lambda: c.add(pk, cs, cs)),
                "mul": (lambda: local.raw_mul(pk, cs, ks), lambda: c.mul(pk, cs, ks)),
                "decrypt": (lambda: local.raw_decrypt(sk, cs), lambda: c.decrypt(pk, cs)),
            }
            for op, (lib, svc) in ops.items():
                lib(), svc()  # warm both paths
                t_lib, t_svc = [], []
                for _ in range(repeats):  # interleaved so drift hits both alike
                    t0 = time.perf_counter()
                    lib()
                    t_lib.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    svc()
                    t_svc.append(time.perf_counter() - t0)
                a, b = min(t_lib), min(t_svc)
                rows.append({"op": op, "batch": n, "key_bits": bits, "library_s": a, "service_s": b,
                             "library_ops_per_s": n / a, "service_ops_per_s": n / b, "overhead": b / a - 1})
                print(f"  {op:<8} batch {n:>6}: library {n / a:10,.0f}/s  service {n / b:10,.0f}/s  "
                      f"overhead {100 * (b / a - 1):+6.1f}%", file=sys.stderr, flush=True)
    return rows


def coalescing(bits: int, clients: int, request_size: int, seconds: float, target: str, metrics_port: int,
               op: str) -> dict[str, Any]:
    from accel.service.client import HeAccelClient

    pk, _ = generate_keypair(bits)
    ms = ints_to_blob([random.randrange(pk.n) for _ in range(request_size)], pk.plaintext_width)
    with HeAccelClient(target) as c:
        cs = c.encrypt(pk, ms)
    before = _scrape(metrics_port)
    stop = time.monotonic() + seconds
    done = [0] * clients
    errors: list[BaseException] = []
    start_gate = threading.Barrier(clients)

    def worker(i: int) -> None:
        try:
            with HeAccelClient(target, timeout=600) as cl:
                start_gate.wait()
                while time.monotonic() < stop:
                    if op == "encrypt":
                        cl.encrypt(pk, ms)
                    else:
                        cl.mul(pk, cs, [3] * request_size)
                    done[i] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = _scrape(metrics_port)
    if errors:
        raise errors[0]
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in
         ("heaccel_batch_size_sum", "heaccel_batch_executions_total", "heaccel_batched_requests_total")}
    execs = d["heaccel_batch_executions_total"]
    mean_batch = d["heaccel_batch_size_sum"] / execs if execs else 0.0
    row = {"op": op, "key_bits": bits, "clients": clients, "request_size": request_size, "seconds": wall,
           "requests": sum(done), "executions": execs, "requests_per_execution": d["heaccel_batched_requests_total"] / execs
           if execs else 0.0, "mean_executed_batch": mean_batch, "mean_batch_over_request": mean_batch / request_size,
           "elements_per_s": sum(done) * request_size / wall}
    print(f"  {clients} clients x {request_size}-element {op}: {sum(done)} requests in {execs:.0f} executions, "
          f"mean executed batch {mean_batch:,.0f} ({mean_batch / request_size:.1f}x the request), "
          f"{row['elements_per_s']:,.0f} elements/s", file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m accel.bench.service_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="cpu", choices=LOCAL_BACKENDS)
    p.add_argument("--bits", type=int, default=2048)
    p.add_argument("--batches", default="1000,4000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--request-size", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--coalesce-op", default="mul", choices=["mul", "encrypt"])
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    with running_server("--backend", args.backend) as (_, port, mport):
        target = f"127.0.0.1:{port}"
        wait_healthy(target)
        print(f"== overhead, {args.bits}-bit, backend {args.backend}", file=sys.stderr)
        over = overhead(args.backend, args.bits, [int(b) for b in args.batches.split(",")], args.repeats, target)
        print(f"== coalescing, {args.clients} clients", file=sys.stderr)
        coal = coalescing(args.bits, args.clients, args.request_size, args.seconds, target, mport, args.coalesce_op)
    rec = {"date": date.today().isoformat(), "machine": platform.machine(), "python": platform.python_version(),
           "backend": args.backend, "overhead": over, "coalescing": coal,
           "median_overhead": statistics.median(r["overhead"] for r in over)}
    print("\n| op | batch | library /s | service /s | overhead |\n|---|---:|---:|---:|---:|")
    for r in over:
        print(f"| {r['op']} | {r['batch']} | {r['library_ops_per_s']:,.0f} | {r['service_ops_per_s']:,.0f} | "
              f"{100 * r['overhead']:+.1f}% |")
    print(f"\n{coal['clients']} clients x {coal['request_size']}-element {coal['op']} requests: mean executed batch "
          f"{coal['mean_executed_batch']:,.0f} = {coal['mean_batch_over_request']:.1f}x the request size "
          f"({coal['requests']} requests, {coal['executions']:.0f} executions)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
