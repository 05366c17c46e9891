"""he-accel's gRPC offload service (key registry, batch ops, metrics).

The package is reserved here so the distribution layout is fixed; the service itself is
built on top of :mod:`accel` and lands with its own issue.
"""
