"""The offload service under abuse and faults (issue 16): admission before work, sizes checked
from the message header before decoding, per-identity key registry, cancellation, drain, and
the smaller fixes. In-process servers on loopback with small limits; each test names the
attack it replays."""
from __future__ import annotations

import contextlib
import queue
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accel import generate_keypair
from accel.backends.cpu import CpuBackend
from accel.packing import blob_to_ints, ints_to_blob
from accel.service.client import HeAccelClient
from accel.service.errors import InvalidArgument, KeyNotFound, ResourceExhausted
from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb
from accel.service.server import HeAccelServer, ServerConfig, config_from_args, device_count

from .oracle import Oracle

TOKENS = {"token-alice": "alice", "token-bob": "bob"}
ALICE = (("authorization", "Bearer token-alice"),)
BOB = (("authorization", "Bearer token-bob"),)


def pack(values, width):
    return ints_to_blob(values, width)


@pytest.fixture(scope="module")
def key():
    return generate_keypair(512, allow_insecure=True)


@contextlib.contextmanager
def serving(backend=None, **cfg):
    cfg.setdefault("min_key_bits", 512)
    cfg.setdefault("tokens", TOKENS)
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", **cfg),
                        backend=backend if backend is not None else CpuBackend(workers=1)).start()
    try:
        yield srv
    finally:
        srv.stop(1)


