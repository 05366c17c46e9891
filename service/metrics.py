"""Appliance metrics for Prometheus (names prefixed ``heaccel_``), on an injected registry.

Request-side: requests, ciphertexts, latency and errors by op / backend / key size; in-flight
requests. Batcher-side: executed batch sizes, requests and executions per op (their ratio is
the mean coalescing), queue depth. Backend: CPU fallbacks. Registry: keys held. Device: per-GPU
utilisation, memory, temperature, power and clocks read through NVML at scrape time (the
collector yields nothing, and raises nothing, where there is no NVML or no GPU).
"""
from __future__ import annotations

import logging
import platform
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .batcher import BatchObserver

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
                 65536, 131072, 262144)


class ServiceMetrics(BatchObserver):
    def __init__(self, registry: CollectorRegistry, *, backend_name: str):
        self.registry = registry
        self.backend_name = backend_name
        r = registry
        self.requests = Counter("heaccel_requests", "RPCs finished, by op and status code",
                                ["op", "backend", "key_bits", "code"], registry=r)
        self.ciphertexts = Counter("heaccel_ciphertexts", "numbers processed by successful RPCs",
                                   ["op", "backend", "key_bits"], registry=r)
        self.latency = Histogram("heaccel_request_latency_seconds", "RPC latency, by op",
                                 ["op", "backend", "key_bits"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("heaccel_errors", "failed RPCs by op and status code", ["op", "code"], registry=r)
        self.inflight = Gauge("heaccel_inflight_requests", "RPCs being handled", registry=r)
        self.batch_size = Histogram("heaccel_batch_size", "elements per executed backend call, by op",
                                    ["op"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Counter("heaccel_batched_requests", "requests executed by the batcher", ["op"],
                                      registry=r)
        self.batch_executions = Counter("heaccel_batch_executions", "backend calls made by the batcher", ["op"],
                                        registry=r)
        self.batch_seconds = Histogram("heaccel_batch_execution_seconds", "time of one backend call, by op",
                                       ["op"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_requests = Gauge("heaccel_queue_depth_requests", "requests waiting in the batcher", registry=r)
        self.queue_elements = Gauge("heaccel_queue_depth_elements", "elements waiting in the batcher", registry=r)
        self.build = Info("heaccel_build", "build information", registry=r)

    def set_build_info(self, **labels: str) -> None:
        self.build.info({"python": platform.python_version(), "backend": self.backend_name, **labels})

    # -- request side ----------------------------------------------------------------------
    def observe_request(self, op: str, key_bits: int | None, code: str, seconds: float, elements: int) -> None:
        bits = str(key_bits or "")
        self.requests.labels(op, self.backend_name, bits, code).inc()
        if code == "OK":
            self.latency.labels(op, self.backend_name, bits).observe(seconds)
            self.ciphertexts.labels(op, self.backend_name, bits).inc(elements)
        else:
            self.errors.labels(op, code).inc()

    # -- BatchObserver ---------------------------------------------------------------------
    def executed(self, op: str, requests: int, elements: int, seconds: float) -> None:
        self.batch_size.labels(op).observe(elements)
        self.batch_requests.labels(op).inc(requests)
        self.batch_executions.labels(op).inc()
        self.batch_seconds.labels(op).observe(seconds)

    def queue_changed(self, requests: int, elements: int) -> None:
        self.queue_requests.set(requests)
        self.queue_elements.set(elements)


class CallbackCollector(Collector):
    """Values read at scrape time from the running service (fallbacks, keys held)."""

    def __init__(self, fallbacks: Callable[[], int], keys: Callable[[], tuple[int, int]]):
        self._fallbacks = fallbacks
        self._keys = keys

    def collect(self) -> Iterable[Any]:
        c = CounterMetricFamily("heaccel_cpu_fallbacks", "GPU work rerun on the CPU (device failure, OOM, size)")
        c.add_metric([], float(self._fallbacks()))
        yield c
        total, private = self._keys()
        g = GaugeMetricFamily("heaccel_keys_held", "keys in the registry", labels=["kind"])
        g.add_metric(["public"], float(total))
        g.add_metric(["private"], float(private))
        yield g


class NvmlCollector(Collector):
    """Per-GPU gauges read through NVML at scrape time. ``nvml`` is injectable (tests)."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml
        self._ready = False
        self._failed = False

    def _init(self) -> bool:
        if self._ready:
            return True
        if self._failed:
            return False
        try:
            if self._nvml is None:
                import pynvml  # noqa: PLC0415 - optional (nvidia-ml-py)

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._ready = True
        except Exception as e:  # noqa: BLE001 - no library, no driver: no GPU metrics
            log.info("NVML unavailable, no GPU metrics: %s", e)
            self._failed = True
        return self._ready

    def collect(self) -> Iterable[Any]:
        if not self._init():
            return
        nv = self._nvml
        fams = {
            "util": GaugeMetricFamily("heaccel_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=["gpu", "name"]),
            "mem_util": GaugeMetricFamily("heaccel_gpu_memory_utilization_ratio", "memory controller busy fraction",
                                          labels=["gpu", "name"]),
            "used": GaugeMetricFamily("heaccel_gpu_memory_used_bytes", "GPU memory used", labels=["gpu", "name"]),
            "total": GaugeMetricFamily("heaccel_gpu_memory_total_bytes", "GPU memory", labels=["gpu", "name"]),
            "temp": GaugeMetricFamily("heaccel_gpu_temperature_celsius", "GPU temperature", labels=["gpu", "name"]),
            "power": GaugeMetricFamily("heaccel_gpu_power_watts", "GPU power draw", labels=["gpu", "name"]),
            "sm": GaugeMetricFamily("heaccel_gpu_sm_clock_hertz", "SM clock", labels=["gpu", "name"]),
            "memclk": GaugeMetricFamily("heaccel_gpu_memory_clock_hertz", "memory clock", labels=["gpu", "name"]),
        }
        try:
            count = nv.nvmlDeviceGetCount()
        except Exception as e:  # noqa: BLE001
            log.warning("NVML device count failed: %s", e)
            return
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                name = nv.nvmlDeviceGetName(h)
                name = name.decode() if isinstance(name, bytes) else str(name)
                labels = [str(i), name]
                util = nv.nvmlDeviceGetUtilizationRates(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                fams["util"].add_metric(labels, util.gpu / 100.0)
                fams["mem_util"].add_metric(labels, util.memory / 100.0)
                fams["used"].add_metric(labels, float(mem.used))
                fams["total"].add_metric(labels, float(mem.total))
                fams["temp"].add_metric(labels, float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
                fams["power"].add_metric(labels, nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
                fams["sm"].add_metric(labels, nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM) * 1e6)
                fams["memclk"].add_metric(labels, nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM) * 1e6)
            except Exception as e:  # noqa: BLE001 - one bad reading must not break the scrape
                log.warning("NVML read of GPU %d failed: %s", i, e)
        yield from fams.values()


def serve_metrics(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0"):
    """Start the HTTP exposition endpoint; returns (server, thread)."""
    return start_http_server(port, addr=addr, registry=registry)
