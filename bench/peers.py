"""Peer libraries measured in the same run, on the same inputs, with the same checks.

* ``phe``: python-paillier 1.5.0 with gmpy2, one value at a time through its raw layer
  (``raw_encrypt``, ``raw_decrypt``, ``_raw_add``, ``_raw_mul``, ``obfuscate``), under the very key
  our backends use. It runs on one core.
* ``fate_utils``: FATE 2.x's Rust Paillier (0.1.0), its vector API with int64 encodings. It has its
  own key of the same size and runs on one core.
* ``heu``: SecretFlow HEU (``sf-heu``), ``ZPaillier`` (DJN short-exponent obfuscation with
  fixed-base tables), numpy API, BigintEncoder. It has its own key and uses its own thread pool.

Each op returns ``(fn, verify)``: ``fn()`` does the whole batch once (the timed part), and
``verify(out)`` decrypts a sample with the peer's own key and compares it with the expected
plaintexts, so a peer that computes wrongly fails the run just as our backends do. Inputs are
the suite's: 63-bit plaintexts, signed 62-bit scalars and a signed 31-bit matrix, which every
peer's integer encoding holds.
"""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: The ops a peer may offer (names as in accel.bench.ops).
PEER_OPS = ["keygen", "encrypt", "decrypt", "add", "add_plain", "mul", "sum", "matvec", "rerandomize"]


class PeerUnavailable(RuntimeError):
    """The peer is not installed (or cannot run here); the reason is the message."""


class PeerCheckError(AssertionError):
    """A peer computed a wrong result."""


@dataclass
class Inputs:
    """One input set per (key size, batch), shared by our backends and every peer."""

    ms: list[int]          # plaintexts, 0 <= m < 2^63
    ks: list[int]          # scalars, |k| < 2^62
    X: list[list[int]]     # batch x cols matrix, |x| < 2^31
    cols: int

    @classmethod
    def random(cls, batch: int, cols: int = 8) -> "Inputs":
        ms = [secrets.randbits(63) for _ in range(batch)]
        ks = [secrets.randbits(62) * (1 if secrets.randbits(1) else -1) for _ in range(batch)]
        X = [[secrets.randbelow(1 << 32) - (1 << 31) for _ in range(cols)] for _ in range(batch)]
        return cls(ms, ks, X, cols)

    def head(self, batch: int) -> "Inputs":
        return Inputs(self.ms[:batch], self.ks[:batch], self.X[:batch], self.cols)


Op = tuple[Callable[[], Any], Callable[[Any], None]]


def _sample(count: int, k: int = 6) -> list[int]:
    return sorted(random.sample(range(count), min(k, count)))


def _expect(op: str, inp: Inputs) -> Callable[[int], int]:
    b = len(inp.ms)
    return {
        "encrypt": lambda i: inp.ms[i],
        "rerandomize": lambda i: inp.ms[i],
        "add": lambda i: inp.ms[i] + inp.ms[b - 1 - i],
        "add_plain": lambda i: 2 * inp.ms[i],
        "mul": lambda i: inp.ms[i] * inp.ks[i],
        "sum": lambda _i: sum(inp.ms),
        "matvec": lambda j: sum(inp.ms[i] * inp.X[i][j] for i in range(b)),
        "decrypt": lambda i: inp.ms[i],
    }[op]


class Peer:
    name = "peer"
    label = ""
    threads = 1

    def __init__(self, bits: int):
        self.bits = bits
        self._memo: dict = {}

    def _once(self, key: tuple, make: Callable[[], Any]) -> Any:
        """An op's encrypted inputs, made once per input set (the last one kept), not per op."""
        if key not in self._memo:
            self._memo.clear()
            self._memo[key] = make()
        return self._memo[key]

    def version(self) -> str:
        return ""

    def op(self, name: str, inp: Inputs) -> Op | None:
        """(fn, verify) for ``name`` on ``inp``, or None where the peer has no such op."""
        raise NotImplementedError


