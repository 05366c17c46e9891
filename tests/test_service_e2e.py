"""End to end on loopback: ``he-accel serve`` as a subprocess (and in-process servers where a
test needs to reach inside), every op checked against the gmpy2 oracle, auth and ownership,
bad input, concurrency, restarts, TLS/mTLS, metrics."""
from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from accel import EncryptedVector, generate_keypair, get_backend
from accel.djn import DjnKey
from accel.packing import blob_to_ints, ints_to_blob
from accel.bench.service_demo import running_server, wait_healthy
from accel.service.client import AsyncHeAccelClient, HeAccelClient
from accel.service.errors import (
    DeadlineExceeded,
    InvalidArgument,
    KeyNotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from accel.service.server import HeAccelServer, ServerConfig

from .certs import make_pki
from .oracle import Oracle, group_products

TOKENS = "alice=token-alice,bob=token-bob"
BITS = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == w for k, w in labels.items()))


@pytest.fixture(scope="module")
def server():
    """The real command, as a subprocess: tokens, CPU backend, small request limit."""
    with running_server("--backend", "cpu", "--min-key-bits", "512", "--max-request", "3000",
                        env={"HEA_TOKENS": TOKENS}) as (proc, port, mport):
        wait_healthy(f"127.0.0.1:{port}")
        yield proc, port, mport


@pytest.fixture(scope="module")
def alice(server):
    with HeAccelClient(f"127.0.0.1:{server[1]}", token="token-alice", chunk_bytes=64 << 10) as c:
        yield c


@pytest.fixture(scope="module")
def bob(server):
    with HeAccelClient(f"127.0.0.1:{server[1]}", token="token-bob") as c:
        yield c


@pytest.fixture(scope="module")
def key():
    return generate_keypair(BITS)


def pack(vals, w):
    return ints_to_blob(vals, w)


