"""he-accel's gRPC offload service: key registry, batch compute with dynamic batching,
health, reflection and Prometheus metrics (:mod:`accel.service.server`), and its clients
(:mod:`accel.service.client`). ``he-accel serve`` runs it; ``get_backend("remote")`` uses it.
"""

# One module, one name: this folder is the package accel.service (pyproject maps it in a wheel and
# an editable install, accel/_checkout.py in a plain checkout). Imported as a top-level `service`
# too, from a checkout's root, every module would load twice and its exception classes would stop matching each other's.
if __name__ != "accel.service":
    raise ImportError(f"import this package as accel.service, not {__name__}")
