"""Appliance metrics: NVML gauges (through an injected fake), absence without NVML, the
injected registry, and the batcher/request counters."""
from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accel.service.metrics import CallbackCollector, NvmlCollector, ServiceMetrics


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, broken_index: int | None = None):
        self.broken_index = broken_index
        self.inits = 0

    def nvmlInit(self):
        self.inits += 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        if i == self.broken_index:
            raise RuntimeError("GPU is lost")
        return i

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=(h + 1) * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetPowerUsage(self, h):
        return 312_500  # milliwatts

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619


def samples(registry):
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_nvml_gauges_per_gpu():
    reg = CollectorRegistry()
    fake = FakeNvml()
    reg.register(NvmlCollector(fake))
    m = samples(reg)
    lab = (("gpu", "1"), ("name", "NVIDIA H100 80GB HBM3"))
    assert m[("heaccel_gpu_utilization_ratio", lab)] == 0.87
    assert m[("heaccel_gpu_memory_used_bytes", lab)] == 2 * 2**30
    assert m[("heaccel_gpu_memory_total_bytes", lab)] == 80 * 2**30
    assert m[("heaccel_gpu_temperature_celsius", lab)] == 61
    assert m[("heaccel_gpu_power_watts", lab)] == 312.5
    assert m[("heaccel_gpu_sm_clock_hertz", lab)] == 1980e6
    assert m[("heaccel_gpu_memory_clock_hertz", lab)] == 2619e6
    samples(reg)
    assert fake.inits == 1                      # initialised once, read at every scrape


def test_one_broken_gpu_does_not_break_the_scrape():
    reg = CollectorRegistry()
    reg.register(NvmlCollector(FakeNvml(broken_index=0)))
    m = samples(reg)
    gpus = {dict(lab)["gpu"] for (name, lab) in m if name == "heaccel_gpu_power_watts"}
    assert gpus == {"1"}


def test_no_nvml_means_no_gpu_metrics_and_no_error():
    class NoDriver:
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    reg = CollectorRegistry()
    reg.register(NvmlCollector(NoDriver()))
    assert not any(name.startswith("heaccel_gpu") for name, _ in samples(reg))
    assert not any(name.startswith("heaccel_gpu") for name, _ in samples(reg))


def test_service_metrics_on_an_injected_registry():
    reg = CollectorRegistry()
    m = ServiceMetrics(reg, backend_name="cpu")
    m.set_build_info(version="0.1.0")
    reg.register(CallbackCollector(lambda: 3, lambda: (5, 2)))
    m.observe_request("encrypt", 2048, "OK", 0.01, 100)
    m.observe_request("encrypt", 2048, "INVALID_ARGUMENT", 0.001, 0)
    for _ in range(4):
        m.executed("encrypt", requests=10, elements=1000, seconds=0.2)
    m.queue_changed(7, 700)
    s = samples(reg)
    assert s[("heaccel_requests_total", (("backend", "cpu"), ("code", "OK"), ("key_bits", "2048"),
                                         ("op", "encrypt")))] == 1
    assert s[("heaccel_ciphertexts_total", (("backend", "cpu"), ("key_bits", "2048"), ("op", "encrypt")))] == 100
    assert s[("heaccel_errors_total", (("code", "INVALID_ARGUMENT"), ("op", "encrypt")))] == 1
    reqs = s[("heaccel_batched_requests_total", (("op", "encrypt"),))]
    execs = s[("heaccel_batch_executions_total", (("op", "encrypt"),))]
    assert reqs / execs == 10                    # the mean coalescing
    assert s[("heaccel_batch_size_sum", (("op", "encrypt"),))] / execs == 1000
    assert s[("heaccel_queue_depth_requests", ())] == 7
    assert s[("heaccel_cpu_fallbacks_total", ())] == 3
    assert s[("heaccel_keys_held", (("kind", "private"),))] == 2
    build = [dict(lab) for (name, lab), v in s.items() if name == "heaccel_build_info" and v == 1]
    assert len(build) == 1 and build[0]["version"] == "0.1.0" and build[0]["backend"] == "cpu"


def test_gpu_fallbacks_reach_the_metrics(service_server):
    """The server reads the backend's fallback counter at scrape time."""
    class FakeBackend:
        stats = {"cpu_fallbacks": 4}

    real = service_server.backend
    try:
        service_server.backend = FakeBackend()
        s = samples(service_server.registry)
    finally:
        service_server.backend = real
    assert s[("heaccel_cpu_fallbacks_total", ())] == 4