class TestEveryOpAgainstTheOracle:
    def test_ops(self, alice, key):
        pk, sk = key
        o = Oracle.for_key(sk)
        n, pw, cw = pk.n, pk.plaintext_width, pk.ciphertext_width
        ms = [0, 1, 2, n - 1, n // 2] + [random.randrange(n) for _ in range(6)]
        info = alice.register_public_key(pk)
        assert info.key_id == pk.fingerprint and not info.has_private_key
        c = alice.encrypt(pk, pack(ms, pw))
        cs = blob_to_ints(c, cw)
        assert o.dec_all(cs) == ms
        assert len(set(cs)) == len(cs)                        # fresh randomness per value
        det = blob_to_ints(alice.encrypt(pk, pack(ms, pw), "deterministic"), cw)
        assert det == [(1 + m * n) % pk.nsquare for m in ms]
        assert o.dec_all(blob_to_ints(alice.encrypt(pk, pack(ms, pw), "djn"), cw)) == ms
        assert alice.describe_key(pk).djn_ready
        ms2 = [random.randrange(n) for _ in ms]
        c2 = alice.encrypt(pk, pack(ms2, pw))
        assert o.dec_all(blob_to_ints(alice.add(pk, c, c2), cw)) == [(a + b) % n for a, b in zip(ms, ms2)]
        assert o.dec_all(blob_to_ints(alice.add_plain(pk, c, pack(ms2, pw)), cw)) == \
            [(a + b) % n for a, b in zip(ms, ms2)]
        ks = [0, 1, -1, n - 1, -(n - 1), 7, -123456789, 2**70, -(2**70), 3, 5]
        assert o.dec_all(blob_to_ints(alice.mul(pk, c, ks), cw)) == [a * k % n for a, k in zip(ms, ks)]
        assert o.dec(blob_to_ints(alice.sum(pk, c), cw)[0]) == sum(ms) % n
        assert blob_to_ints(alice.sum(pk, b""), cw) == [1]
        X = [[random.randrange(-(2**40), 2**40) for _ in range(3)] for _ in ms]
        got = o.dec_all(blob_to_ints(alice.matvec(pk, c, X, 3), cw))
        assert got == [sum(m * X[i][j] for i, m in enumerate(ms)) % n for j in range(3)]
        assert blob_to_ints(alice.matvec(pk, b"", [], 2), cw) == [1, 1]
        rr = blob_to_ints(alice.rerandomize(pk, c), cw)
        assert o.dec_all(rr) == ms and not set(rr) & set(cs)
        assert alice.powmod([2, 3, 5, 10], [10, -1, 0, 3], 13) == [1024 % 13, 9, 1, 1000 % 13]
        # the private-key paths, after alice (the owner) hands her key to the service
        with pytest.raises(KeyNotFound, match="no private key"):
            alice.decrypt(pk, c)
        assert alice.import_private_key(sk).private_key_owned_by_caller
        assert blob_to_ints(alice.decrypt(pk, c), pw) == ms
        assert blob_to_ints(alice.decrypt(pk, alice.encrypt(pk, pack(ms, pw), "crt")), pw) == ms
        assert o.dec_all(blob_to_ints(alice.rerandomize(pk, c, use_private_key=True), cw)) == ms
        assert alice.export_private_key(pk) == sk
        assert alice.delete_key(pk) and not alice.delete_key(pk)

    def test_sum_groups(self, server, alice, key):
        """Many sums in one call: the exact products mod n^2 (gmpy2), decrypting to the group
        sums, with empty groups and groups of one; in small chunks the same integers, a group
        split over several chunks and multiplied together by the client."""
        pk, sk = key
        o = Oracle.for_key(sk)
        n, cw = pk.n, pk.ciphertext_width
        counts = [3, 0, 1, 9, 0, 1, 2, 0, 7]
        ms = [0, 1, n - 1] + [random.randrange(n) for _ in range(sum(counts) - 3)]
        c = alice.encrypt(pk, pack(ms, pk.plaintext_width))
        want = group_products(blob_to_ints(c, cw), counts, pk.nsquare)
        out = alice.sum_groups(pk, c, counts)
        assert blob_to_ints(out, cw) == want
        at = np.cumsum([0] + counts)
        assert o.dec_all(want) == [sum(ms[a:b]) % n for a, b in zip(at[:-1], at[1:])]
        assert alice.sum_groups(pk, b"", []) == b""
        assert blob_to_ints(alice.sum_groups(pk, b"", [0, 0]), cw) == [1, 1]
        # 4 ciphertexts or 4 sums a chunk: the 9 spans three chunks, the 7 two
        with HeAccelClient(f"127.0.0.1:{server[1]}", token="token-alice", chunk_bytes=4 * cw) as small:
            assert len(small.planner.sum_groups(pk, c, counts).requests) > 3
            assert small.sum_groups(pk, c, counts) == out
            assert blob_to_ints(small.sum_groups(pk, c, [sum(counts)]), cw) == \
                group_products(blob_to_ints(c, cw), [sum(counts)], pk.nsquare)
            assert blob_to_ints(small.sum_groups(pk, b"", [0] * 10), cw) == [1] * 10

    def test_large_batches_stream_in_order(self, alice, key):
        pk, sk = key
        o = Oracle.for_key(sk)
        ms = [random.randrange(pk.n) for _ in range(700)]    # 64 KiB chunks: several per op
        c = alice.encrypt(pk, pack(ms, pk.plaintext_width))
        cs = blob_to_ints(c, pk.ciphertext_width)
        assert o.dec_all(cs) == ms
        ks = [random.randrange(-1000, 1000) for _ in ms]
        assert o.dec_all(blob_to_ints(alice.mul(pk, c, ks), pk.ciphertext_width)) == \
            [m * k % pk.n for m, k in zip(ms, ks)]
        assert o.dec(blob_to_ints(alice.sum(pk, c), pk.ciphertext_width)[0]) == sum(ms) % pk.n
        X = [[random.randrange(-50, 50) for _ in range(2)] for _ in ms]
        assert o.dec_all(blob_to_ints(alice.matvec(pk, c, X, 2), pk.ciphertext_width)) == \
            [sum(m * X[i][j] for i, m in enumerate(ms)) % pk.n for j in range(2)]

    def test_remote_backend_with_encrypted_vectors(self, server, key):
        pk, sk = key
        be = get_backend("remote", target=f"127.0.0.1:{server[1]}", token="token-alice")
        try:
            x = np.linspace(-3, 3, 40)
            X = np.arange(80.0).reshape(40, 2) / 7
            ev = EncryptedVector.encrypt(pk, x, backend=be)
            # a local private key: not uploaded, so decryption runs here with the key kept local
            assert np.allclose((ev * 2 + ev).decrypt(sk), 3 * x)
            assert np.allclose(ev.dot(X).decrypt(sk), x @ X)
            pk2, rsk = be.client.generate_keypair(BITS)         # held by the service
            ev2 = EncryptedVector.encrypt(pk2, x, backend=be, private_key=rsk)
            assert np.allclose((ev2 - ev2 * 0.5).decrypt(rsk), x / 2)
            with pytest.raises(TypeError, match="held by the he-accel service"):
                get_backend("cpu").raw_decrypt(rsk, ev2.blob)
        finally:
            be.close()

    def test_djn_with_explicit_parameters_and_rng(self, server, key):
        pk, sk = key
        be = get_backend("remote", target=f"127.0.0.1:{server[1]}", token="token-alice")
        try:
            djn = DjnKey.generate(pk)
            ms = [5, 6, pk.n - 1]
            a = be.raw_encrypt(pk, ms, djn=djn, rng=random.Random(7))
            b = get_backend("cpu").raw_encrypt(pk, ms, djn=djn, rng=random.Random(7))
            assert a == b                                    # reproducible, bit for bit
            assert Oracle.for_key(sk).dec_all(a) == ms
        finally:
            be.close()


class TestOwnershipAndAuth:
    def test_private_keys_serve_only_their_owner(self, alice, bob):
        pk, _ = alice.generate_keypair(BITS)
        c = alice.encrypt(pk, pack([42], pk.plaintext_width))
        assert blob_to_ints(alice.decrypt(pk, c), pk.plaintext_width) == [42]
        info = bob.describe_key(pk)
        assert info.has_private_key and not info.private_key_owned_by_caller
        with pytest.raises(PermissionDenied):
            bob.decrypt(pk, c)
        with pytest.raises(PermissionDenied):
            bob.encrypt(pk, pack([1], pk.plaintext_width), "crt")
        with pytest.raises(PermissionDenied):
            bob.export_private_key(pk)
        with pytest.raises(PermissionDenied):
            bob.delete_key(pk)
        with pytest.raises(PermissionDenied):
            bob.import_private_key(alice.export_private_key(pk))
        assert blob_to_ints(bob.add(pk, c, c), pk.ciphertext_width)  # public ops are open to all
        assert alice.delete_key(pk)

    def test_unauthenticated_calls_are_refused(self, server, key):
        pk, _ = key
        for token in (None, "wrong"):
            with HeAccelClient(f"127.0.0.1:{server[1]}", token=token) as c, pytest.raises(Unauthenticated):
                c.encrypt(pk, pack([1], pk.plaintext_width))
        with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as ch:  # health stays open for probes
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING

    def test_reflection_lists_the_services(self, server):
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as ch:
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)
            resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=10))
            names = {s.name for s in resp.list_services_response.service}
        assert {"heaccel.v1.KeyService", "heaccel.v1.ComputeService", "grpc.health.v1.Health"} <= names


