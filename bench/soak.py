"""Soak and fault benchmark for the offload service (figures, not a test; loopback only).

``python -m accel.bench.soak``: ``he-accel serve`` in a subprocess (CPU backend, SQLite key store,
four token identities); ``--clients`` client threads send a random mix of every op for
``--seconds``; halfway through the server is killed with SIGKILL and restarted on the same
port and key store; at the end it gets SIGTERM while requests are still in flight. Every
result is checked by decryption here (gmpy2, the project's oracle), including results computed
with keys the service held across the kill. Reports requests, wrong, lost (failed even after
the client's retries), p50/p99 latency, server RSS (with its worker processes) at the start and
the end of each server's life, and the fate of the requests in flight at SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from typing import Any

from accel import generate_keypair
from accel.backends.cpu import CpuBackend
from accel.packing import blob_to_ints, ints_to_blob

from .service_demo import running_server, wait_healthy

OPS = ("encrypt", "encrypt_crt", "encrypt_djn", "decrypt", "add", "add_plain", "mul", "sum", "matvec",
       "rerandomize", "powmod")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss_kib(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, RSS of ``pid`` and every descendant), KiB, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
            except (OSError, IndexError, ValueError):
                continue

    def rss(p: int) -> int:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss(p)
        todo.extend(children.get(p, []))
    return rss(pid), total


class Identity:
    """One token identity: an imported key pair (also held by the service) and a pool of
    known (plaintext, ciphertext) pairs made locally."""

    def __init__(self, name: str, bits: int, pool: int):
        self.name, self.token = name, f"token-{name}"
        self.pk, self.sk = generate_keypair(bits)
        self.local = CpuBackend(workers=1)
        self.ms = [random.randrange(self.pk.n) for _ in range(pool)]
        self.cs = self.local.raw_encrypt(self.pk, self.ms)

    def draw(self, k: int) -> tuple[list[int], list[int]]:
        idx = [random.randrange(len(self.ms)) for _ in range(k)]
        return [self.ms[i] for i in idx], [self.cs[i] for i in idx]

    def dec(self, blob: bytes) -> list[int]:
        return self.local.raw_decrypt(self.sk, blob_to_ints(blob, self.pk.ciphertext_width))


def one_request(c: Any, ident: Identity, op: str, batch: int) -> bool:
    """Run one op through client ``c``; True when the decrypted result is what it must be."""
    pk, n, pw, cw = ident.pk, ident.pk.n, ident.pk.plaintext_width, ident.pk.ciphertext_width
    ms, cs = ident.draw(batch)
    cblob = ints_to_blob(cs, cw)
    if op.startswith("encrypt"):
        mode = {"encrypt": "textbook", "encrypt_crt": "crt", "encrypt_djn": "djn"}[op]
        return ident.dec(c.encrypt(pk, ints_to_blob(ms, pw), mode)) == ms
    if op == "decrypt":
        return blob_to_ints(c.decrypt(pk, cblob), pw) == ms
    if op == "add":
        ms2, cs2 = ident.draw(batch)
        return ident.dec(c.add(pk, cblob, ints_to_blob(cs2, cw))) == [(a + b) % n for a, b in zip(ms, ms2)]
    if op == "add_plain":
        ms2 = [random.randrange(n) for _ in ms]
        return ident.dec(c.add_plain(pk, cblob, ints_to_blob(ms2, pw))) == [(a + b) % n for a, b in zip(ms, ms2)]
    if op == "mul":
        ks = [random.randrange(-(2**64), 2**64) for _ in ms]
        return ident.dec(c.mul(pk, cblob, ks)) == [a * k % n for a, k in zip(ms, ks)]
    if op == "sum":
        return ident.dec(c.sum(pk, cblob)) == [sum(ms) % n]
    if op == "matvec":
        X = [[random.randrange(-1000, 1000) for _ in range(2)] for _ in ms]
        return ident.dec(c.matvec(pk, cblob, X, 2)) == [sum(m * X[i][j] for i, m in enumerate(ms)) % n
                                                          for j in range(2)]
    if op == "rerandomize":
        out = c.rerandomize(pk, cblob, use_private_key=random.random() < 0.5)
        return ident.dec(out) == ms and not set(blob_to_ints(out, cw)) & set(cs)
    if op == "powmod":
        mod = random.randrange(2**255, 2**256) | 1
        bs = [random.randrange(mod) for _ in ms]
        es = [random.randrange(2**64) for _ in ms]
        return c.powmod(bs, es, mod) == [pow(b, e, mod) for b, e in zip(bs, es)]
    raise ValueError(op)


def run(clients: int = 64, seconds: float = 60.0, bits: int = 1024, max_batch: int = 16, grace: float = 30.0,
        identities: int = 4, seed: int | None = None) -> dict[str, Any]:
    from accel.service.client import HeAccelClient  # noqa: PLC0415

    rnd = random.Random(seed)
    people = [Identity(f"id{i}", bits, 128) for i in range(identities)]
    tokens = ",".join(f"{p.name}={p.token}" for p in people)
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="heaccel-soak-")
    kek = os.path.join(workdir, "kek")
    with open(os.open(kek, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(32).hex())
    serve_args = ["--backend", "cpu", "--address", f"127.0.0.1:{port}", "--min-key-bits", str(min(bits, 1024)),
                  "--key-store", f"sqlite:{workdir}/keys.db", "--kek-file", kek, "--grace", str(grace)]
    env = {"HEA_TOKENS": tokens}
    records: list[tuple[float, str, float, str, int]] = []  # (start offset, op, seconds, outcome, id)
    lock = threading.Lock()
    stop = threading.Event()
    inflight: dict[int, int] = {}  # client -> id of its request in flight
    ids = iter(range(1 << 62))
    servers: list[dict[str, Any]] = []
    t0 = 0.0

    def client(i: int) -> None:
        ident = people[i % len(people)]
        r = random.Random(rnd.random())
        with HeAccelClient(f"127.0.0.1:{port}", token=ident.token, timeout=120, retries=12,
                           max_backoff=2.0) as c:
            while True:
                op = r.choice(OPS)
                batch = r.randint(1, max_batch)
                start = time.monotonic()
                with lock:
                    if stop.is_set():
                        return
                    rid = inflight[i] = next(ids)
                try:
                    outcome = "ok" if one_request(c, ident, op, batch) else "wrong"
                except Exception as e:  # noqa: BLE001 - every failure is a figure
                    outcome = "lost:" + type(e).__name__ + ":" + str(e)[:120]
                with lock:
                    inflight.pop(i, None)
                    records.append((start - t0, op, time.monotonic() - start, outcome, rid))

    def sample(proc: Any, label: str) -> None:
        rss, tree = _tree_rss_kib(proc.pid)
        servers[-1][label] = {"server_rss_mib": round(rss / 1024, 1), "with_workers_rss_mib": round(tree / 1024, 1)}

    with running_server(*serve_args, env=env) as (proc, _, _):
        wait_healthy(f"127.0.0.1:{port}")
        with HeAccelClient(f"127.0.0.1:{port}", token=people[0].token) as c:
            for p in people:  # each identity hands its key to the service: decrypt and CRT run there
                with HeAccelClient(f"127.0.0.1:{port}", token=p.token) as pc:
                    pc.import_private_key(p.sk)
            gpk, _ = c.generate_keypair(bits)  # held by the service only: must survive the kill
            gsk = c.export_private_key(gpk)
            gms = [rnd.randrange(gpk.n) for _ in range(8)]
            gct = c.encrypt(gpk, ints_to_blob(gms, gpk.plaintext_width), "crt")
        servers.append({"pid": proc.pid})
        sample(proc, "before")
        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(seconds / 2)
        sample(proc, "before_kill")
        killed_at = time.monotonic() - t0
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with running_server(*serve_args, env=env) as (proc, _, _):
        restarted_at = time.monotonic() - t0
        wait_healthy(f"127.0.0.1:{port}")
        servers.append({"pid": proc.pid})
        sample(proc, "after_restart")
        with HeAccelClient(f"127.0.0.1:{port}", token=people[0].token) as c:
            survived = (blob_to_ints(c.decrypt(gpk, gct), gpk.plaintext_width) == gms
                        and c.export_private_key(gpk) == gsk)
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        sample(proc, "before_sigterm")
        with lock:
            stop.set()
            at_sigterm = set(inflight.values())
        sigterm_at = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(grace + 60)
        rc = proc.wait(grace + 30)
    drained = [r for r in records if r[4] in at_sigterm]
    lat = sorted(r[2] for r in records if r[3] == "ok")
    # a request in flight at SIGTERM either was admitted (it must finish) or reached the server
    # after the drain began (UNAVAILABLE, and with no server left its retries fail): counted apart
    outcomes = Counter(r[3].split(":")[0] for r in records if r[4] not in at_sigterm)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return {
        "date": date.today().isoformat(), "host": platform.node(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "backend": "cpu", "bits": bits,
        "clients": clients, "seconds": seconds, "max_batch": max_batch, "identities": identities,
        "requests": len(records), "ok": outcomes["ok"] + sum(1 for r in drained if r[3] == "ok"),
        "wrong": outcomes["wrong"] + sum(1 for r in drained if r[3] == "wrong"), "lost": outcomes["lost"],
        "lost_detail": dict(Counter(r[3] for r in records if r[3].startswith("lost")).most_common(10)),
        "p50_s": round(q[49], 4), "p99_s": round(q[98], 4), "max_s": round(lat[-1], 3) if lat else None,
        "per_op": {op: {"requests": sum(1 for r in records if r[1] == op),
                        "ok": sum(1 for r in records if r[1] == op and r[3] == "ok")} for op in OPS},
        "killed_at_s": round(killed_at, 2), "restarted_at_s": round(restarted_at, 2),
        "sigterm_at_s": round(sigterm_at, 2), "sigterm_exit_code": rc,
        "inflight_at_sigterm": len(at_sigterm), "inflight_at_sigterm_ok": sum(1 for r in drained if r[3] == "ok"),
        "inflight_at_sigterm_refused": sum(1 for r in drained if r[3].startswith("lost")),
        "service_generated_key_survived_kill": survived, "servers": servers,
        "timeline": [(round(a, 3), op, round(s, 4), o.split(":")[0]) for a, op, s, o, _ in records],
    }


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(9, 4))
    for outcome, color in (("ok", "tab:blue"), ("wrong", "tab:red"), ("lost", "black")):
        pts = [(a, s) for a, _, s, o in result["timeline"] if o == outcome]
        if pts:
            ax.scatter(*zip(*pts), s=4, c=color, label=f"{outcome} ({len(pts)})")
    ax.set_yscale("log")
    top = ax.get_ylim()[1]
    for (key, label), y in zip((("killed_at_s", "kill -9 "), ("restarted_at_s", " restarted"),
                                ("sigterm_at_s", "SIGTERM ")), (0.8, 0.5, 0.8)):
        ax.axvline(result[key], ls="--", c="gray")
        ax.text(result[key], top * y, label, fontsize=8, ha="right" if label.endswith(" ") else "left")
    ax.set_xlabel("request start (s)")
    ax.set_ylabel("latency (s)")
    ax.set_title(f"soak: {result['clients']} clients, {result['bits']}-bit, CPU backend, {result['cpus']} CPUs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--bits", type=int, default=1024)
    ap.add_argument("--max-batch", type=int, default=16, help="elements per request, drawn from 1..this")
    ap.add_argument("--grace", type=float, default=30.0, help="the server's drain grace after SIGTERM")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--plot", help="write a latency-over-time PNG here")
    ap.add_argument("--from-json", help="plot an earlier run's JSON; run nothing")
    a = ap.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            plot(json.load(f), a.plot or "soak.png")
        return 0
    res = run(a.clients, a.seconds, a.bits, a.max_batch, a.grace, seed=a.seed)
    summary = {k: v for k, v in res.items() if k != "timeline"}
    print(json.dumps(summary, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=None)
    if a.plot:
        plot(res, a.plot)
    return 0 if res["wrong"] == 0 and res["lost"] == 0 and res["service_generated_key_survived_kill"] else 1


if __name__ == "__main__":
    sys.exit(main())