class PhePeer(Peer):
    name = "phe"

    def __init__(self, bits: int, keys: Any = None):
        super().__init__(bits)
        try:
            from phe import paillier
        except ImportError as e:
            raise PeerUnavailable("python-paillier is not installed (pip install phe gmpy2)") from e
        try:
            import gmpy2  # noqa: F401 - phe is ~10x slower without it, say so rather than hide it
            self.label = "phe 1.5 + gmpy2, 1 core"
        except ImportError:
            self.label = "phe 1.5 without gmpy2, 1 core"
        self.paillier = paillier
        if keys is not None:  # our key, so that phe works on exactly our ciphertext sizes
            pk, sk = keys
            self.pub = paillier.PaillierPublicKey(pk.n)
            self.priv = paillier.PaillierPrivateKey(self.pub, sk.p, sk.q)
        else:
            self.pub, self.priv = paillier.generate_paillier_keypair(n_length=bits)

    def version(self) -> str:
        from importlib.metadata import version
        return version("phe")

    def op(self, name: str, inp: Inputs) -> Op | None:
        P, pub, priv = self.paillier, self.pub, self.priv
        n, n2 = pub.n, pub.nsquare
        b = len(inp.ms)

        def dec_check(out, idx=None):
            want = _expect(name, inp)
            for i in idx if idx is not None else _sample(len(out)):
                if priv.raw_decrypt(out[i]) != want(i) % n:
                    raise PeerCheckError(f"phe {name}: wrong result at {i}")

        if name == "keygen":
            return (lambda: P.generate_paillier_keypair(n_length=self.bits)), (lambda kp: None)
        if name == "encrypt":
            return (lambda: [pub.raw_encrypt(m) for m in inp.ms]), dec_check
        cs = self._once(("cs", tuple(inp.ms)), lambda: [pub.raw_encrypt(m) for m in inp.ms])
        cs2 = cs[::-1]
        proto = P.EncryptedNumber(pub, cs[0])
        if name == "decrypt":
            def check(out):
                if out != inp.ms:
                    raise PeerCheckError("phe decrypt: wrong result")
            return (lambda: [priv.raw_decrypt(c) for c in cs]), check
        if name == "add":
            return (lambda: [proto._raw_add(a, c) for a, c in zip(cs, cs2)]), dec_check
        if name == "add_plain":  # phe's own path for E(a) + m: raw_encrypt(m, r=1), then _raw_add
            return (lambda: [proto._raw_add(c, pub.raw_encrypt(m, 1)) for c, m in zip(cs, inp.ms)]), dec_check
        if name == "mul":
            nums = [P.EncryptedNumber(pub, c) for c in cs]
            return (lambda: [x._raw_mul(k % n) for x, k in zip(nums, inp.ks)]), dec_check
        if name == "sum":
            def total():
                acc = cs[0]
                for c in cs[1:]:
                    acc = proto._raw_add(acc, c)
                return [acc]
            return total, (lambda out: dec_check(out, [0]))
        if name == "matvec":
            nums = [P.EncryptedNumber(pub, c) for c in cs]

            def matvec():
                out = []
                for j in range(inp.cols):
                    acc = nums[0]._raw_mul(inp.X[0][j] % n)
                    for i in range(1, b):
                        acc = proto._raw_add(acc, nums[i]._raw_mul(inp.X[i][j] % n))
                    out.append(acc)
                return out
            return matvec, (lambda out: dec_check(out, list(range(inp.cols))))
        if name == "rerandomize":
            def rerand():
                out = []
                for c in cs:
                    x = P.EncryptedNumber(pub, c)
                    x.obfuscate()
                    out.append(x.ciphertext(be_secure=False))
                return out

            def check(out):
                if any(a == c for a, c in zip(out, cs)):
                    raise PeerCheckError("phe rerandomize: a ciphertext did not change")
                dec_check(out)
            return rerand, check
        return None


class FateUtilsPeer(Peer):
    name = "fate_utils"

    def __init__(self, bits: int, keys: Any = None):
        super().__init__(bits)
        try:
            from fate_utils import paillier
        except ImportError as e:
            raise PeerUnavailable("fate_utils is not installed (pip install fate_utils==0.1.0; "
                                  "wheels for Python <= 3.11 only)") from e
        self.fu = paillier
        self.sk, self.pk, self.coder = paillier.keygen(bits)
        from accel.integrations._fate_wire import unpack_ints
        self.n = unpack_ints(self.pk.__getstate__(), 3)[0]
        self.label = "fate_utils 0.1.0 (Rust), 1 core"

    def version(self) -> str:
        from importlib.metadata import version
        return version("fate_utils")

    def _vec(self, xs):
        return self.coder.encode_i64_vec(np.asarray(xs, dtype=np.int64))

    def _dec(self, ev) -> list[int]:
        # the raw plaintexts mod n, read from the PlaintextVector's state: decode_i64 would wrap
        # the 64-bit-and-wider results of add, mul, sum and matvec
        from accel.integrations._fate_wire import unpack_fixedpoint_vector
        values, _ = unpack_fixedpoint_vector(self.sk.decrypt_to_encoded(ev).__getstate__())
        return [v % self.n for v in values]

    def op(self, name: str, inp: Inputs) -> Op | None:
        pk, fu = self.pk, self.fu
        b = len(inp.ms)

        def check(out, count=None):
            got = self._dec(out)
            want = _expect(name, inp)
            for i in _sample(len(got)) if count is None else range(count):
                if got[i] != want(i) % self.n:
                    raise PeerCheckError(f"fate_utils {name}: wrong result at {i}")

        if name == "keygen":
            return (lambda: fu.keygen(self.bits)), (lambda kp: None)
        enc_ms = self._vec(inp.ms)
        if name == "encrypt":
            return (lambda: pk.encrypt_encoded(enc_ms, True)), check
        key = tuple(inp.ms)
        ev = self._once(("ev", key), lambda: pk.encrypt_encoded(enc_ms, True))
        if name == "decrypt":
            def dcheck(out):
                if [int(v) for v in self.coder.decode_i64_vec(out)] != inp.ms:
                    raise PeerCheckError("fate_utils decrypt: wrong result")
            return (lambda: self.sk.decrypt_to_encoded(ev)), dcheck
        if name == "add":
            if ("ev2", key) not in self._memo:
                self._memo[("ev2", key)] = pk.encrypt_encoded(self._vec(inp.ms[::-1]), True)
            ev2 = self._memo[("ev2", key)]
            return (lambda: ev.add(pk, ev2)), check
        if name == "add_plain":  # the stock FATE evaluator's plaintext add: E(m) unobfuscated, then add
            return (lambda: ev.add(pk, pk.encrypt_encoded(enc_ms, False))), check
        if name == "mul":
            ks = self._vec(inp.ks)
            return (lambda: ev.mul(pk, ks)), check
        if name == "sum":
            return (lambda: ev.intervals_sum_with_step(pk, [(0, b)], 1)), (lambda out: check(out, 1))
        if name == "matvec":  # X^T c: FATE's rmatmul (its CoordinatedLR gradient)
            XT = self._vec(np.asarray(inp.X, dtype=np.int64).T.ravel())
            return ((lambda: ev.rmatmul(pk, XT, [b, 1], [inp.cols, b])),
                    (lambda out: check(out, inp.cols)))
        return None  # no rerandomisation in fate_utils' API