class TestBadInput:
    def test_statuses(self, alice, key):
        pk, _ = key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        c = alice.encrypt(pk, pack([1, 2, 3], pw))
        cases = [
            (InvalidArgument, r"ciphertext b\[1\] is out of range",
             lambda: alice.add(pk, c, pack([1, pk.nsquare, 1], cw))),
            (InvalidArgument, r"ciphertext\[0\] is out of range", lambda: alice.sum(pk, pack([0], cw))),
            (InvalidArgument, r"plaintext\[2\] is out of range",
             lambda: alice.encrypt(pk, pack([1, 2, pk.n], pw))),
            (InvalidArgument, "length mismatch", lambda: alice.add_plain(pk, c, pack([1], pw))),
            (InvalidArgument, "not a multiple of the width",
             lambda: alice._unary(alice.compute, "Sum", _sum_req(pk, c[:-1]))),
            (KeyNotFound, "unknown key", lambda: alice._unary(alice.compute, "Sum", _sum_req(pk, c, inline=False,
                                                                                               key_id="f00"))),
            (ResourceExhausted, "oversize request",
             lambda: alice._unary(alice.compute, "Encrypt", _enc_req(pk, bytes(pw * 3001)))),
            (InvalidArgument, "modulus must be > 1",
             lambda: alice._unary(alice.compute, "PowMod", _powmod_req(b"\x01"))),
        ]
        for exc, pattern, call in cases:
            with pytest.raises(exc, match=pattern):
                call()
        # and the server is fine afterwards, with nothing lost
        assert Oracle(pk.n, *_pq(key)).dec_all(blob_to_ints(alice.add(pk, c, c), cw)) == [2, 4, 6]


    def test_sum_groups_statuses(self, alice, key):
        pk, _ = key
        cw = pk.ciphertext_width
        c = alice.encrypt(pk, pack([1, 2, 3], pk.plaintext_width))
        cases = [
            # the client checks the counts before sending anything
            (InvalidArgument, "the counts add up to 4, the batch holds 3", lambda: alice.sum_groups(pk, c, [2, 2])),
            (InvalidArgument, r"counts\[1\] must be a non-negative int", lambda: alice.sum_groups(pk, c, [4, -1])),
            # and the service checks them again: a raw request, uint64 counts that would wrap
            # around to the right total in 64 bits
            (InvalidArgument, "the counts add up to 2, the request holds 3 ciphertexts",
             lambda: alice._unary(alice.compute, "SumGroups", _sum_groups_req(pk, c, [1, 1]))),
            (InvalidArgument, "the counts add up to 18446744073709551618",
             lambda: alice._unary(alice.compute, "SumGroups", _sum_groups_req(pk, c, [2**64 - 1, 3]))),
            (InvalidArgument, r"ciphertext\[1\] is out of range",
             lambda: alice.sum_groups(pk, c[:cw] + pack([pk.nsquare], cw) + c[2 * cw:], [1, 2])),
            (InvalidArgument, r"ciphertext\[2\] is out of range",
             lambda: alice.sum_groups(pk, c[:2 * cw] + pack([0], cw), [3])),
            (InvalidArgument, "not a multiple of the width",
             lambda: alice._unary(alice.compute, "SumGroups", _sum_groups_req(pk, c[:-1], [3]))),
            (KeyNotFound, "unknown key",
             lambda: alice._unary(alice.compute, "SumGroups", _sum_groups_req(pk, c, [3], inline=False,
                                                                              key_id="f00"))),
            (ResourceExhausted, "oversize request: 3001 groups",
             lambda: alice._unary(alice.compute, "SumGroups", _sum_groups_req(pk, b"", [0] * 3001))),
        ]
        for exc, pattern, call in cases:
            with pytest.raises(exc, match=pattern):
                call()
        assert blob_to_ints(alice.sum_groups(pk, c, [3]), cw) == group_products(blob_to_ints(c, cw), [3], pk.nsquare)