class Silent:
    """Calls that open and then send nothing (a client stream whose iterator blocks)."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.release = threading.Event()
        self.calls: list = []

    def _never(self):
        self.release.wait()
        return
        yield  # noqa: unreachable - makes this a generator

    def open_unary(self, method: str, metadata=(), n: int = 1):
        rpc = self.channel.stream_unary(method, request_serializer=lambda m: m, response_deserializer=lambda b: b)
        for _ in range(n):
            self.calls.append(rpc.future(self._never(), metadata=metadata))

    def open_stream(self, metadata=(), n: int = 1):
        rpc = self.channel.stream_stream("/heaccel.v1.ComputeService/Stream", request_serializer=lambda m: m,
                                         response_deserializer=lambda b: b)
        for _ in range(n):
            self.calls.append(rpc(self._never(), metadata=metadata))

    def close(self):
        self.release.set()
        for c in self.calls:
            c.cancel()


def health_status(port: int, timeout: float = 5.0) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout).status


def encrypt_ok(port: int, token: str, pk, sk) -> bool:
    with HeAccelClient(f"127.0.0.1:{port}", token=token, timeout=10, retries=0) as c:
        ct = c.encrypt(pk, pack([7], pk.plaintext_width))
    return Oracle.for_key(sk).dec_all(blob_to_ints(ct, pk.ciphertext_width)) == [7]


def code_of(call) -> grpc.StatusCode:
    try:
        call.result(timeout=30) if hasattr(call, "result") else list(call)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


# -- admission before work ---------------------------------------------------------------------

class TestAdmission:
    def test_silent_unauthenticated_calls_hold_nothing(self, key):
        """256 silent calls without a token used to fill the server's RPC limit for everyone."""
        pk, sk = key
        with serving(max_calls=8, max_calls_per_identity=4, handler_threads=16) as srv, \
                grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                silent.open_unary("/heaccel.v1.ComputeService/Encrypt", n=40)
                silent.open_stream(n=40)     # 80 calls: more than max_calls and the handler threads
                codes = [code_of(c) for c in silent.calls]
                assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}, codes  # refused before any message
                assert health_status(srv.port) == health_pb2.HealthCheckResponse.SERVING
                assert encrypt_ok(srv.port, "token-alice", pk, sk)
            finally:
                silent.close()

    def test_one_identity_cannot_block_another_or_health(self, key):
        pk, sk = key
        with serving(max_calls=8, max_calls_per_identity=3, handler_threads=16, idle_timeout_s=60) as srv, \
                grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                silent.open_unary("/heaccel.v1.ComputeService/Encrypt", metadata=BOB, n=2)
                silent.open_stream(metadata=BOB, n=1)
                deadline = time.monotonic() + 10
                while srv.admission.active < 3 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert srv.admission.active == 3
                with HeAccelClient(f"127.0.0.1:{srv.port}", token="token-bob", timeout=10, retries=0) as bob, \
                        pytest.raises(ResourceExhausted, match="this identity already has 3 calls"):
                    bob.encrypt(pk, pack([1], pk.plaintext_width))
                assert encrypt_ok(srv.port, "token-alice", pk, sk)
                assert health_status(srv.port) == health_pb2.HealthCheckResponse.SERVING
            finally:
                silent.close()

    def test_total_limit_and_health_reserve(self, key):
        pk, sk = key
        tokens = {f"t{i}": f"id{i}" for i in range(6)} | TOKENS
        with serving(max_calls=4, max_calls_per_identity=1, handler_threads=6, health_threads=2,
                     tokens=tokens, idle_timeout_s=60) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                for i in range(4):
                    silent.open_unary("/heaccel.v1.KeyService/ListKeys", metadata=(("authorization", f"Bearer t{i}"),))
                deadline = time.monotonic() + 10
                while srv.admission.active < 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                with pytest.raises(ResourceExhausted, match="the server has 4 calls in progress"):
                    encrypt_ok(srv.port, "token-alice", pk, sk)
                for _ in range(20):  # the reserve answers, over and over
                    assert health_status(srv.port) == health_pb2.HealthCheckResponse.SERVING
            finally:
                silent.close()
            deadline = time.monotonic() + 10
            while srv.admission.active and time.monotonic() < deadline:
                time.sleep(0.05)
            assert encrypt_ok(srv.port, "token-alice", pk, sk)

    def test_silent_health_checks_cannot_hold_the_reserve(self):
        with serving(health_threads=2) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                silent.open_unary("/grpc.health.v1.Health/Check", n=6)
                time.sleep(0.2)
                assert health_status(srv.port, timeout=15) == health_pb2.HealthCheckResponse.SERVING
                assert {code_of(c) for c in silent.calls} == {grpc.StatusCode.DEADLINE_EXCEEDED}
            finally:
                silent.close()

    def test_open_methods_are_admitted_too(self, key):
        """Reflection and health Watch need no token: silent or endless calls there share one
        identity's slots, so they block neither identities nor a drain."""
        pk, sk = key
        with serving(max_calls=8, max_calls_per_identity=2, handler_threads=16, idle_timeout_s=60) as srv, \
                grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                rpc = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                       request_serializer=lambda m: m, response_deserializer=lambda b: b)
                for _ in range(20):
                    silent.calls.append(rpc(silent._never()))
                # the calls reach the server in any order: whichever two arrive first hold the slots
                deadline = time.monotonic() + 30
                while sum(c.done() for c in silent.calls) < 18 and time.monotonic() < deadline:
                    time.sleep(0.05)
                refused = [c for c in silent.calls if c.done()]
                assert len(refused) == 18, f"{len(refused)} of 20 ended; 18 should be refused"
                assert {code_of(c) for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
                watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest())
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
                assert encrypt_ok(srv.port, "token-alice", pk, sk)
                assert srv.admission.active == 3 and srv.admission.working == 0
                assert srv.admission.drain(0.5)           # a drain does not wait for them
                watch.cancel()
            finally:
                silent.close()

    def test_idle_calls_are_ended(self, key):
        pk, sk = key
        with serving(idle_timeout_s=0.5) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            silent = Silent(ch)
            try:
                silent.open_unary("/heaccel.v1.ComputeService/Encrypt", metadata=ALICE)
                silent.open_stream(metadata=ALICE)
                assert [code_of(c) for c in silent.calls] == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
                assert srv.admission.active == 0
            finally:
                silent.close()
            assert encrypt_ok(srv.port, "token-alice", pk, sk)

    def test_clients_pinging_too_often_are_disconnected(self):
        with serving(min_client_ping_interval_s=5, idle_timeout_s=60) as srv:
            opts = [("grpc.keepalive_time_ms", 100), ("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.max_pings_without_data", 0)]
            with grpc.insecure_channel(f"127.0.0.1:{srv.port}", options=opts) as ch:
                silent = Silent(ch)
                try:
                    silent.open_stream(metadata=ALICE)
                    with pytest.raises(grpc.RpcError) as e:
                        list(silent.calls[0])
                    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
                finally:
                    silent.close()


# -- sizes from the header, before decoding ----------------------------------------------------

