"""add and sum per core at 2048 bits: the native engine on packed blobs and on lists of ints,
against fate_utils, interleaved in one process and timed in process CPU time (a loaded machine).

    OPENBLAS_NUM_THREADS=1 python -m accel.bench.cpu_native_blobs

Shows what the list form's conversions (int <-> bytes, about 1 us per element) cost against a
form that stays packed between ops. Prints one line per round.
"""
import time, os
from accel import CpuBackend, generate_keypair
from accel.bench.peers import load, Inputs
keys = generate_keypair(2048); pk, sk = keys
cw = pk.ciphertext_width; K = 1024
inp = Inputs.random(K)
be = CpuBackend(workers=1)
cs = be.raw_encrypt(pk, inp.ms, private_key=sk); cs2 = be.raw_encrypt(pk, inp.ms[::-1], private_key=sk)
A = b"".join(c.to_bytes(cw, "little") for c in cs); B = b"".join(c.to_bytes(cw, "little") for c in cs2)
fate = load("fate_utils", 2048, keys)
fadd, _ = fate.op("add", inp); fsum, _ = fate.op("sum", inp)
def rate(f):
    ts = []
    for _ in range(7):
        t = time.process_time(); f(); ts.append(time.process_time() - t)
    ts.sort(); return K / ts[len(ts)//2]
print("load", os.getloadavg()[0])
for rnd in range(3):
    print("add: native blobs %.0f  native lists %.0f  fate_utils %.0f | sum: native blobs %.0f lists %.0f fate_utils %.0f" % (
        rate(lambda: be.raw_add(pk, A, B)), rate(lambda: be.raw_add(pk, cs, cs2)), rate(fadd),
        rate(lambda: be.raw_sum(pk, A)), rate(lambda: be.raw_sum(pk, cs)), rate(fsum)))
print("load", os.getloadavg()[0])
