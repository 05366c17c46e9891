"""The host's share of a batch inversion (accel.gpu.launch.Launcher.inverse): one inversion mod n^2
per batch, of the top total that the device's prefix levels leave, with the conversions from and
to limbs. Timed in process CPU time (the dev machine is shared), median of rounds.

    python -m accel.bench.host_inverse [--json bench/results/host-inverse-cpu.json]

The device-side alternative (a binary extended GCD run by one group of lanes) cannot be timed
without a GPU; kernels/README.md gives the estimate it is compared with.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import time

import gmpy2

from .ops import cpu_name, git_commit

KEY_BITS = (1024, 2048, 3072, 4096)


def host_inverse_us(key_bits: int, count: int = 200, rounds: int = 5) -> float:
    """Median over rounds of the CPU time of one inversion of a random unit mod n^2 (n: a random
    odd number of key_bits bits; the cost depends on the size only), limb conversions included."""
    n = secrets.randbits(key_bits) | 1 | (1 << (key_bits - 1))
    n2 = n * n
    width = 4 * (2 * key_bits // 32)
    rows = []
    while len(rows) < count:
        x = secrets.randbelow(n2)
        if gmpy2.gcd(x, n2) == 1:
            rows.append(x.to_bytes(width, "little"))
    times = []
    for _ in range(rounds):
        t = time.process_time()
        for row in rows:
            int(gmpy2.invert(int.from_bytes(row, "little"), n2)).to_bytes(width, "little")
        times.append((time.process_time() - t) / count)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the record here")
    args = ap.parse_args(argv)
    record = {"bench": "host_inverse", "commit": git_commit(),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
              "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "clock": "process CPU time",
              "gmpy2": gmpy2.version(), "us_per_inversion": {}}
    for bits in KEY_BITS:
        us = host_inverse_us(bits)
        record["us_per_inversion"][str(bits)] = round(us, 1)
        print(f"{bits}-bit key (n^2: {2 * bits} bits): {us:.1f} us per inversion")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