class TestSizes:
    def test_signed_numbers_are_counted_before_decoding(self, key):
        pk, _ = key
        with serving(max_request_elements=3000) as srv, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as c:
            ct = c.encrypt(pk, pack([1], pk.plaintext_width))
            ref = pb.KeyRef(key_id=pk.fingerprint, public_key=pk.to_bytes())
            # every magnitude out of range: decoding first would say "out of range", not the count
            huge = pb.SignedNumbers(magnitudes=b"\xff" * (8 << 20), width=1)
            with pytest.raises(InvalidArgument, match="length mismatch: 1 ciphertexts, 8388608 scalars"):
                c._unary(c.compute, "Mul", pb.MulRequest(key=ref, ciphertexts=ct, scalars=huge))
            bad_base = (pk.n + 5).to_bytes(pk.plaintext_width, "little")
            with pytest.raises(InvalidArgument, match="length mismatch: 1 bases, 2 exponents"):
                c._unary(c.compute, "PowMod", pb.PowModRequest(
                    modulus=pk.n.to_bytes(64, "big"), bases=bad_base[:64],
                    exponents=pb.SignedNumbers(magnitudes=b"\xff" * 8, width=4)))
            with pytest.raises(InvalidArgument, match="matrix has 8388608 entries; 1 rows x 2 columns"):
                c._unary(c.compute, "MatVec", pb.MatVecRequest(key=ref, ciphertexts=ct, matrix=huge, columns=2))

    def test_matvec_columns_cannot_amplify_the_reply(self, key):
        pk, sk = key
        with serving(max_request_elements=1 << 21, max_message_bytes=8 << 20) as srv, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as c:
            ref = pb.KeyRef(key_id=pk.fingerprint, public_key=pk.to_bytes())
            with pytest.raises(ResourceExhausted, match="the reply would be"):
                c._unary(c.compute, "MatVec", pb.MatVecRequest(key=ref, columns=524288))
            floor = (1 << 20) // pk.ciphertext_width            # no rows: at most 1 MiB of E(0)s
            assert len(c._unary(c.compute, "MatVec", pb.MatVecRequest(key=ref, columns=floor)).ciphertexts) == 1 << 20
            with pytest.raises(ResourceExhausted, match="the reply would be"):
                c._unary(c.compute, "MatVec", pb.MatVecRequest(key=ref, columns=floor + 1))
            with pytest.raises(ResourceExhausted, match="oversize request: 2097153 columns"):
                c._unary(c.compute, "MatVec", pb.MatVecRequest(key=ref, columns=(1 << 21) + 1))
            ct = c.encrypt(pk, pack([5], pk.plaintext_width))   # one row, 9000 columns: a full matrix
            ks = [k % 7 for k in range(9000)]
            out = c._unary(c.compute, "MatVec", pb.MatVecRequest(
                key=ref, ciphertexts=ct, matrix=pb.SignedNumbers(magnitudes=bytes(ks), width=1), columns=9000))
            assert len(out.ciphertexts) == 9000 * pk.ciphertext_width           # over the floor: allowed
            assert Oracle.for_key(sk).dec_all(blob_to_ints(out.ciphertexts, pk.ciphertext_width)[:9]) == \
                [5 * k for k in ks[:9]]
            assert blob_to_ints(c.matvec(pk, b"", [], 3), pk.ciphertext_width) == [1, 1, 1]

    def test_queued_work_is_capped_per_identity(self, key):
        pk, sk = key
        with serving(max_delay_ms=800, max_queue_elements=64, max_identity_queue_elements=4,
                     max_request_elements=4) as srv:
            with HeAccelClient(f"127.0.0.1:{srv.port}", token="token-bob", timeout=30) as bob:
                first = threading.Thread(target=lambda: bob.encrypt(pk, pack([1, 2, 3, 4], pk.plaintext_width)))
                first.start()
                time.sleep(0.2)
                with pytest.raises(ResourceExhausted, match="this identity has 4 elements queued"):
                    bob.encrypt(pk, pack([5], pk.plaintext_width))
                assert encrypt_ok(srv.port, "token-alice", pk, sk)   # alice's share is her own
                first.join()


# -- key registry ------------------------------------------------------------------------------

