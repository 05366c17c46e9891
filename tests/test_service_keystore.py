"""The persistent key store (issue 16): private keys sealed with AES-GCM under a KEK, a restarted
service serving the same keys (also after kill -9), the remote backend re-uploading a key the
service lost, and worker processes dying with a killed server."""
from __future__ import annotations

import os
import signal
import sqlite3
import time

import pytest

from accel import generate_keypair, get_backend
from accel.backends.cpu import CpuBackend
from accel.packing import blob_to_ints, ints_to_blob
from accel.bench.service_demo import running_server, wait_healthy
from accel.service.client import HeAccelClient
from accel.service.keys import KeyRegistry
from accel.service.keystore import SqliteKeyStore, load_kek, open_key_store, parse_kek
from accel.service.server import HeAccelServer, ServerConfig

from .oracle import Oracle

KEK = bytes(range(32))


@pytest.fixture(scope="module")
def key():
    return generate_keypair(512, allow_insecure=True)


def test_private_keys_are_sealed_at_rest(tmp_path, key):
    pk, sk = key
    path = str(tmp_path / "keys.db")
    reg = KeyRegistry(min_bits=512, store=SqliteKeyStore(path, KEK))
    reg.import_private(pk.to_bytes(), sk.p.to_bytes(32, "big"), sk.q.to_bytes(32, "big"), "alice")
    reg.register_public(pk.to_bytes(), "bob")
    reg.store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in (sk.p, sk.q):
        for order in ("big", "little"):
            assert secret.to_bytes(32, order) not in raw
    again = KeyRegistry(min_bits=512, store=SqliteKeyStore(path, KEK))
    rec, got = again.private(pk.fingerprint, "alice")
    assert got == sk and rec.registrants == {"alice", "bob"}
    assert [r.key_id for r in again.visible("bob")] == [pk.fingerprint]
    again.store.close()
    wrong = SqliteKeyStore(path, bytes(32))
    with pytest.raises(ValueError, match="does not open under this key-encryption key"):
        wrong.load()
    wrong.close()
    db = sqlite3.connect(path)                       # a sealed key moved onto another owner fails
    db.execute("UPDATE keys SET owner = 'mallory'")
    db.commit()
    db.close()
    moved = SqliteKeyStore(path, KEK)
    with pytest.raises(ValueError, match="does not open"):
        moved.load()
    moved.close()


def test_kek_sources(tmp_path):
    assert parse_kek(KEK.hex()) == KEK and parse_kek("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=") == KEK
    with pytest.raises(ValueError, match="32 bytes"):
        parse_kek("abcd")
    assert load_kek(None, {"HEA_KEK": KEK.hex()}) == KEK
    with pytest.raises(ValueError, match="needs a key-encryption key"):
        load_kek(None, {})
    store = open_key_store(f"sqlite:{tmp_path}/k.db", env={})    # no KEK at all: one is made, 0600
    assert oct(os.stat(f"{tmp_path}/k.db.kek").st_mode & 0o777) == "0o600"
    store.close()
    assert len(load_kek(f"{tmp_path}/k.db.kek", {})) == 32


def test_a_restarted_service_serves_the_same_keys(tmp_path, key):
    pk, sk = key
    cfg = ServerConfig(address="127.0.0.1:0", min_key_bits=512, key_store=f"sqlite:{tmp_path}/keys.db",
                       tokens={"ta": "alice", "tb": "bob"})
    os.environ["HEA_KEK"] = KEK.hex()
    try:
        srv = HeAccelServer(cfg, backend=CpuBackend(workers=1)).start()
        with HeAccelClient(f"127.0.0.1:{srv.port}", token="ta") as c:
            gpk, _ = c.generate_keypair(512)
            c.import_private_key(sk)
            ct = c.encrypt(gpk, ints_to_blob([11], gpk.plaintext_width))
        srv.stop(1)
        srv = HeAccelServer(cfg, backend=CpuBackend(workers=1)).start()
        with HeAccelClient(f"127.0.0.1:{srv.port}", token="ta") as c, \
                HeAccelClient(f"127.0.0.1:{srv.port}", token="tb") as b:
            assert blob_to_ints(c.decrypt(gpk, ct), gpk.plaintext_width) == [11]
            assert c.export_private_key(pk) == sk
            assert {k.key_id for k in c.list_keys()} == {gpk.fingerprint, pk.fingerprint}
            assert b.list_keys() == []
        srv.stop(1)
    finally:
        del os.environ["HEA_KEK"]


def test_remote_backend_reuploads_a_lost_private_key(key):
    pk, sk = key
    cfg = ServerConfig(address="127.0.0.1:0", min_key_bits=512)
    srv = HeAccelServer(cfg, backend=CpuBackend(workers=1)).start()
    port = srv.port
    be = get_backend("remote", target=f"127.0.0.1:{port}", upload_private_keys=True, timeout=10)
    try:
        ct = be.raw_encrypt(pk, [3, 4])
        assert be.raw_decrypt(sk, ct) == [3, 4]
        srv.stop(0.5)                                  # an in-memory store: the key is gone
        srv = HeAccelServer(ServerConfig(address=f"127.0.0.1:{port}", min_key_bits=512),
                            backend=CpuBackend(workers=1)).start()
        assert srv.keys.counts() == (0, 0)
        assert be.raw_decrypt(sk, ct) == [3, 4]        # uploaded again, then decrypted there
        assert srv.keys.counts() == (1, 1)
    finally:
        be.close()
        srv.stop(0.5)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux /proc, and 2 cores for the CPU backend to start worker processes")
def test_kill_9_restart_loses_no_key_and_leaves_no_workers(tmp_path, key):
    pk, sk = key
    store = ["--key-store", f"sqlite:{tmp_path}/keys.db", "--kek-file", str(tmp_path / "kek"),
             "--min-key-bits", "512", "--backend", "cpu"]
    (tmp_path / "kek").write_text(KEK.hex())
    os.chmod(tmp_path / "kek", 0o600)
    with running_server(*store, env={"HEA_TOKENS": "alice=ta"}) as (proc, port, _):
        wait_healthy(f"127.0.0.1:{port}")
        with HeAccelClient(f"127.0.0.1:{port}", token="ta") as c:
            c.import_private_key(sk)
            ms = list(range(40))                       # large enough to start the worker pool
            ct = c.encrypt(pk, ints_to_blob(ms, pk.plaintext_width), "crt")
        workers = _descendants(proc.pid)
        assert len(workers) >= 2                      # the forkserver and its workers
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)]
    with running_server(*store, env={"HEA_TOKENS": "alice=ta"}) as (proc, port, _):
        wait_healthy(f"127.0.0.1:{port}")
        with HeAccelClient(f"127.0.0.1:{port}", token="ta") as c:
            assert blob_to_ints(c.decrypt(pk, ct), pk.plaintext_width) == ms
        assert Oracle.for_key(sk).dec_all(blob_to_ints(ct, pk.ciphertext_width)) == ms
