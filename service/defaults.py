"""The batching defaults, written once: :class:`~accel.service.config.ServerConfig` offers them
as settings and :class:`~accel.service.batcher.DynamicBatcher` takes them when built directly.
No gRPC here (the CLI's parser imports the config without the service extra)."""
from __future__ import annotations

MAX_BATCH = 65536                 # elements per coalesced call
MAX_DELAY_MS = 2.0                # how long a batch waits for company
PREFERRED_BATCH = 512             # a batch this large skips the wait
MAX_QUEUE_ELEMENTS = 1 << 21      # queued elements before RESOURCE_EXHAUSTED