def _pq(key):
    return key[1].p, key[1].q


def _sum_req(pk, blob, inline=True, key_id=None):
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    ref = pb.KeyRef(key_id=key_id or pk.fingerprint, public_key=pk.to_bytes() if inline else b"")
    return pb.SumRequest(key=ref, ciphertexts=blob)


def _sum_groups_req(pk, blob, counts, inline=True, key_id=None):
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    ref = pb.KeyRef(key_id=key_id or pk.fingerprint, public_key=pk.to_bytes() if inline else b"")
    return pb.SumGroupsRequest(key=ref, ciphertexts=blob, counts=counts)


def _enc_req(pk, blob):
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    return pb.EncryptRequest(key=pb.KeyRef(key_id=pk.fingerprint, public_key=pk.to_bytes()), plaintexts=blob)


def _powmod_req(mod):
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    return pb.PowModRequest(modulus=mod, bases=b"", exponents=pb.SignedNumbers())


class TestLoad:
    def test_32_concurrent_clients_mixed_ops(self, server, key):
        pk, sk = key
        o = Oracle.for_key(sk)
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        before = scrape(server[2])
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                with HeAccelClient(f"127.0.0.1:{server[1]}", token="token-bob") as c:
                    rnd = random.Random(i)
                    for _ in range(3):
                        ms = [rnd.randrange(pk.n) for _ in range(rnd.randint(1, 12))]
                        ct = c.encrypt(pk, pack(ms, pw))
                        op = rnd.choice(["add", "mul", "add_plain", "sum", "rerandomize"])
                        if op == "add":
                            got, want = c.add(pk, ct, ct), [2 * m % pk.n for m in ms]
                        elif op == "mul":
                            ks = [rnd.randrange(-99, 99) for _ in ms]
                            got, want = c.mul(pk, ct, ks), [m * k % pk.n for m, k in zip(ms, ks)]
                        elif op == "add_plain":
                            got, want = c.add_plain(pk, ct, pack(ms, pw)), [2 * m % pk.n for m in ms]
                        elif op == "sum":
                            got, want = c.sum(pk, ct), [sum(ms) % pk.n]
                        else:
                            got, want = c.rerandomize(pk, ct), ms
                        assert o.dec_all(blob_to_ints(got, cw)) == want, (i, op)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        after = scrape(server[2])
        reqs = total(after, "heaccel_batched_requests_total") - total(before, "heaccel_batched_requests_total")
        execs = total(after, "heaccel_batch_executions_total") - total(before, "heaccel_batch_executions_total")
        assert reqs == 32 * 6
        assert execs < reqs                                  # concurrent requests were coalesced

    def test_metrics_endpoint_parses(self, server):
        m = scrape(server[2])
        assert total(m, "heaccel_requests_total", op="encrypt", code="OK") > 0
        assert total(m, "heaccel_errors_total", code="INVALID_ARGUMENT") > 0
        assert total(m, "heaccel_errors_total", code="UNAUTHENTICATED") > 0
        assert total(m, "heaccel_keys_held", kind="public") >= 1
        assert total(m, "heaccel_build_info", backend="cpu") == 1
        assert ("heaccel_cpu_fallbacks_total", ()) in m
        assert total(m, "heaccel_request_latency_seconds_count", op="encrypt") > 0
        assert not any(n.startswith("heaccel_gpu_") for n, _ in m)   # no GPU here: absent, no error


