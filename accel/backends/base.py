"""The backend interface: the public raw batch API shared by every backend.

Raw means integers, not encoded values: plaintexts are ints in [0, n), ciphertexts ints in
[1, n^2). Every batch argument may be

* a list (or 1-D integer numpy array) of Python ints,
* a 2-D ``numpy.uint32`` limb array of shape (batch, width/4), least significant limb first,
* a ``bytes`` blob of batch * width bytes, little-endian fixed width,

where the width is ``public_key.plaintext_width`` for plaintexts and
``public_key.ciphertext_width`` for ciphertexts. Results come back in the form of the first
batch argument. This class does the validation, the packing and the randomness; a backend
implements the blob-level hooks (``_encrypt`` ...), so every backend behaves the same at the edges.
A backend that overrides a ``raw_*`` method checks its arguments with the same functions
(:func:`need_public`, :func:`need_private`, :func:`need_djn`, :func:`signed_ints`,
:func:`int_matrix`, :func:`same_length`).
"""
from __future__ import annotations

import abc
import enum
from math import gcd
from numbers import Integral
from typing import Any, Sequence

import numpy as np

from ..djn import DjnKey
from ..keys import PrivateKey, PublicKey, RandomSource, default_rng
from ..packing import from_blob, to_blob

Batch = Any  # list[int] | numpy.ndarray (uint32 limbs) | bytes


class KeyMismatchError(ValueError):
    """Two operands (or a key and an operand) belong to different Paillier keys."""


def need_public(pk: Any) -> PublicKey:
    if not isinstance(pk, PublicKey):
        raise TypeError(f"expected a PublicKey, got {type(pk).__name__}")
    return pk


def need_djn(pk: PublicKey, djn: Any) -> DjnKey:
    if not isinstance(djn, DjnKey):
        raise TypeError(f"djn must be a DjnKey, got {type(djn).__name__}")
    if djn.public_key != pk:
        raise KeyMismatchError("the DJN parameters belong to another public key")
    return djn


def need_private(sk: Any) -> PrivateKey:
    if not isinstance(sk, PrivateKey):
        raise TypeError(f"expected a PrivateKey, got {type(sk).__name__}")
    return sk


def signed_ints(values: Any, what: str, bound: int) -> list[int]:
    """A list of ints with |v| < bound, from a list or a 1-D integer array."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iuO":
            raise TypeError(f"{what} must be a 1-D integer array")
        values = values.tolist()
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        raise TypeError(f"{what} must be a list of ints")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise TypeError(f"{what}[{i}] must be an int, got {type(v).__name__}")
        v = int(v)
        if not -bound < v < bound:
            raise ValueError(f"{what}[{i}] is out of range: |k| must be < n")
        out.append(v)
    return out


class EncryptMode(str, enum.Enum):
    """How :meth:`Backend.raw_encrypt` obfuscates: the one list of modes. Which one a call
    means is :func:`encrypt_mode`'s to say; :func:`encrypt_options` turns a mode back into
    ``raw_encrypt`` arguments. The service's wire names the same modes (``EncryptMode`` values
    are the client's mode strings)."""

    DETERMINISTIC = "deterministic"  # (1 + m n) mod n^2 alone (obfuscate=False): obfuscated later
    POOLED = "pooled"  # precomputed r^n taken from obfuscators=, each once
    DJN = "djn"  # hs^r with short r (djn=): an extra assumption, see accel.djn
    CRT = "crt"  # r^n by CRT, the key holder's fast path (private_key=)
    TEXTBOOK = "textbook"  # r^n mod n^2 with fresh r


def encrypt_mode(*, obfuscate: bool = True, obfuscators: Any = None, djn: Any = None,
                 private_key: Any = None) -> EncryptMode:
    """The mode a ``raw_encrypt`` call asks for, in the one order of precedence every backend
    follows: no obfuscation, then precomputed obfuscators, then DJN, then CRT, else textbook."""
    if not obfuscate:
        return EncryptMode.DETERMINISTIC
    if obfuscators is not None:
        return EncryptMode.POOLED
    if djn is not None:
        return EncryptMode.DJN
    if private_key is not None:
        return EncryptMode.CRT
    return EncryptMode.TEXTBOOK


