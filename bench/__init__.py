"""he-accel benchmarks: throughput of every backend and peer, measured side by side."""