class HeuPeer(Peer):
    name = "heu"

    def __init__(self, bits: int, keys: Any = None):
        super().__init__(bits)
        try:
            from heu import numpy as hnp
            from heu import phe
        except ImportError as e:
            raise PeerUnavailable("SecretFlow HEU is not installed (pip install sf-heu; wheels for "
                                  "Python <= 3.11 only)") from e
        self.hnp, self.phe = hnp, phe
        self.kit = hnp.setup(phe.SchemaType.ZPaillier, bits)
        self.encoder = phe.BigintEncoder(phe.SchemaType.ZPaillier)
        self.label = "HEU ZPaillier (DJN + fixed-base), its thread pool"

    def version(self) -> str:
        from importlib.metadata import version
        return version("sf-heu")

    def _pt(self, xs):
        return self.kit.array(np.asarray(xs, dtype=object), self.encoder)

    def _dec(self, ct) -> list[int]:
        return [int(v) for v in np.asarray(self.kit.decryptor().decrypt(ct).to_numpy(self.encoder)).ravel()]

    def op(self, name: str, inp: Inputs) -> Op | None:
        kit, ev_ = self.kit, self.kit.evaluator()
        b = len(inp.ms)

        def check(out, count=None):
            got = self._dec(out)
            want = _expect(name, inp)
            for i in _sample(len(got)) if count is None else range(count):
                if got[i] != want(i):
                    raise PeerCheckError(f"heu {name}: wrong result at {i}")

        if name == "keygen":
            return (lambda: self.hnp.setup(self.phe.SchemaType.ZPaillier, self.bits)), (lambda kp: None)
        pt = self._pt(inp.ms)
        if name == "encrypt":
            return (lambda: kit.encryptor().encrypt(pt)), check
        key = tuple(inp.ms)
        ct = self._once(("ct", key), lambda: kit.encryptor().encrypt(pt))
        if name == "decrypt":
            def dcheck(out):
                if [int(v) for v in np.asarray(out.to_numpy(self.encoder)).ravel()] != inp.ms:
                    raise PeerCheckError("heu decrypt: wrong result")
            return (lambda: kit.decryptor().decrypt(ct)), dcheck
        if name == "add":
            if ("ct2", key) not in self._memo:
                self._memo[("ct2", key)] = kit.encryptor().encrypt(self._pt(inp.ms[::-1]))
            ct2 = self._memo[("ct2", key)]
            return (lambda: ev_.add(ct, ct2)), check
        if name == "add_plain":
            return (lambda: ev_.add(ct, pt)), check
        if name == "mul":
            kt = self._pt(inp.ks)
            return (lambda: ev_.mul(ct, kt)), check
        if name == "sum":
            def scheck(out):
                if int(str(kit.decryptor().decrypt(out))) != sum(inp.ms):
                    raise PeerCheckError("heu sum: wrong result")
            return (lambda: ev_.sum(ct)), scheck
        if name == "matvec":
            Xt = self._pt(inp.X)  # HEU takes the 1-D ciphertext vector as a row: c^T X
            return (lambda: ev_.matmul(ct, Xt)), (lambda out: check(out, inp.cols))
        return None


PEERS: dict[str, type[Peer]] = {"phe": PhePeer, "fate_utils": FateUtilsPeer, "heu": HeuPeer}


def load(name: str, bits: int, keys: Any = None) -> Peer:
    """The peer ``name`` set up at ``bits``; PeerUnavailable (with why) when it cannot run here."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    return PEERS[name](bits, keys)
