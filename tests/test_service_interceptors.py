"""The service's layers: ops named once (ops.py) and matching the proto; the interceptors that
authenticate, count and map every call to a status; the two clients built on one call core."""
from __future__ import annotations

import asyncio
import inspect

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accel.keys import PrivateKey
from accel.packing import blob_to_ints, ints_to_blob
from accel.service.client import AsyncHeAccelClient, HeAccelClient
from accel.service.compute import ComputeServicer
from accel.service.errors import Internal, InvalidArgument, KeyNotFound, Unauthenticated
from accel.service.ops import BY_RPC, COMPUTE_OPS, COMPUTE_SERVICE, KEY_OPS, KEY_SERVICE, method_ops
from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb
from accel.service.server import HeAccelServer, ServerConfig

from .oracle import Oracle


def test_each_op_is_its_stream_field_and_its_rpc():
    stream_fields = pb.StreamRequest.DESCRIPTOR.fields_by_name
    for op in COMPUTE_OPS.values():
        assert stream_fields[op.name].message_type.name == op.request.__name__
        assert op.result in op.reply.DESCRIPTOR.fields_by_name
        assert op.name in ComputeServicer.PLANNERS
    assert set(BY_RPC) | {"Stream"} == set(COMPUTE_SERVICE.methods_by_name)
    assert set(KEY_OPS) == set(KEY_SERVICE.methods_by_name)
    assert set(ComputeServicer.PLANNERS) == set(COMPUTE_OPS)
    labels = list(method_ops().values())
    assert len(labels) == len(set(labels)) == len(COMPUTE_OPS) + 1 + len(KEY_OPS)


def test_both_clients_have_the_same_methods():
    def public(cls):
        return {n: getattr(cls, n) for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}

    sync, aio = public(HeAccelClient), public(AsyncHeAccelClient)
    assert set(sync) == set(aio)
    assert {"export_private_key", "list_keys"} <= set(aio)
    for name, method in sync.items():
        assert inspect.signature(method) == inspect.signature(aio[name]), name
        assert inspect.iscoroutinefunction(aio[name]) and not inspect.iscoroutinefunction(method), name


def test_the_async_client_lists_and_exports_its_keys(service_server, key1024):
    pk, sk = key1024

    async def main():
        async with AsyncHeAccelClient(f"127.0.0.1:{service_server.port}") as c:
            pk2, _ = await c.generate_keypair(512)
            listed = [k.key_id for k in await c.list_keys()]
            exported = await c.export_private_key(pk2)
            ct = await c.encrypt(pk2, ints_to_blob([0, 1, pk2.n - 1], pk2.plaintext_width))
            assert await c.delete_key(pk2)
            return pk2, listed, exported, ct

    pk2, listed, exported, ct = asyncio.run(main())
    assert pk2.fingerprint in listed
    assert isinstance(exported, PrivateKey) and exported.public_key == pk2 and exported.p * exported.q == pk2.n
    assert Oracle.for_key(exported).dec_all(blob_to_ints(ct, pk2.ciphertext_width)) == [0, 1, pk2.n - 1]


def samples(registry) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def count(registry, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples(registry).items()
               if n == name and all(dict(lab).get(k) == w for k, w in labels.items()))


@pytest.fixture
def server(pool_backend):
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", min_key_bits=512, tokens={"tok": "alice"},
                                     max_delay_ms=1.0), backend=pool_backend).start()
    yield srv
    srv.stop(2)


def test_every_call_is_counted_once_with_its_status(server, key1024):
    pk, sk = key1024
    reg, pw, bits = server.registry, pk.plaintext_width, str(pk.bits)
    target = f"127.0.0.1:{server.port}"
    with HeAccelClient(target, token="tok", chunk_bytes=2 * pw) as c:
        c.encrypt(pk, ints_to_blob([1, 2], pw))                      # unary: two elements
        ct = c.encrypt(pk, ints_to_blob([3, 4, 5, 6, 7], pw))        # three chunks on one stream
        with pytest.raises(KeyNotFound):
            c.describe_key("no-such-key")
        cw = pk.ciphertext_width
        with pytest.raises(InvalidArgument, match="stream chunk 1"):  # one element a chunk; the second is 0
            c.add(pk, ct[:4 * cw], ct[:cw] + bytes(3 * cw))
    with HeAccelClient(target, token="wrong") as c, pytest.raises(Unauthenticated):
        c.encrypt(pk, ints_to_blob([1], pw))
    assert Oracle.for_key(sk).dec_all(blob_to_ints(ct, pk.ciphertext_width)) == [3, 4, 5, 6, 7]

    ok = {"code": "OK", "key_bits": bits}
    assert count(reg, "heaccel_requests_total", op="encrypt", **ok) == 1 + 3      # the call and the chunks
    assert count(reg, "heaccel_ciphertexts_total", op="encrypt", key_bits=bits) == 2 + 5
    assert count(reg, "heaccel_requests_total", op="stream", code="OK") == 1
    assert count(reg, "heaccel_ciphertexts_total", op="stream") == 5
    assert count(reg, "heaccel_errors_total", op="describe_key", code="NOT_FOUND") == 1
    assert count(reg, "heaccel_errors_total", op="add", code="INVALID_ARGUMENT") == 1    # the chunk
    assert count(reg, "heaccel_errors_total", op="stream", code="INVALID_ARGUMENT") == 1  # and its stream
    assert count(reg, "heaccel_requests_total", op="add", code="OK") == 1                 # the chunk before
    assert count(reg, "heaccel_errors_total", op="encrypt", code="UNAUTHENTICATED") == 1  # refused, not run
    assert count(reg, "heaccel_errors_total") == 4
    assert count(reg, "heaccel_inflight_requests") == 0


def test_a_handler_bug_is_internal_and_its_text_stays_in_the_log(server, key1024, monkeypatch, caplog):
    pk, _ = key1024

    def broken(self, op, req, ident):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(ComputeServicer, "plan", broken)
    with HeAccelClient(f"127.0.0.1:{server.port}", token="tok") as c, \
            pytest.raises(Internal, match="internal error in encrypt; see the server log") as e:
        c.encrypt(pk, ints_to_blob([1], pk.plaintext_width))
    assert "secret detail" not in str(e.value)
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)
    assert count(server.registry, "heaccel_errors_total", op="encrypt", code="INTERNAL") == 1


def test_the_library_s_value_errors_are_the_caller_s_input(server, key1024):
    """A ValueError from below the servicer (here a key size under the minimum) is INVALID_ARGUMENT."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        from accel.service.proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

        stub = pb_grpc.KeyServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.GenerateKeyPair(pb.GenerateKeyPairRequest(bits=100), metadata=(("authorization", "Bearer tok"),),
                                 timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
