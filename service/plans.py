"""The plan of a client call (shared by both clients): which RPC, its requests (one per chunk
of a batch larger than the client's ``chunk_bytes``), and how the replies combine into the
method's result (joined, or a product mod n^2 of partial sums and matrix products)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from accel.backends.base import group_counts
from accel.keys import PublicKey
from accel.packing import blob_to_ints, ints_to_blob

from . import codec
from .errors import InvalidArgument
from .ops import BY_RPC, COMPUTE_OPS
from .proto.heaccel.v1 import heaccel_pb2 as pb


@dataclass
class Plan:
    rpc: str                                  # the KeyService or ComputeService method
    requests: list[Any]                       # one per chunk; one element means a unary call
    finish: Callable[[list[Any]], Any]        # the replies' payloads -> the method's result

    @property
    def service(self) -> str:
        return "compute" if self.rpc in BY_RPC else "keys"

    def payload(self, reply: Any) -> Any:
        """What ``finish`` reads of a unary reply: a compute op's packed numbers, a key call's message."""
        op = BY_RPC.get(self.rpc)
        return reply if op is None else getattr(reply, op.result)

    def stream_requests(self, start: int) -> Iterator[pb.StreamRequest]:
        """The chunks from ``start`` on, as ``Stream`` messages (``start`` is read now, not when iterated)."""
        field = BY_RPC[self.rpc].name
        return (pb.StreamRequest(sequence=seq, **{field: self.requests[seq]})
                for seq in range(start, len(self.requests)))


def key_call(rpc: str, request: Any, finish: Callable[[Any], Any]) -> Plan:
    """A plan of one KeyService call: ``finish`` reads its reply."""
    return Plan(rpc, [request], lambda replies: finish(replies[0]))


def key_ref(pk: PublicKey) -> pb.KeyRef:
    return pb.KeyRef(key_id=pk.fingerprint, public_key=pk.to_bytes())


def _signed(values: Sequence[int], at_most: int) -> pb.SignedNumbers:
    width = codec.signed_width(list(values), at_most)
    mags, neg = codec.pack_signed(list(values), width)
    return pb.SignedNumbers(magnitudes=mags, width=width, negative=neg)


def _join(parts: list[bytes]) -> bytes:
    return b"".join(parts)


def _chunks(count: int, per: int) -> list[tuple[int, int]]:
    if count == 0:
        return [(0, 0)]
    return [(i, min(count, i + per)) for i in range(0, count, per)]


def _product_mod(nsquare: int, width: int, columns: int) -> Callable[[list[bytes]], bytes]:
    """Combine partial results (each ``columns`` ciphertexts) by a product mod n^2."""
    def finish(parts: list[bytes]) -> bytes:
        if len(parts) == 1:
            return parts[0]
        acc = blob_to_ints(parts[0], width)
        for p in parts[1:]:
            acc = [a * b % nsquare for a, b in zip(acc, blob_to_ints(p, width))]
        return ints_to_blob(acc, width)
    return finish


def _group_sizes(counts: Sequence[int], total: int) -> list[int]:
    """The library's check of group sizes (non-negative ints adding up to ``total``), before
    any request is made; a bad count is the caller's INVALID_ARGUMENT, as the service would say."""
    try:
        return group_counts(counts, total)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def _merge_pieces(nsquare: int, width: int, continues: list[bool]) -> Callable[[list[bytes]], bytes]:
    """Join the chunks' replies; an entry marked in ``continues`` is multiplied into the one before it."""
    def finish(parts: list[bytes]) -> bytes:
        joined = _join(parts)
        if not any(continues):
            return joined
        out: list[bytes] = []
        for j, piece_of_previous in enumerate(continues):
            entry = joined[j * width:(j + 1) * width]
            if piece_of_previous:
                acc = int.from_bytes(out[-1], "little") * int.from_bytes(entry, "little") % nsquare
                out[-1] = acc.to_bytes(width, "little")
            else:
                out.append(entry)
        return b"".join(out)
    return finish


