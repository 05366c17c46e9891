"""The service's ops, one name each, shared by the server and the clients.

An op's name is its metrics label (``heaccel_requests{op=...}``), its field in a ``Stream``
chunk (``StreamRequest.<name>``) and its planner in the servicer; its RPC is the
``ComputeService`` method of the same op, whose request and reply messages come from the proto.
Only grpc/protobuf here: the client-only install (FATE's pins) imports it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .proto.heaccel.v1 import heaccel_pb2 as pb

COMPUTE_SERVICE = pb.DESCRIPTOR.services_by_name["ComputeService"]
KEY_SERVICE = pb.DESCRIPTOR.services_by_name["KeyService"]
STREAM = "stream"  # the ordered chunk stream's metrics label (``ComputeService/Stream``)


@dataclass(frozen=True)
class ComputeOp:
    name: str        # metrics label, Stream chunk field, planner
    rpc: str         # the unary ComputeService method
    request: type    # its request message
    reply: type      # its reply message
    result: str      # the reply's field holding the packed numbers

    @classmethod
    def of(cls, name: str, rpc: str, result: str) -> "ComputeOp":
        method = COMPUTE_SERVICE.methods_by_name[rpc]
        return cls(name, rpc, getattr(pb, method.input_type.name), getattr(pb, method.output_type.name), result)


COMPUTE_OPS: dict[str, ComputeOp] = {op.name: op for op in (
    ComputeOp.of("encrypt", "Encrypt", "ciphertexts"),
    ComputeOp.of("decrypt", "Decrypt", "plaintexts"),
    ComputeOp.of("add", "Add", "ciphertexts"),
    ComputeOp.of("add_plain", "AddPlain", "ciphertexts"),
    ComputeOp.of("mul", "Mul", "ciphertexts"),
    ComputeOp.of("sum", "Sum", "ciphertexts"),
    ComputeOp.of("sum_groups", "SumGroups", "ciphertexts"),
    ComputeOp.of("matvec", "MatVec", "ciphertexts"),
    ComputeOp.of("rerandomize", "Rerandomize", "ciphertexts"),
    ComputeOp.of("powmod", "PowMod", "numbers"),
)}
BY_RPC: dict[str, ComputeOp] = {op.rpc: op for op in COMPUTE_OPS.values()}

# KeyService method -> metrics label
KEY_OPS: dict[str, str] = {
    "RegisterPublicKey": "register_public_key",
    "GenerateKeyPair": "generate_key_pair",
    "ImportPrivateKey": "import_private_key",
    "ExportPrivateKey": "export_private_key",
    "DescribeKey": "describe_key",
    "DeleteKey": "delete_key",
    "ListKeys": "list_keys",
}


def method_ops() -> dict[str, str]:
    """Every he-accel method by its full gRPC name (``/heaccel.v1.ComputeService/Encrypt``) -> op label."""
    compute, keys = COMPUTE_SERVICE.full_name, KEY_SERVICE.full_name
    out = {f"/{compute}/{op.rpc}": op.name for op in COMPUTE_OPS.values()}
    out[f"/{compute}/Stream"] = STREAM
    out.update({f"/{keys}/{rpc}": name for rpc, name in KEY_OPS.items()})
    return out