class TestKeyRegistry:
    def test_scoped_per_identity(self, key):
        pk, sk = key
        pk2, _ = generate_keypair(512, allow_insecure=True)
        with serving(max_keys_per_identity=2) as srv, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as alice, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="token-bob", retries=0) as bob:
            alice.register_public_key(pk)
            alice.register_public_key(pk2)
            with pytest.raises(ResourceExhausted, match="quota"):
                alice.generate_keypair(512)
            assert {k.key_id for k in alice.list_keys()} == {pk.fingerprint, pk2.fingerprint}
            assert bob.list_keys() == []                                  # not alice's keys
            with pytest.raises(KeyNotFound):                              # bob never registered it
                bob.describe_key(pk.fingerprint)
            bob.register_public_key(pk)                                   # bob's quota is his own
            assert [k.key_id for k in bob.list_keys()] == [pk.fingerprint]
            assert bob.delete_key(pk) and [k.key_id for k in alice.list_keys()].count(pk.fingerprint) == 1

    def test_a_known_key_id_must_match_its_key_and_rejections_register_nothing(self, key):
        pk, _ = key
        pk2, _ = generate_keypair(512, allow_insecure=True)
        with serving() as srv, HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as alice, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="token-bob", retries=0) as bob:
            alice.register_public_key(pk)
            ct = alice.encrypt(pk, pack([1], pk.plaintext_width))
            wrong = pb.KeyRef(key_id=pk.fingerprint, public_key=pk2.to_bytes())   # known id, other key
            with pytest.raises(InvalidArgument, match="does not match the public key"):
                bob._unary(bob.compute, "Sum", pb.SumRequest(key=wrong, ciphertexts=ct))
            bad = pack([0], pk2.ciphertext_width)                                 # invalid payload
            with pytest.raises(InvalidArgument, match="out of range"):
                bob._unary(bob.compute, "Sum", pb.SumRequest(
                    key=pb.KeyRef(key_id=pk2.fingerprint, public_key=pk2.to_bytes()), ciphertexts=bad))
            assert bob.list_keys() == [] and srv.keys.counts() == (1, 0)

    def test_long_key_ids_are_not_echoed(self, key):
        with serving() as srv, HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as alice:
            with pytest.raises(KeyNotFound) as e:
                alice.describe_key("k" * 10_000)
            assert len(str(e.value)) < 200 and "10000 characters" in str(e.value)


# -- cancellation and drain --------------------------------------------------------------------

class CountingBackend(CpuBackend):
    """Inline CPU backend that counts the elements it encrypts and takes its time doing so."""

    def __init__(self, delay: float):
        super().__init__(workers=1)
        self.delay = delay
        self.encrypted = 0

    def raw_encrypt(self, pk, ms, **kw):
        time.sleep(self.delay)
        out = super().raw_encrypt(pk, ms, **kw)
        self.encrypted += len(ms) // pk.plaintext_width if isinstance(ms, bytes) else len(ms)
        return out


def test_cancelled_stream_chunks_never_run(key):
    pk, _ = key
    be = CountingBackend(delay=0.2)
    with serving(backend=be, max_delay_ms=0, preferred_batch=1, max_batch=1) as srv:
        with HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0) as c:
            plan = c._plan_encrypt(pk, pack(list(range(40)), pk.plaintext_width), "textbook")
            plan.requests = [pb.EncryptRequest(key=r.key, plaintexts=r.plaintexts[i:i + pk.plaintext_width])
                             for r in plan.requests for i in range(0, len(r.plaintexts), pk.plaintext_width)]
            assert len(plan.requests) == 40
            call = c.compute.Stream(c._stream_requests(plan, 0), metadata=c._metadata, timeout=30)
            next(call)
            call.cancel()
        time.sleep(2.0)
        ran = be.encrypted
        time.sleep(1.0)
        assert be.encrypted == ran < 10   # a window of 16 was queued: at most the running one finished


def test_expired_jobs_are_dropped_before_they_run(key):
    pk, _ = key
    be = CountingBackend(delay=1.0)
    with serving(backend=be, max_delay_ms=0, preferred_batch=1, max_batch=1) as srv:
        with HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0, timeout=0.5) as c:
            threads = [threading.Thread(target=lambda: pytest.raises(Exception, c.encrypt, pk,
                                                                      pack([1], pk.plaintext_width)))
                       for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        time.sleep(1.5)
        assert be.encrypted <= 2   # the first one ran; the rest expired in the queue


def test_sigterm_drain(key):
    """Health says NOT_SERVING at once and keeps answering; new calls get UNAVAILABLE; calls in
    progress finish within the grace."""
    pk, sk = key
    be = CountingBackend(delay=1.5)
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", min_key_bits=512, tokens=TOKENS, grace_seconds=20),
                        backend=be).start()
    results: queue.Queue = queue.Queue()
    with HeAccelClient(f"127.0.0.1:{srv.port}", token="token-alice", retries=0, timeout=30) as c:
        def one(i):
            try:
                results.put(("ok", i, c.encrypt(pk, pack([i], pk.plaintext_width))))
            except Exception as e:  # noqa: BLE001
                results.put(("err", i, e))
        workers = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in workers:
            t.start()
        time.sleep(0.5)
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        time.sleep(0.3)
        assert health_status(srv.port) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(Exception) as e:
            c.encrypt(pk, pack([9], pk.plaintext_width))
        assert "shutting down" in str(e.value)
        for t in workers:
            t.join()
        stopper.join()
    got = [results.get_nowait() for _ in range(4)]
    assert all(kind == "ok" for kind, _, _ in got)
    o = Oracle.for_key(sk)
    assert all(o.dec_all(blob_to_ints(ct, pk.ciphertext_width)) == [i] for _, i, ct in got)