class Planner:
    def __init__(self, chunk_bytes: int):
        self.chunk_bytes = max(1, chunk_bytes)

    def _per_chunk(self, bytes_per_element: int) -> int:
        return max(1, self.chunk_bytes // max(1, bytes_per_element))

    def elementwise(self, op: str, pk: PublicKey, fields: dict[str, tuple[bytes, int]],
                    extra: dict[str, Any] | None = None, scalars: tuple[str, list[int]] | None = None) -> Plan:
        """Requests for an elementwise op: ``fields`` name -> (blob, width); optional signed
        ``scalars`` (field name, values) split along with them."""
        count = None
        for name, (blob, width) in fields.items():
            c = codec.count_of(blob, width, name)
            if count is not None and c != count:
                raise InvalidArgument(f"length mismatch: {count} vs {c} elements")
            count = c
        count = count or 0
        if scalars is not None and len(scalars[1]) != count:
            raise InvalidArgument(f"length mismatch: {count} elements, {len(scalars[1])} scalars")
        per_el = sum(w for _, w in fields.values()) + (pk.plaintext_width if scalars else 0)
        reqs = []
        msg = COMPUTE_OPS[op].request
        for lo, hi in _chunks(count, self._per_chunk(per_el)):
            kw = {name: blob[lo * w:hi * w] for name, (blob, w) in fields.items()}
            if scalars is not None:
                kw[scalars[0]] = _signed(scalars[1][lo:hi], pk.plaintext_width)
            reqs.append(msg(key=key_ref(pk), **kw, **(extra or {})))
        return Plan(COMPUTE_OPS[op].rpc, reqs, _join)

    def sum(self, pk: PublicKey, cs: bytes) -> Plan:
        cw = pk.ciphertext_width
        count = codec.count_of(cs, cw, "ciphertexts")
        reqs = [pb.SumRequest(key=key_ref(pk), ciphertexts=cs[lo * cw:hi * cw])
                for lo, hi in _chunks(count, self._per_chunk(cw))]
        return Plan("Sum", reqs, _product_mod(pk.nsquare, cw, 1))

    def sum_groups(self, pk: PublicKey, cs: bytes, counts: Sequence[int]) -> Plan:
        """Chunks of whole groups, each at most a chunk's worth of ciphertexts in the request
        and of sums in the reply; a group too large for one chunk is split, and the partial
        sums of its pieces (adjacent in the joined replies) are multiplied here."""
        cw = pk.ciphertext_width
        count = codec.count_of(cs, cw, "ciphertexts")
        sizes = _group_sizes(counts, count)
        per = self._per_chunk(cw)
        spans: list[tuple[int, int, list[int]]] = []   # (first element, end, counts) per chunk
        continues: list[bool] = []                     # per reply entry: a later piece of the group before it
        lo = at = 0
        pieces: list[int] = []
        for k in sizes:
            left, piece_of_previous = k, False
            while True:
                if len(pieces) == per or (at - lo == per and left):
                    spans.append((lo, at, pieces))
                    lo, pieces = at, []
                take = min(left, per - (at - lo))
                pieces.append(take)
                continues.append(piece_of_previous)
                at += take
                left -= take
                if not left:
                    break
                piece_of_previous = True
        spans.append((lo, at, pieces))
        reqs = [pb.SumGroupsRequest(key=key_ref(pk), ciphertexts=cs[a * cw:b * cw], counts=ks) for a, b, ks in spans]
        return Plan("SumGroups", reqs, _merge_pieces(pk.nsquare, cw, continues))

    def matvec(self, pk: PublicKey, cs: bytes, rows: list[list[int]], columns: int) -> Plan:
        cw = pk.ciphertext_width
        count = codec.count_of(cs, cw, "ciphertexts")
        if len(rows) != count:
            raise InvalidArgument(f"X has {len(rows)} rows but there are {count} ciphertexts")
        reqs = []
        for lo, hi in _chunks(count, self._per_chunk(cw + columns * 8)):
            flat = [v for r in rows[lo:hi] for v in r]
            reqs.append(pb.MatVecRequest(key=key_ref(pk), ciphertexts=cs[lo * cw:hi * cw],
                                         matrix=_signed(flat, pk.plaintext_width), columns=columns))
        return Plan("MatVec", reqs, _product_mod(pk.nsquare, cw, columns))

    def powmod(self, bases: list[int], exps: list[int], mod: int) -> Plan:
        width = -(-mod.bit_length() // 32) * 4
        mbytes = mod.to_bytes((mod.bit_length() + 7) // 8, "big")
        blob = ints_to_blob([b % mod for b in bases], width, "base")
        reqs = []
        for lo, hi in _chunks(len(bases), self._per_chunk(2 * width)):
            e = exps[lo:hi]
            reqs.append(pb.PowModRequest(modulus=mbytes, bases=blob[lo * width:hi * width],
                                         exponents=_signed(e, codec.MAX_SIGNED_WIDTH)))
        return Plan("PowMod", reqs, lambda parts: blob_to_ints(_join(parts), width))
