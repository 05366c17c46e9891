"""he-accel benchmarks: throughput of every backend and peer, measured side by side."""

# One module, one name: this folder is the package accel.bench (pyproject maps it in a wheel and
# an editable install, accel/_checkout.py in a plain checkout). Imported as a top-level `bench`
# too, from a checkout's root, every module would load twice, its state duplicated.
if __name__ != "accel.bench":
    raise ImportError(f"import this package as accel.bench, not {__name__}")