def test_async_client(service_server, key):
    pk, sk = key
    o = Oracle.for_key(sk)

    async def main():
        async with AsyncHeAccelClient(f"127.0.0.1:{service_server.port}", chunk_bytes=4096) as c:
            ms = [random.randrange(pk.n) for _ in range(20)]
            cts = await asyncio.gather(*(c.encrypt(pk, pack(ms, pk.plaintext_width)) for _ in range(4)))
            s = await c.add(pk, cts[0], cts[1])
            t = await c.sum(pk, cts[2])
            g = await c.sum_groups(pk, cts[2], [5, 0, 15])   # 16 a chunk: the 15 is split
            m = await c.mul(pk, cts[3], [-1] * 20)
            pk2, _ = await c.generate_keypair(512)
            assert (await c.describe_key(pk2)).private_key_owned_by_caller
            return ms, s, t, m, g, cts[2]

    ms, s, t, m, g, c2 = asyncio.run(main())
    cw = pk.ciphertext_width
    assert o.dec_all(blob_to_ints(s, cw)) == [2 * x % pk.n for x in ms]
    assert o.dec(blob_to_ints(t, cw)[0]) == sum(ms) % pk.n
    assert blob_to_ints(g, cw) == group_products(blob_to_ints(c2, cw), [5, 0, 15], pk.nsquare)
    assert o.dec_all(blob_to_ints(m, cw)) == [-x % pk.n for x in ms]