# the raw_encrypt argument each mode is selected by (deterministic: obfuscate=False; textbook: none)
_MODE_ARGUMENT = {EncryptMode.CRT: "private_key", EncryptMode.DJN: "djn", EncryptMode.POOLED: "obfuscators"}


def encrypt_options(mode: EncryptMode | str, *, private_key: Any = None, djn: Any = None,
                    obfuscators: Any = None) -> dict[str, Any]:
    """The ``raw_encrypt`` keyword arguments that select ``mode`` (the inverse of
    :func:`encrypt_mode`), given what that mode needs and nothing it does not."""
    mode = EncryptMode(mode)
    given = {"private_key": private_key, "djn": djn, "obfuscators": obfuscators}
    need = _MODE_ARGUMENT.get(mode)
    if need is not None and given[need] is None:
        raise ValueError(f"encrypt mode {mode.value!r} needs {need}=")
    extra = sorted(k for k, v in given.items() if v is not None and k != need)
    if extra:
        raise ValueError(f"encrypt mode {mode.value!r} takes no {', '.join(extra)}")
    if mode is EncryptMode.DETERMINISTIC:
        return {"obfuscate": False}
    return {need: given[need]} if need is not None else {}


def draw_units(rng: RandomSource, modulus: int, count: int, width: int) -> bytes:
    """``count`` values uniform in [1, modulus) and coprime to it, packed at ``width`` bytes."""
    out = []
    rr = rng.randrange
    for _ in range(count):
        while True:
            r = rr(1, modulus)
            if gcd(r, modulus) == 1:
                break
        out.append(r.to_bytes(width, "little"))
    return b"".join(out)


