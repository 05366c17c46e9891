"""he-accel's gRPC offload service: key registry, batch compute with dynamic batching,
health, reflection and Prometheus metrics (:mod:`accel.service.server`), its clients
(:mod:`accel.service.client`) and the remote backend on them (:mod:`accel.service.remote`,
``get_backend("remote")``, registered through an entry point). ``he-accel serve`` runs it.
It sits on top of the library: nothing in the core imports it (pyproject ``[tool.importlinter]``).
"""

# One module, one name: this folder is the package accel.service (pyproject maps it in a wheel and
# an editable install, accel/_checkout.py in a plain checkout). Imported as a top-level `service`
# too, from a checkout's root, every module would load twice and its exception classes would stop matching each other's.
if __name__ != "accel.service":
    raise ImportError(f"import this package as accel.service, not {__name__}")
