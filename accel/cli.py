"""The ``he-accel`` command: ``serve`` (the gRPC offload service), ``demo`` (a checked
end-to-end run, in process or through a service it starts) and ``bench`` (throughput)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np

from accel.backends import LOCAL_BACKENDS


def _pick_backend(name: str):
    """(backend, a line saying which one runs and, for 'auto', why)."""
    from accel import BackendUnavailableError, get_backend

    why = ""
    if name == "auto":
        try:
            be = get_backend("gpu")
        except BackendUnavailableError as e:
            be, why = get_backend("cpu"), f"; 'auto' found no usable GPU ({e})"
    else:
        be = get_backend(name)
    details = ", ".join(f"{k} {v}" for k, v in be.describe().items() if k != "backend")
    return be, f"backend {be.name}" + (f" ({details})" if details else "") + why


def _demo(args: argparse.Namespace) -> int:
    from accel import EncryptedVector, ObfuscatorPool, generate_keypair

    be, which = _pick_backend(args.backend)
    print(f"he-accel demo: {args.bits}-bit key, {args.size} values, in process")
    print(f"  running on {which}")
    t = time.perf_counter()
    pk, sk = generate_keypair(args.bits)
    print(f"  keygen                {time.perf_counter() - t:8.2f} s   {pk!r}")
    rng = np.random.default_rng()  # plaintext data only; obfuscators come from secrets
    x = rng.normal(size=args.size)
    y = rng.normal(size=args.size)
    X = rng.normal(size=(args.size, args.cols))
    ok = True

    def step(name: str, fn, count: int):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        print(f"  {name:<20}{dt:8.2f} s   {count / dt:12,.1f} /s")
        return out

    ex = step("encrypt", lambda: EncryptedVector.encrypt(pk, x, backend=be), args.size)
    ey = step("encrypt (CRT)", lambda: EncryptedVector.encrypt(pk, y, backend=be, private_key=sk), args.size)
    # The pool moves the r^n work off the critical path; its rate alone leaves that work out,
    # so the precomputation and the total are printed beside it.
    with ObfuscatorPool(pk, be, capacity=args.size, private_key=sk, start=False) as pool:
        t_fill = time.perf_counter()
        pool.fill()
        t_fill = time.perf_counter() - t_fill
        print(f"  {'pool: precompute r^n':<20}{t_fill:8.2f} s   {args.size / t_fill:12,.1f} /s   (CRT, ahead of time)")
        t_use = time.perf_counter()
        step("encrypt from pool", lambda: EncryptedVector.encrypt(pk, y, backend=be, obfuscators=pool), args.size)
        t_use = time.perf_counter() - t_use
        print(f"  {'pooled, in total':<20}{t_fill + t_use:8.2f} s   {args.size / (t_fill + t_use):12,.1f} /s   "
              "(precompute + encrypt)")
    s = step("add", lambda: ex + ey, args.size)
    a = step("axpy 2.5*x + y", lambda: ex * 2.5 + ey, args.size)
    tot = step("sum", lambda: ex.sum(), args.size)
    mv = step(f"matvec ({args.cols} cols)", lambda: ex.dot(X), args.size * args.cols)
    dec = step("decrypt", lambda: s.decrypt(sk), args.size)
    checks = {
        "x + y": (dec, x + y),
        "2.5 x + y": (a.decrypt(sk), 2.5 * x + y),
        "sum x": (tot.decrypt(sk), x.sum()),
        "x^T X": (mv.decrypt(sk), x @ X),
    }
    for name, (got, want) in checks.items():
        good = np.allclose(got, want, rtol=1e-9, atol=1e-9)
        ok &= good
        print(f"  check {name:<12} {'ok' if good else 'MISMATCH'} (max abs err {np.max(np.abs(got - want)):.2e})")
    print("demo:", "all results match" if ok else "FAILED")
    return 0 if ok else 1


def _bench(args: argparse.Namespace) -> int:
    from accel.bench.suite import main_suite  # noqa: PLC0415

    return main_suite(args)


def _serve(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    try:
        from accel.service.server import HeAccelServer, config_from_args  # noqa: PLC0415
    except ImportError as e:
        print(f"the service needs the 'service' extra (pip install 'he-accel[service]'): {e}", file=sys.stderr)
        return 2
    config = config_from_args(args)
    done = threading.Event()

    def shutdown(signum, frame):  # noqa: ARG001
        done.set()

    # before the "serving" line: a supervisor that stops us right after reading it gets the
    # graceful shutdown, not the default SIGTERM death
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    server = HeAccelServer(config).start()
    print(f"he-accel serving on port {server.port} (backend {server.backend.name})"
          + (f", metrics on port {server.metrics_port}" if server.metrics_port else ""), flush=True)
    done.wait()
    print("he-accel: shutting down (finishing in-flight requests)", flush=True)
    server.stop()
    return 0


def _health(args: argparse.Namespace) -> int:
    """Exit 0 when the service at --address answers grpc.health.v1 SERVING (Docker HEALTHCHECK)."""
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    try:
        if args.tls:
            ca = open(args.ca, "rb").read() if args.ca else None
            channel = grpc.secure_channel(args.address, grpc.ssl_channel_credentials(ca))
        else:
            channel = grpc.insecure_channel(args.address)
        with channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=args.service),
                                                             timeout=args.timeout)
    except grpc.RpcError as e:
        print(f"unhealthy: {e.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(status)
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def _service_demo(args: argparse.Namespace) -> int:
    from accel.bench.service_demo import run  # noqa: PLC0415

    return run(backend=args.backend, bits=args.bits, size=args.size, cols=args.cols)


def _kernels(args: argparse.Namespace) -> int:
    from accel.gpu.build import main_kernels  # noqa: PLC0415

    return main_kernels(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="he-accel", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="keygen, encrypt, homomorphic sums and a matvec, decrypt, check")
    d.add_argument("--backend", default="auto", choices=LOCAL_BACKENDS)
    d.add_argument("--bits", type=int, default=2048)
    d.add_argument("--size", type=int, default=1000, help="vector length")
    d.add_argument("--cols", type=int, default=4, help="matrix columns for the matvec")
    d.set_defaults(func=_demo)

    s = sub.add_parser("serve", help="run the gRPC offload service (flags override HEA_* env vars)")
    from accel.service.config import ServerConfig, add_serve_arguments  # noqa: PLC0415 - defined beside ServerConfig

    add_serve_arguments(s)
    s.set_defaults(func=_serve)

    h = sub.add_parser("health", help="probe a running service through grpc.health.v1 (exit 0 if SERVING)")
    h.add_argument("--address", default=ServerConfig.address, help="the service's address (default: serve's)")
    h.add_argument("--service", default="", help="service name ('' = the whole server)")
    h.add_argument("--tls", action="store_true", help="connect with TLS")
    h.add_argument("--ca", help="PEM CA to verify the server with")
    h.add_argument("--timeout", type=float, default=5.0)
    h.set_defaults(func=_health)

    sd = sub.add_parser("service-demo", help="start the service, run a client round trip, print metrics")
    sd.add_argument("--backend", default="auto", choices=LOCAL_BACKENDS)
    sd.add_argument("--bits", type=int, default=2048)
    sd.add_argument("--size", type=int, default=1000)
    sd.add_argument("--cols", type=int, default=4)
    sd.set_defaults(func=_service_demo)

    k = sub.add_parser("kernels", help="build the CUDA kernels ahead of time, or report their resources",
                       description="Compile every kernel family and size class through NVRTC (no GPU needed), "
                                   "the same path the GPU backend uses at run time.")
    k.add_argument("action", choices=["build", "report"])
    k.add_argument("--out", default="build/kernels", help="build: output folder (binaries + manifest.json)")
    k.add_argument("--arch", nargs="+", default=["sm_90"], help="GPU architectures (default sm_90)")
    k.add_argument("--bits", nargs="+", type=int, help="key sizes to build (default: every size class)")
    k.add_argument("--jobs", type=int, default=None, help="parallel compilations (default: all cores)")
    k.add_argument("--from", dest="source", metavar="DIR", help="report: read a built folder's manifest")
    k.set_defaults(func=_kernels)

    b = sub.add_parser(
        "bench", help="the benchmark suite: ops x key sizes x batches x backends, peers in the same run",
        description="Throughput with a correctness check on every measured batch; peers (phe, fate_utils, "
                    "HEU) measured on the same inputs when installed. See bench/suite.py.")
    b.add_argument("--backends", nargs="+", metavar="B",
                   help="cpu, cpu:N (N processes), cpu:N:gmpy2 (no native engine), cpu:N:mpn (native, "
                        "no AVX-512 IFMA), cpu:N:ctypes (native engine, lists packed to bytes), gpu, auto, "
                        "remote (at --target), remote:cpu|gpu|auto "
                        "(a service started for the run); default cpu")
    b.add_argument("--backend", help="one backend (same as --backends B)")
    b.add_argument("--workers", type=int, default=None, help="CPU worker processes for 'cpu' (default: all cores)")
    b.add_argument("--target", help="host:port for the remote backend")
    b.add_argument("--peers", nargs="+", default=["all"], metavar="P",
                   help="phe, fate_utils, heu, 'all' (default: those installed) or 'none'")
    b.add_argument("--bits", nargs="+", default=["2048"], help="key sizes (also comma-separated)")
    b.add_argument("--batch", nargs="+", default=["2000"], help="batch sizes: a sweep (also comma-separated)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--ops", default="default", help="comma-separated ops, 'default' or 'all'")
    b.add_argument("--time-budget", type=float, default=120.0, metavar="S",
                   help="skip (and report) a combination extrapolated to take longer than S seconds")
    b.add_argument("--peer-max-batch", type=int, default=2048, help="cap on the batch given to peers")
    b.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or this process's CPU time (per-core rates on a loaded machine; "
                        "cpu:1 targets and peers only)")
    b.add_argument("--baseline", default="phe", help="the 'x base' column: phe (default) or a backend")
    b.add_argument("--derive-peers", metavar="JSON",
                   help="add per-core peer figures measured elsewhere, scaled to this machine (labelled derived)")
    b.add_argument("--json", metavar="PATH", help="write the records as JSON")
    b.add_argument("--plot", metavar="DIR", help="write PNG charts (matplotlib)")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--from-json", metavar="JSON", help="print the table (and --plot) of an earlier run; measure nothing")
    b.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
