"""accel.gpu.launch: one typed launcher per kernel family, the only code that launches a kernel,
and GpuBackend's device-resident overrides made by one rule."""
from __future__ import annotations

import ast
import inspect
import secrets
from pathlib import Path

import numpy as np
import pytest

from accel.backends.base import Backend
from accel.backends.gpu import GpuBackend
from accel.gpu import errors as E
from accel.gpu.build import KERNEL_FILES
from accel.gpu.emulator import EmulatedRuntime
from accel.gpu.launch import LAUNCHERS, DeviceKey, Launcher
from accel.gpu.limbs import key_class, pub_rec
from accel.packing import ints_to_limbs, limbs_to_ints

from .conftest import keypair, recording_runtime

ACCEL = Path(__file__).resolve().parents[1] / "accel"
DEVICE_RESIDENT = ("raw_encrypt", "raw_decrypt", "raw_add", "raw_add_plain", "raw_mul", "raw_sum", "raw_matvec",
                   "raw_rerandomize")


def test_every_kernel_family_has_exactly_one_launcher():
    assert set(LAUNCHERS) == set(KERNEL_FILES), set(KERNEL_FILES) ^ set(LAUNCHERS)
    for family, method in LAUNCHERS.items():
        assert callable(getattr(Launcher, method)), family
        assert family in getattr(Launcher, method).kernel_families


def test_only_the_launcher_calls_a_runtime_launch():
    """No code in the library launches a kernel except Launcher.run (no bypass, one error path)."""
    callers = []
    for path in sorted(ACCEL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "launch":
                callers.append(path.relative_to(ACCEL).as_posix())
    assert callers and set(callers) == {"gpu/launch.py"}, callers


def test_every_backend_launch_is_counted_by_the_launcher(inline_backend):
    """stats["launches"] is only counted in Launcher.run: it equals what the device was asked to run
    (table and partial-product kernels without an error word included)."""
    from accel.djn import DjnKey

    rt = recording_runtime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend)
    pk, sk = keypair(1024)
    ms = [0, 1, pk.n - 1]
    cs = gpu.raw_encrypt(pk, ms, djn=DjnKey.generate(pk))
    assert gpu.raw_decrypt(sk, gpu.raw_matvec(pk, cs, [[1, -1], [2, 0], [3, 4]])) == [
        (ms[0] + 2 * ms[1] + 3 * ms[2]) % pk.n, (-ms[0] + 4 * ms[2]) % pk.n]
    dev = gpu.to_device(cs, pk.ciphertext_width)
    assert limbs_to_ints(gpu.to_host(gpu.raw_decrypt(sk, gpu.raw_sum(pk, dev)))) == [sum(ms) % pk.n]
    assert gpu.powmod([3, 5], [7, -1], pk.n) == [pow(3, 7, pk.n), pow(5, -1, pk.n)]
    families = {k.rsplit("_", 1)[0] for k, _ in rt.launched}
    assert {"djn_table", "matvec_partial", "he_product", "powmod"} <= families
    assert gpu.stats["launches"] == len(rt.launched) and gpu.stats["cpu_fallbacks"] == 0


def _public_key_on(rt, pk):
    lp = key_class(pk)
    return DeviceKey(lp, rt.upload(pub_rec(pk, lp)), pk.plaintext_width // 4, pk.ciphertext_width // 4, pk.nsquare)


def test_a_launcher_alone_against_python_ints():
    pk, _ = keypair(256)
    rt = EmulatedRuntime()
    launcher = Launcher()
    key = _public_key_on(rt, pk)
    n2 = pk.nsquare
    a = [1, n2 - 1, secrets.randbelow(n2 - 1) + 1]
    b = [n2 - 1, n2 - 1, secrets.randbelow(n2 - 1) + 1]
    cw = pk.ciphertext_width // 4
    out = launcher.he_add(rt, key, rt.upload(ints_to_limbs(a, cw)), rt.upload(ints_to_limbs(b, cw)))
    assert limbs_to_ints(rt.download(out)) == [x * y % n2 for x, y in zip(a, b)]
    ks = [0, 1, -1, secrets.randbits(100) - (1 << 99)]
    cs = [secrets.randbelow(n2 - 1) + 1 for _ in ks]
    cs[0] = pk.n + 1  # invertible; the others are with overwhelming probability
    out = launcher.he_mul_scalar(rt, key, rt.upload(ints_to_limbs(cs, cw)), ks)
    assert limbs_to_ints(rt.download(out)) == [pow(c, k, n2) for c, k in zip(cs, ks)]
    assert launcher.stats["launches"] == 2


def test_run_reports_the_kernels_error_at_the_callers_index_and_name():
    pk, _ = keypair(256)
    rt = EmulatedRuntime()
    key = _public_key_on(rt, pk)
    cw = pk.ciphertext_width // 4
    good, bad = rt.upload(ints_to_limbs([2, 3, 4], cw)), rt.upload(ints_to_limbs([2, pk.nsquare, 4], cw))
    with pytest.raises(ValueError, match=r"^obfuscator\[11\] is out of range"):
        Launcher().he_add(rt, key, good, bad, offset=10, names={E.SECOND_RANGE: "obfuscator"})
    with pytest.raises(ValueError, match=r"^ciphertext b\[1\]"):
        Launcher().he_add(rt, key, good, bad)


def test_a_kernel_without_an_error_word_gets_none_appended():
    seen = []

    class Recording(EmulatedRuntime):
        def launch(self, kernel, threads, args):
            seen.append((kernel, threads, len(args)))
            return super().launch(kernel, threads, args)

    pk, _ = keypair(256)
    rt = Recording()
    key = _public_key_on(rt, pk)
    table = Launcher().djn_table(rt, key, pk.n + 1, 64)  # 16 windows of 4 bits
    assert table.shape == (16, 16, 2 * key.lp)
    assert seen == [(f"djn_table_{key.lp}", 16, 4)]  # table, hs, windows, key: no error word


def test_device_resident_overrides_are_made_by_one_rule_and_keep_the_base_signature():
    for name in DEVICE_RESIDENT:
        method = getattr(GpuBackend, name)
        assert method.__wrapped__ is getattr(Backend, name), name
        assert inspect.signature(method) == inspect.signature(getattr(Backend, name)), name
        assert method.__qualname__ == f"GpuBackend.{name}"


def test_mixed_host_and_device_operands_are_refused_either_way(key1024, emulated_gpu_backend):
    gpu = emulated_gpu_backend
    pk, _ = key1024
    cs = gpu.raw_encrypt(pk, [1, 2])
    dev = gpu.to_device(cs, pk.ciphertext_width)
    for a, b in ((dev, cs), (cs, dev)):
        with pytest.raises(TypeError, match="both"):
            gpu.raw_add(pk, a, b)
        with pytest.raises(TypeError, match="both"):
            gpu.raw_add(pk, a, c2=b)
    assert isinstance(gpu.raw_add(pk, cs, c2=cs), list)
    assert np.array_equal(gpu.to_host(gpu.raw_add(pk, dev, c2=dev)), ints_to_limbs(gpu.raw_add(pk, cs, cs),
                                                                                   pk.ciphertext_width // 4))