# -- smaller ones ------------------------------------------------------------------------------

def test_metrics_listen_on_the_service_host_by_default():
    class Args:
        address = "127.0.0.1:0"
        metrics_port = 0

    cfg = config_from_args(Args(), env={})
    assert cfg.metrics_address is None
    with serving(metrics_port=0) as srv:
        assert srv._metrics_http.server_address[0] == "127.0.0.1"
    with serving(metrics_port=0, metrics_address="0.0.0.0") as srv:
        assert srv._metrics_http.server_address[0] == "0.0.0.0"


def test_worker_count_follows_the_gpu_count():
    """The GPU backend has no ``devices`` attribute: the count comes from its runtimes."""
    from accel.backends.gpu import GpuBackend

    two = GpuBackend(devices=[0, 1], runtime="emulated")
    assert not hasattr(two, "devices")
    assert device_count(two) == 2 and device_count(CpuBackend(workers=1)) == 1
    with serving(backend=two) as srv:
        assert len(srv.batcher._threads) == 2


def test_reflection_v1_beside_v1alpha():
    from grpc_reflection.v1alpha import reflection_pb2

    with serving() as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        for pkg in ("grpc.reflection.v1", "grpc.reflection.v1alpha"):
            rpc = ch.stream_stream(f"/{pkg}.ServerReflection/ServerReflectionInfo",
                                   request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                   response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
            resp = next(rpc(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
            names = {s.name for s in resp.list_services_response.service}
            assert {"heaccel.v1.ComputeService", "grpc.reflection.v1.ServerReflection",
                    "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_registry_quota_is_freed_by_delete_and_counts_each_identity_once():
    from accel.service.keys import KeyRegistry

    keys = [generate_keypair(512, allow_insecure=True)[0] for _ in range(3)]
    reg = KeyRegistry(min_bits=512, max_keys=3, max_keys_per_identity=2)
    reg.register_public(keys[0].to_bytes(), "alice")
    reg.register_public(keys[0].to_bytes(), "alice")            # the same key again costs nothing
    reg.register_public(keys[1].to_bytes(), "alice")
    with pytest.raises(ResourceExhausted, match="quota"):
        reg.register_public(keys[2].to_bytes(), "alice")
    assert reg.counts() == (2, 0)                                # the refusal registered nothing
    reg.register_public(keys[0].to_bytes(), "bob")               # shared record, bob's own count
    assert reg.delete(keys[0].fingerprint, "alice")
    assert [r.key_id for r in reg.visible("bob")] == [keys[0].fingerprint]   # still bob's
    reg.register_public(keys[2].to_bytes(), "alice")             # alice's quota was freed
    with pytest.raises(ResourceExhausted, match="registry is full"):
        reg.register_public(generate_keypair(512, allow_insecure=True)[0].to_bytes(), "carol")


def test_serve_flags_reach_the_config():
    from accel.cli import build_parser

    args = build_parser().parse_args([
        "serve", "--max-calls", "50", "--max-calls-per-identity", "5", "--idle-timeout", "7", "--grace", "3",
        "--metrics-address", "127.0.0.2", "--key-store", "memory", "--max-keys-per-identity", "9",
        "--keepalive-time", "30", "--min-ping-interval", "4", "--health-threads", "3"])
    cfg = config_from_args(args, env={"HEA_MAX_IDENTITY_QUEUE": "1000", "HEA_KEK_FILE": "/k"})
    assert (cfg.max_calls, cfg.max_calls_per_identity, cfg.idle_timeout_s, cfg.grace_seconds) == (50, 5, 7, 3)
    assert (cfg.metrics_address, cfg.key_store, cfg.max_keys_per_identity) == ("127.0.0.2", "memory", 9)
    assert (cfg.keepalive_time_s, cfg.min_client_ping_interval_s, cfg.health_threads) == (30, 4, 3)
    assert (cfg.max_identity_queue_elements, cfg.kek_file) == (1000, "/k")
    default = config_from_args(build_parser().parse_args(["serve"]), env={"XDG_DATA_HOME": "/data"})
    assert default.key_store == "sqlite:/data/he-accel/keys.db"
    with pytest.raises(ValueError, match="must be below handler_threads"):
        HeAccelServer(ServerConfig(address="127.0.0.1:0", max_calls=300), backend=CpuBackend(workers=1))
