"""Packed vs unpacked encryption: effective values per second (accel.packed).

The same float values go through (a) one Paillier ciphertext per value (``FixedPointCodec``
encoding, ``raw_encrypt``) and (b) :class:`accel.packed.PackedCodec`, as many values per
ciphertext as the slots allow. Reported per stage (encrypt, add of two vectors, decrypt) as
values per second, with the packing factor and the largest decoding error of each path against
the inputs. Every result is decrypted and checked.

    python -m accel.bench.packed --bits 2048 --values 4000 --value-bits 16 --max-additions 99 \
        --backend cpu:1 --json bench/results/packed-cpu-2048.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from accel import CpuBackend, FixedPointCodec, generate_keypair, get_backend
from accel.packed import PackedCodec, PackedVector
from accel.bench.ops import git_commit as _commit

ROOT = Path(__file__).resolve().parents[1]




def _backend(spec: str):
    name, _, workers = spec.partition(":")
    if name == "cpu" and workers:
        return CpuBackend(workers=int(workers))
    return get_backend(name)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(bits: int, values: int, value_bits: int, max_additions: int, backend_spec: str, seed: int) -> dict:
    be = _backend(backend_spec)
    pk, sk = generate_keypair(bits, allow_insecure=bits < 1024)
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, values), rng.uniform(-1, 1, values)

    # (a) unpacked: one fixed-point ciphertext per value (the plain ints at one shared exponent,
    # so the add needs no alignment: the cheapest unpacked case)
    codec = FixedPointCodec(pk)
    ex, ey = codec.encode(x, exponent=-13), codec.encode(y, exponent=-13)
    cx, t_enc = _timed(lambda: be.raw_encrypt(pk, ex.encodings))
    cy = be.raw_encrypt(pk, ey.encodings)
    cs, t_add = _timed(lambda: be.raw_add(pk, cx, cy))
    ms, t_dec = _timed(lambda: be.raw_decrypt(sk, cs))
    got = codec.decode(ms, np.full(values, -13))
    unpacked_err = float(np.max(np.abs(got - (x + y))))
    assert unpacked_err < 1e-12, unpacked_err
    unpacked = {"ciphertexts": values, "encrypt_values_per_s": values / t_enc, "add_values_per_s": values / t_add,
                "decrypt_values_per_s": values / t_dec, "max_abs_error": unpacked_err}

    # (b) packed
    pc = PackedCodec(pk, value_bits=value_bits, clip=1.0, max_additions=max_additions)
    px, t_penc = _timed(lambda: pc.encrypt(x, backend=be))
    py = pc.encrypt(y, backend=be)
    ps, t_padd = _timed(lambda: px + py)
    pdec, t_pdec = _timed(lambda: ps.decrypt(sk))
    packed_err = float(np.max(np.abs(pdec - (x + y))))
    assert packed_err <= pc.step * (1 + 1e-9), (packed_err, pc.step)
    assert isinstance(ps, PackedVector)
    packed = {"ciphertexts": len(px.ciphertexts), "encrypt_values_per_s": values / t_penc,
              "add_values_per_s": values / t_padd, "decrypt_values_per_s": values / t_pdec,
              "max_abs_error": packed_err, **pc.describe()}
    return {"device": f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
            "backend": backend_spec, "key_bits": bits, "values": values, "date": datetime.date.today().isoformat(),
            "commit": _commit(), "unpacked": unpacked, "packed": packed,
            "encrypt_speedup": packed["encrypt_values_per_s"] / unpacked["encrypt_values_per_s"],
            "decrypt_speedup": packed["decrypt_values_per_s"] / unpacked["decrypt_values_per_s"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--values", type=int, default=4000)
    ap.add_argument("--value-bits", type=int, default=16)
    ap.add_argument("--max-additions", type=int, default=99)
    ap.add_argument("--backend", default="cpu:1", help="cpu:WORKERS, cpu, gpu, auto, remote")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    rec = run(a.bits, a.values, a.value_bits, a.max_additions, a.backend, a.seed)
    rec["command"] = " ".join(["python -m accel.bench.packed", *(argv if argv is not None else sys.argv[1:])])
    p, u = rec["packed"], rec["unpacked"]
    print(f"{a.bits}-bit, {a.values} values, backend {a.backend}: {p['slots_per_plaintext']} values per "
          f"ciphertext ({p['slot_bits']}-bit slots, {a.value_bits}-bit values, step {p['step']:.3g})")
    print(f"{'stage':<10}{'unpacked values/s':>20}{'packed values/s':>18}{'x':>8}")
    for stage in ("encrypt", "add", "decrypt"):
        k = f"{stage}_values_per_s"
        print(f"{stage:<10}{u[k]:>20,.1f}{p[k]:>18,.1f}{p[k] / u[k]:>8.1f}")
    print(f"max |error|: unpacked {u['max_abs_error']:.3g}, packed {p['max_abs_error']:.3g}")
    if a.json:
        Path(a.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