def test_server_killed_and_restarted_mid_run(key):
    pk, sk = key
    o = Oracle.for_key(sk)
    port = free_port()
    results, errors = [], []
    stop = threading.Event()
    first = running_server("--backend", "cpu", "--address", f"127.0.0.1:{port}")
    proc, _, _ = first.__enter__()

    def client_loop():
        with HeAccelClient(f"127.0.0.1:{port}", retries=12, backoff=0.2, timeout=30) as c:
            i = 0
            while not stop.is_set():
                try:
                    ct = c.encrypt(pk, pack([i, i + 1], pk.plaintext_width))   # carries its public key
                    results.append((i, o.dec_all(blob_to_ints(c.add(pk, ct, ct), pk.ciphertext_width))))
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return
                i += 1

    t = threading.Thread(target=client_loop)
    t.start()
    deadline = time.monotonic() + 60
    while len(results) < 3 and time.monotonic() < deadline and not errors:
        time.sleep(0.05)                                     # some work done before the kill
    proc.kill()                                              # no goodbye: SIGKILL mid-run
    proc.wait()
    first.__exit__(None, None, None)
    done_before = len(results)
    time.sleep(0.5)
    second = running_server("--backend", "cpu", "--address", f"127.0.0.1:{port}")
    second.__enter__()
    try:
        deadline = time.monotonic() + 60
        while len(results) < done_before + 5 and time.monotonic() < deadline and not errors:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(60)
        second.__exit__(None, None, None)
    assert not errors, errors
    assert len(results) >= done_before + 5 and done_before > 0
    assert all(r == [2 * i, 2 * i + 2] for i, r in results)


def test_round_robin_across_two_appliances(pool_backend, key):
    pk, sk = key
    servers = [HeAccelServer(ServerConfig(address="127.0.0.1:0", max_delay_ms=0.5), backend=pool_backend).start()
               for _ in range(2)]
    try:
        with HeAccelClient([f"127.0.0.1:{s.port}" for s in servers]) as c:
            for i in range(20):
                ct = c.encrypt(pk, pack([i], pk.plaintext_width))
                assert Oracle.for_key(sk).dec_all(blob_to_ints(ct, pk.ciphertext_width)) == [i]
        served = [s.metrics.requests.labels("encrypt", "cpu", str(BITS), "OK")._value.get() for s in servers]
        assert sum(served) == 20 and min(served) >= 5, served   # both boxes took a share
    finally:
        for s in servers:
            s.stop(2)


def test_deadline_and_graceful_shutdown(pool_backend, key):
    pk, sk = key
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", max_delay_ms=1500, max_batch=10_000),
                        backend=pool_backend).start()
    try:
        with HeAccelClient(f"127.0.0.1:{srv.port}", timeout=0.3, retries=0) as c, pytest.raises(DeadlineExceeded):
            c.encrypt(pk, pack([1], pk.plaintext_width))      # waits 1.5 s for company: past its deadline
        out: list = []
        with HeAccelClient(f"127.0.0.1:{srv.port}", timeout=30) as c:
            t = threading.Thread(target=lambda: out.append(c.encrypt(pk, pack([5, 6], pk.plaintext_width))))
            t.start()
            time.sleep(0.3)                                   # the request is queued, in flight
            srv.stop(grace=20)                                # graceful: it still completes
            t.join(30)
        assert Oracle.for_key(sk).dec_all(blob_to_ints(out[0], pk.ciphertext_width)) == [5, 6]
        with HeAccelClient(f"127.0.0.1:{srv.port}", timeout=2, retries=0) as c, pytest.raises(Unavailable):
            c.encrypt(pk, pack([1], pk.plaintext_width))
    finally:
        srv.stop(1)


