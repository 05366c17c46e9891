"""One definition of the encrypt modes (accel.backends.base): which mode a raw_encrypt call
means, the arguments that select a mode, and the service's wire names for them."""
from __future__ import annotations

import secrets

import pytest

from accel.backends.base import EncryptMode, encrypt_mode, encrypt_options
from accel.djn import DjnKey


class _Pool:
    """Precomputed obfuscators, as ObfuscatorPool hands them out (each once)."""

    def __init__(self, backend, pk, sk):
        self.backend, self.pk, self.sk = backend, pk, sk
        self.taken = 0

    def take(self, count):
        self.taken += count
        return self.backend.obfuscators(self.pk, count, private_key=self.sk)


def test_precedence():
    sk, djn, pool = object(), object(), object()
    assert encrypt_mode() is EncryptMode.TEXTBOOK
    assert encrypt_mode(private_key=sk) is EncryptMode.CRT
    assert encrypt_mode(private_key=sk, djn=djn) is EncryptMode.DJN
    assert encrypt_mode(private_key=sk, djn=djn, obfuscators=pool) is EncryptMode.POOLED
    assert encrypt_mode(obfuscate=False, private_key=sk, djn=djn, obfuscators=pool) is EncryptMode.DETERMINISTIC


@pytest.mark.parametrize("mode", list(EncryptMode))
def test_options_select_their_mode(mode):
    needs = {EncryptMode.CRT: {"private_key": object()}, EncryptMode.DJN: {"djn": object()},
             EncryptMode.POOLED: {"obfuscators": object()}}.get(mode, {})
    options = encrypt_options(mode.value, **needs)  # a mode string works as well as the enum
    assert encrypt_mode(**options) is mode
    assert options == ({"obfuscate": False} if mode is EncryptMode.DETERMINISTIC else needs)


def test_options_refuse_what_a_mode_lacks_or_does_not_take():
    with pytest.raises(ValueError, match="'crt' needs private_key="):
        encrypt_options(EncryptMode.CRT)
    with pytest.raises(ValueError, match="'djn' needs djn="):
        encrypt_options("djn", private_key=object())
    with pytest.raises(ValueError, match="'textbook' takes no djn, private_key"):
        encrypt_options("textbook", private_key=object(), djn=object())
    with pytest.raises(ValueError, match="'deterministic' takes no obfuscators"):
        encrypt_options("deterministic", obfuscators=object())
    with pytest.raises(ValueError):
        encrypt_options("fast")


def test_the_wire_names_every_mode_but_the_local_pool():
    from accel.service import client, codec, compute
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    wire = {v.number for v in pb.DESCRIPTOR.enum_types_by_name["EncryptMode"].values}
    assert set(codec.WIRE_ENCRYPT_MODES) == set(EncryptMode) - {EncryptMode.POOLED}
    assert set(codec.WIRE_ENCRYPT_MODES.values()) == wire
    # the servicer's arguments for each wire mode select that mode (what a mode needs, faked)
    assert set(compute.ENCRYPT_MODE_ARGS) == wire
    needs = type("Keys", (), {"private_of": lambda self, rec, ident: object(), "djn": lambda self, rec: object()})()
    for mode, number in codec.WIRE_ENCRYPT_MODES.items():
        assert encrypt_mode(**compute.ENCRYPT_MODE_ARGS[number](needs, None, "alice")) is mode
    # the client's public mode strings are the EncryptMode values
    assert client.ENCRYPT_MODES == {"textbook": pb.ENCRYPT_MODE_TEXTBOOK, "crt": pb.ENCRYPT_MODE_CRT,
                                    "djn": pb.ENCRYPT_MODE_DJN, "deterministic": pb.ENCRYPT_MODE_DETERMINISTIC}


@pytest.mark.parametrize("mode", list(EncryptMode))
def test_every_mode_on_every_backend(backend, key1024, mode):
    """The same mode by its options on each backend: fresh values (0, 1, n-1 among them) decrypt
    back, and the obfuscated modes never repeat a ciphertext."""
    pk, sk = key1024
    ms = [0, 1, pk.n - 1, *(secrets.randbelow(pk.n) for _ in range(4))]
    pool = _Pool(backend, pk, sk) if mode is EncryptMode.POOLED else None
    djn = DjnKey.generate(pk) if mode is EncryptMode.DJN else None
    options = encrypt_options(mode, private_key=sk if mode is EncryptMode.CRT else None, djn=djn, obfuscators=pool)
    cs = backend.raw_encrypt(pk, ms, **options)
    assert backend.raw_decrypt(sk, cs) == ms
    again = backend.raw_encrypt(pk, ms, **options)
    if mode is EncryptMode.DETERMINISTIC:
        assert again == cs == [(1 + m * pk.n) % pk.nsquare for m in ms]
    else:
        assert not set(again) & set(cs)
    if pool is not None:
        assert pool.taken == 2 * len(ms)
