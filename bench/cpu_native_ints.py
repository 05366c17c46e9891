"""The two steps behind the native cheap ops on lists, measured one by one in process CPU time:

1. converting an int to the engine's form and back, per element: ``int.to_bytes`` +
   ``int.from_bytes`` (the ctypes engine's packing) against the extension's digits <-> limbs
   (``roundtrip``: one call per int, so it includes a Python call each way);
2. the sum's reduction per element on packed blobs: a division (``hea_product``) against a
   Montgomery reduction (``hea_product_redc``).

    OPENBLAS_NUM_THREADS=1 python -m accel.bench.cpu_native_ints [--bits 1024 2048 3072] [--batch 1024]

Prints microseconds per element, the median of 9 runs, one line per key size.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import secrets
import statistics
import time


def _median_us(fn, count: int, runs: int = 9) -> float:
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times) / count * 1e6


def main(argv=None) -> int:
    from accel.backends import _native, _native_ints

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", nargs="+", type=int, default=[1024, 2048, 3072])
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args(argv)
    ext, lib = _native_ints.load(), _native.load()
    print(f"load {os.getloadavg()[0]:.2f}; us per element, median of 9 runs of {args.batch}")
    for bits in args.bits:
        n = secrets.randbits(bits - 2) | (1 << (bits - 1)) | 1
        n2 = n * n
        cw = -(-n2.bit_length() // 32) * 4
        cs = [secrets.randbelow(n2 - 1) + 1 for _ in range(args.batch)]
        blob = b"".join(c.to_bytes(cw, "little") for c in cs)
        fb = int.from_bytes
        bytes_way = _median_us(lambda: [fb(c.to_bytes(cw, "little"), "little") for c in cs], args.batch)
        ext_way = _median_us(lambda: [ext.roundtrip(c, cw) for c in cs], args.batch)
        out = ctypes.create_string_buffer(cw)
        mod = n2.to_bytes(cw, "little")
        division = _median_us(lambda: lib.hea_product(mod, cw, blob, args.batch, cw, out), args.batch)
        redc = _median_us(lambda: lib.hea_product_redc(mod, cw, blob, args.batch, cw, out), args.batch)
        print(f"{bits} bits: int <-> bytes {bytes_way:.3f}, int <-> limbs (extension) {ext_way:.3f} | "
              f"sum by division {division:.3f}, by Montgomery {redc:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