def test_queue_full_is_resource_exhausted(pool_backend, key):
    pk, _ = key
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", max_delay_ms=800, max_queue_elements=4,
                                     max_request_elements=4), backend=pool_backend).start()
    try:
        with HeAccelClient(f"127.0.0.1:{srv.port}", timeout=30) as c:
            first = threading.Thread(target=lambda: c.encrypt(pk, pack([1, 2, 3, 4], pk.plaintext_width)))
            first.start()
            time.sleep(0.2)
            with pytest.raises(ResourceExhausted, match="queue is full"):
                c.encrypt(pk, pack([1], pk.plaintext_width))
            first.join(30)
    finally:
        srv.stop(2)


def test_tls_with_tokens_and_mtls_identities(tmp_path, pool_backend, key):
    pki = make_pki(tmp_path)
    pk, sk = key
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", tls_cert=str(pki["localhost_cert"]),
                                     tls_key=str(pki["localhost_key"]), client_ca=str(pki["ca"])),
                        backend=pool_backend).start()
    target = f"127.0.0.1:{srv.port}"
    try:
        with HeAccelClient(target, root_certificates=str(pki["ca"]), client_cert=str(pki["alice_cert"]),
                           client_key=str(pki["alice_key"]), server_name="localhost") as a, \
             HeAccelClient(target, root_certificates=str(pki["ca"]), client_cert=str(pki["bob_cert"]),
                           client_key=str(pki["bob_key"]), server_name="localhost") as b:
            pk2, _ = a.generate_keypair(BITS)
            ct = a.encrypt(pk2, pack([9], pk2.plaintext_width))
            assert blob_to_ints(a.decrypt(pk2, ct), pk2.plaintext_width) == [9]
            with pytest.raises(PermissionDenied):               # x509:bob is not x509:alice
                b.decrypt(pk2, ct)
        with HeAccelClient(target, root_certificates=str(pki["ca"]), server_name="localhost", retries=0) as anon, \
             pytest.raises((Unavailable, Unauthenticated)):     # no client certificate: handshake refused
            anon.encrypt(pk, pack([1], pk.plaintext_width))
        with HeAccelClient(target, retries=0, timeout=5) as plain, pytest.raises(Unavailable):
            plain.encrypt(pk, pack([1], pk.plaintext_width))    # plaintext gRPC to a TLS port
    finally:
        srv.stop(2)
    # TLS without client certificates, bearer tokens for identity
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", tls_cert=str(pki["localhost_cert"]),
                                     tls_key=str(pki["localhost_key"]), tokens={"tok": "carol"}),
                        backend=pool_backend).start()
    try:
        with HeAccelClient(f"127.0.0.1:{srv.port}", root_certificates=str(pki["ca"]), token="tok",
                           server_name="localhost") as c:
            ct = c.encrypt(pk, pack([3], pk.plaintext_width))
            assert Oracle.for_key(sk).dec_all(blob_to_ints(ct, pk.ciphertext_width)) == [3]
    finally:
        srv.stop(2)


def test_a_server_bug_in_a_stream_is_internal_not_a_hang(pool_backend, key, monkeypatch):
    """An unexpected exception while planning a stream chunk ends the stream with INTERNAL
    (naming the chunk) instead of silently closing it, which the client would reopen forever."""
    from accel.service.errors import Internal
    from accel.service.server import ComputeServicer

    pk, _ = key
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0"), backend=pool_backend).start()

    def broken(self, op, req, ident):
        raise RuntimeError("bug")

    monkeypatch.setattr(ComputeServicer, "plan", broken)
    try:
        with HeAccelClient(f"127.0.0.1:{srv.port}", chunk_bytes=pk.plaintext_width, timeout=30) as c, \
             pytest.raises(Internal, match=r"stream chunk 0 \(encrypt\): internal error"):
            c.encrypt(pk, pack([1, 2, 3], pk.plaintext_width))
    finally:
        srv.stop(2)
