import pickle
import time

import pytest

from accel import ObfuscatorPool

from .oracle import Oracle


def _values(blob, w):
    return [blob[i : i + w] for i in range(0, len(blob), w)]


def test_values_are_never_reused_and_counted(pool_backend, key1024):
    pk, _ = key1024
    with ObfuscatorPool(pk, pool_backend, capacity=16, start=False) as pool:
        assert pool.fill() == 16 and len(pool) == 16
        a = pool.take(10)
        b = pool.take(10)  # 6 from the pool, 4 computed on demand
        vals = _values(a + b, pk.ciphertext_width)
        assert len(set(vals)) == 20
        s = pool.stats()
        assert s["produced"] == 16 and s["served_from_pool"] == 16 and s["computed_on_demand"] == 4
        assert s["available"] == 0


def test_background_refill_reaches_capacity(inline_backend, key1024):
    pk, _ = key1024
    with ObfuscatorPool(pk, inline_backend, capacity=8, low_water=4, refill_batch=4) as pool:
        deadline = time.monotonic() + 30
        while len(pool) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool) == 8
        pool.take(6)  # drops below low water: the thread tops up again
        while len(pool) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool) == 8 and pool.stats()["produced"] >= 12


@pytest.mark.parametrize("crt", [False, True])
def test_pooled_encryption_is_correct(inline_backend, key1024, crt):
    pk, sk = key1024
    o = Oracle.for_key(sk)
    with ObfuscatorPool(pk, inline_backend, capacity=8, private_key=sk if crt else None, start=False) as pool:
        pool.fill()
        ms = [0, 1, pk.n - 1, 12345]
        cs = inline_backend.raw_encrypt(pk, ms, obfuscators=pool)
        assert o.dec_all(cs) == ms and len(set(cs)) == 4
        rr = inline_backend.raw_rerandomize(pk, cs, obfuscators=pool)
        assert o.dec_all(rr) == ms and set(rr).isdisjoint(cs)


def test_pool_refuses_foreign_key_and_pickling(inline_backend, key1024, key2048):
    with pytest.raises(ValueError):
        ObfuscatorPool(key1024[0], inline_backend, private_key=key2048[1], start=False)
    pool = ObfuscatorPool(key1024[0], inline_backend, capacity=2, start=False)
    with pytest.raises(TypeError):
        pickle.dumps(pool)
    pool.fill()
    pool.close()
    assert len(pool) == 0