class Backend(abc.ABC):
    """Batch Paillier arithmetic. Thread-safe; holds no key material between calls."""

    name: str = "abstract"

    def __init__(self, *, rng: RandomSource | None = None):
        self.rng: RandomSource = rng or default_rng()

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release pools and devices. The backend may not be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    # -- randomness --------------------------------------------------------------------------
    def _draw_obfuscator_inputs(self, pk: PublicKey, count: int, rng, private_key):
        rng = rng or self.rng
        w = pk.plaintext_width
        if private_key is not None:
            sk = self._check_private_matches(pk, private_key)
            return draw_units(rng, sk.p, count, w), draw_units(rng, sk.q, count, w)
        return (draw_units(rng, pk.n, count, w),)

    def _draw_djn(self, djn: DjnKey, count: int, rng) -> bytes:
        """DJN exponents r packed at the plaintext width (r < 2^exponent_bits <= 2^(8 width))."""
        w = djn.public_key.plaintext_width
        return b"".join(r.to_bytes(w, "little") for r in djn.draw_exponents(count, rng or self.rng))

    @staticmethod
    def _check_private_matches(pk: PublicKey, sk: Any) -> PrivateKey:
        sk = need_private(sk)
        if sk.public_key != pk:
            raise KeyMismatchError("the private key does not belong to this public key")
        return sk

    def obfuscators(self, pk: PublicKey, count: int, *, rng: RandomSource | None = None,
                    private_key: PrivateKey | None = None, djn: DjnKey | None = None) -> bytes:
        """``count`` fresh obfuscators r^n mod n^2 as a ciphertext-width blob (each for one use).

        With the matching ``private_key`` they come from the CRT path (same distribution,
        about 3-4x cheaper). This is what :class:`accel.ObfuscatorPool` precomputes.
        """
        pk = need_public(pk)
        if count < 0:
            raise ValueError("count must be >= 0")
        if count == 0:
            return b""
        if djn is not None:
            return self._encrypt_djn(pk, need_djn(pk, djn), None, self._draw_djn(djn, count, rng))
        inputs = self._draw_obfuscator_inputs(pk, count, rng, private_key)
        if private_key is not None:
            return self._obfuscators_crt(private_key, *inputs)
        return self._obfuscators(pk, inputs[0])

    # -- the raw batch API -------------------------------------------------------------------
    def raw_encrypt(self, pk: PublicKey, ms: Batch, *, obfuscate: bool = True,
                    rng: RandomSource | None = None, obfuscators: Any = None,
                    private_key: PrivateKey | None = None, djn: DjnKey | None = None) -> Batch:
        """c_i = (1 + m_i n) r_i^n mod n^2 with a fresh r_i per value.

        ``obfuscators``: an :class:`accel.ObfuscatorPool` (or anything with ``take(count)``
        returning a ciphertext-width blob) supplying precomputed r^n, each used once.
        ``private_key``: the key holder's fast path, r^n by CRT. ``djn``: opt-in DJN fast
        encryption with hs^r (see :mod:`accel.djn` for its extra assumption). ``obfuscate=False``
        returns the deterministic (1 + m n) mod n^2: insecure on its own, for callers that
        obfuscate later.
        """
        pk = need_public(pk)
        ms_blob, packing = to_blob(ms, pk.plaintext_width, "plaintext")
        count = len(ms_blob) // pk.plaintext_width
        mode = encrypt_mode(obfuscate=obfuscate, obfuscators=obfuscators, djn=djn, private_key=private_key)
        if mode is EncryptMode.DETERMINISTIC:
            out = self._encrypt_with(pk, ms_blob, None)
        elif mode is EncryptMode.POOLED:
            out = self._encrypt_with(pk, ms_blob, obfuscators.take(count))
        elif mode is EncryptMode.DJN:
            out = self._encrypt_djn(pk, need_djn(pk, djn), ms_blob, self._draw_djn(djn, count, rng))
        elif mode is EncryptMode.CRT:
            sk = self._check_private_matches(pk, private_key)
            zp, zq = self._draw_obfuscator_inputs(pk, count, rng, sk)
            out = self._encrypt_crt(sk, ms_blob, zp, zq)
        else:
            (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
            out = self._encrypt(pk, ms_blob, rs)
        return from_blob(out, pk.ciphertext_width, packing)

    def raw_decrypt(self, sk: PrivateKey, cs: Batch) -> Batch:
        """m_i by CRT; results are plaintext ints in [0, n)."""
        sk = need_private(sk)
        pk = sk.public_key
        cs_blob, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        return from_blob(self._decrypt(sk, cs_blob), pk.plaintext_width, packing)

    def raw_add(self, pk: PublicKey, c1: Batch, c2: Batch) -> Batch:
        """E(a_i + b_i) = c1_i * c2_i mod n^2 (no re-randomisation)."""
        pk = need_public(pk)
        a, packing = to_blob(c1, pk.ciphertext_width, "ciphertext a")
        b, _ = to_blob(c2, pk.ciphertext_width, "ciphertext b")
        same_length(a, b, pk.ciphertext_width, pk.ciphertext_width)
        return from_blob(self._add(pk, a, b), pk.ciphertext_width, packing)

    def raw_add_plain(self, pk: PublicKey, cs: Batch, ms: Batch) -> Batch:
        """E(a_i + m_i) = c_i * (1 + m_i n) mod n^2, plaintexts m_i in [0, n)."""
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        m, _ = to_blob(ms, pk.plaintext_width, "plaintext")
        same_length(c, m, pk.ciphertext_width, pk.plaintext_width)
        return from_blob(self._add_plain(pk, c, m), pk.ciphertext_width, packing)

    def raw_mul(self, pk: PublicKey, cs: Batch, ks: Any) -> Batch:
        """E(a_i * k_i) = c_i^k_i mod n^2; k_i are ints with |k_i| < n, negatives allowed."""
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        k = signed_ints(ks, "scalar", pk.n)
        same_count(len(c) // pk.ciphertext_width, len(k), ("ciphertexts", "scalars"))
        return from_blob(self._mul(pk, c, k), pk.ciphertext_width, packing)

    def raw_sum(self, pk: PublicKey, cs: Batch) -> Any:
        """E(sum a_i) = prod c_i mod n^2. Returns one ciphertext: an int for int input, a
        one-row limb array or a one-number blob for packed input. The empty sum is 1 = E(0)."""
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        out = self._sum(pk, c)
        res = from_blob(out, pk.ciphertext_width, packing)
        return res[0] if isinstance(res, list) else res

    def raw_sum_groups(self, pk: PublicKey, cs: Batch, counts: Sequence[int]) -> Batch:
        """Many sums in one call: out_g = E(sum of group g) = prod of the g-th run of ``counts[g]``
        consecutive ciphertexts of ``cs`` mod n^2 (1 = E(0) for an empty group). ``counts`` are
        non-negative ints summing to the batch's length. FATE's histogram updates are such sums,
        a few ciphertexts each, for thousands of bins at once.

        This default checks every element's range (the error names its index in ``cs``), then
        sums by a pairwise tree of whole-batch :meth:`raw_add` calls, log2 of the largest group
        in all, so it runs wherever ``raw_add`` does (device kernels, the offload service)."""
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        w = pk.ciphertext_width
        sizes = group_counts(counts, len(c) // w)
        one = (1).to_bytes(w, "little")
        elements = [c[i * w:(i + 1) * w] for i in range(len(c) // w)]
        for i, e in enumerate(elements):
            if not 0 < int.from_bytes(e, "little") < pk.nsquare:
                raise ValueError(f"ciphertext[{i}] is out of range: must be in [1, n^2)")
        groups, at = [], 0
        for k in sizes:
            groups.append(elements[at:at + k])
            at += k
        while any(len(g) > 1 for g in groups):
            xs, ys = [], []
            for g in groups:
                xs.extend(g[0:len(g) - 1:2])
                ys.extend(g[1:len(g):2])
            summed = self.raw_add(pk, b"".join(xs), b"".join(ys))
            k = 0
            for gi, g in enumerate(groups):
                pairs = len(g) // 2
                groups[gi] = [summed[(k + j) * w:(k + j + 1) * w] for j in range(pairs)] + g[2 * pairs:]
                k += pairs
        return from_blob(b"".join(g[0] if g else one for g in groups), w, packing)

    def raw_matvec(self, pk: PublicKey, cs: Batch, X: Any) -> Batch:
        """out_j = prod_i c_i^X[i][j] mod n^2, i.e. E(sum_i a_i X[i][j]) = E(a^T X)_j.

        ``X`` is an integer matrix with one row per ciphertext (list of lists or a 2-D integer
        numpy array); entries may be negative with |X[i][j]| < n.
        """
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        rows = len(c) // pk.ciphertext_width
        rows_x, cols = int_matrix(X, rows, pk.n)
        if rows == 0:  # the empty sum of every column is E(0) = 1
            out = (1).to_bytes(pk.ciphertext_width, "little") * cols
        else:
            out = self._matvec(pk, c, rows_x)
        return from_blob(out, pk.ciphertext_width, packing)

    def raw_rerandomize(self, pk: PublicKey, cs: Batch, *, rng: RandomSource | None = None,
                        obfuscators: Any = None, private_key: PrivateKey | None = None) -> Batch:
        """c_i * r_i^n mod n^2 with fresh r_i: same plaintexts, unlinkable ciphertexts."""
        pk = need_public(pk)
        c, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        count = len(c) // pk.ciphertext_width
        if obfuscators is not None:
            out = self._rerandomize_with(pk, c, obfuscators.take(count))
        elif private_key is not None:
            zp, zq = self._draw_obfuscator_inputs(pk, count, rng, private_key)
            out = self._rerandomize_with(pk, c, self._obfuscators_crt(private_key, zp, zq))
        else:
            (rs,) = self._draw_obfuscator_inputs(pk, count, rng, None)
            out = self._rerandomize(pk, c, rs)
        return from_blob(out, pk.ciphertext_width, packing)

    def powmod(self, bases: Any, exps: Any, mod: int) -> list[int]:
        """[b_i^e_i mod mod]: generic batch modular exponentiation on ints (mod > 1).
        Negative exponents use the inverse of the base and fail clearly when there is none."""
        if isinstance(mod, bool) or not isinstance(mod, (int, Integral)) or int(mod) < 2:
            raise ValueError("mod must be an int >= 2")
        mod = int(mod)
        b = signed_ints(bases, "base", 1 << max(64, 2 * mod.bit_length()))
        e = signed_ints(exps, "exponent", 1 << 65536)
        same_count(len(b), len(e), ("bases", "exponents"))
        return self._powmod([x % mod for x in b], e, mod)

    # -- hooks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _encrypt(self, pk: PublicKey, ms: bytes, rs: bytes) -> bytes: ...

    @abc.abstractmethod
    def _encrypt_crt(self, sk: PrivateKey, ms: bytes, zp: bytes, zq: bytes) -> bytes: ...

    @abc.abstractmethod
    def _encrypt_with(self, pk: PublicKey, ms: bytes, obf: bytes | None) -> bytes: ...

    @abc.abstractmethod
    def _encrypt_djn(self, pk: PublicKey, djn: DjnKey, ms: bytes | None, rs: bytes) -> bytes:
        """(1 + m n) hs^r mod n^2 per element, or hs^r alone when ``ms`` is None."""

    @abc.abstractmethod
    def _obfuscators(self, pk: PublicKey, rs: bytes) -> bytes: ...

    @abc.abstractmethod
    def _obfuscators_crt(self, sk: PrivateKey, zp: bytes, zq: bytes) -> bytes: ...

    @abc.abstractmethod
    def _decrypt(self, sk: PrivateKey, cs: bytes) -> bytes: ...

    @abc.abstractmethod
    def _add(self, pk: PublicKey, a: bytes, b: bytes) -> bytes: ...

    @abc.abstractmethod
    def _add_plain(self, pk: PublicKey, cs: bytes, ms: bytes) -> bytes: ...

    @abc.abstractmethod
    def _mul(self, pk: PublicKey, cs: bytes, ks: list[int]) -> bytes: ...

    @abc.abstractmethod
    def _sum(self, pk: PublicKey, cs: bytes) -> bytes: ...

    @abc.abstractmethod
    def _matvec(self, pk: PublicKey, cs: bytes, rows_x: list[list[int]]) -> bytes: ...

    @abc.abstractmethod
    def _rerandomize(self, pk: PublicKey, cs: bytes, rs: bytes) -> bytes: ...

    @abc.abstractmethod
    def _rerandomize_with(self, pk: PublicKey, cs: bytes, obf: bytes) -> bytes: ...

    @abc.abstractmethod
    def _powmod(self, bases: list[int], exps: list[int], mod: int) -> list[int]: ...


def same_count(na: int, nb: int, names: tuple[str, str] | None = None) -> None:
    """Two batches of one op pair up element by element; ``names`` says what each holds."""
    if na != nb:
        pair = f"{na} vs {nb} elements" if names is None else f"{na} {names[0]}, {nb} {names[1]}"
        raise ValueError(f"length mismatch: {pair}")


def group_counts(counts: Any, total: int) -> list[int]:
    """Group sizes as ints: each a non-negative integer, together ``total`` elements."""
    if isinstance(counts, (str, bytes, dict)) or not isinstance(counts, (Sequence, np.ndarray)):
        raise TypeError(f"counts must be a sequence of ints, got {type(counts).__name__}")
    sizes = []
    for i, k in enumerate(counts.tolist() if isinstance(counts, np.ndarray) else counts):
        if type(k) is not int and (isinstance(k, bool) or not isinstance(k, Integral)) or k < 0:
            raise ValueError(f"counts[{i}] must be a non-negative int, got {k!r}")
        sizes.append(int(k))
    if sum(sizes) != total:
        raise ValueError(f"length mismatch: the counts add up to {sum(sizes)}, the batch holds {total} elements")
    return sizes


def same_length(a: bytes, b: bytes, wa: int, wb: int) -> None:
    same_count(len(a) // wa, len(b) // wb)


def int_matrix(X: Any, rows: int, n: int) -> tuple[list[list[int]], int]:
    cols = None
    if isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {X.shape}")
        if X.dtype.kind not in "iuO":
            raise TypeError(f"X must hold integers, got dtype {X.dtype} (encode floats first)")
        cols = X.shape[1]
        X = X.tolist()
    if isinstance(X, (str, bytes)) or not isinstance(X, Sequence):
        raise TypeError("X must be a 2-D integer matrix (list of rows or numpy array)")
    if len(X) != rows:
        raise ValueError(f"X has {len(X)} rows but there are {rows} ciphertexts")
    out = []
    for i, row in enumerate(X):
        r = signed_ints(list(row) if not isinstance(row, list) else row, f"X[{i}]", n)
        if cols is None:
            cols = len(r)
        elif len(r) != cols:
            raise ValueError(f"X row {i} has {len(r)} columns, expected {cols}")
        out.append(r)
    return out, cols or 0


