"""he-accel's gRPC offload service: key registry, batch compute with dynamic batching,
health, reflection and Prometheus metrics (:mod:`service.server`), and its clients
(:mod:`service.client`). ``he-accel serve`` runs it; ``get_backend("remote")`` uses it.
"""
