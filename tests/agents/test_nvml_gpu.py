"""The real NVML backend on a real GPU; skipped wherever NVML does not initialise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.backends.base import PowerLimitError
from agents.backends.nvml import NvmlBackend, nvml_device_count

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(nvml_device_count() == 0, reason="no NVML device (nvmlInit failed or found none)"),
]


@pytest.fixture
def nvml() -> Iterator[NvmlBackend]:
    backend = NvmlBackend()
    yield backend
    backend.close()


def test_inventory(nvml: NvmlBackend) -> None:
    devices = nvml.inventory()
    assert len(devices) == nvml_device_count() >= 1
    for i, d in enumerate(devices):
        assert d.index == i and d.vendor == "nvidia" and not d.simulated
        assert d.model and d.uuid.startswith(("GPU-", "MIG-")) and d.memory_bytes > 1024**3
        assert d.bus_id.count(":") == 2 and d.visibility_env == "CUDA_VISIBLE_DEVICES"
        if d.power_limit_settable:
            assert 0 < d.power_limit_min_w <= d.power_limit_default_w <= d.power_limit_max_w < 2000


def test_sample(nvml: NvmlBackend) -> None:
    samples = nvml.sample()
    assert [t.index for t in samples] == list(range(len(nvml.inventory())))
    for t in samples:
        assert 1 < t.power_w < 2000, "power not converted from mW"
        assert 0 < t.temperature_c < 120 and 0 <= t.utilization_pct <= 100
        assert 1 < t.power_limit_w < 2000
        assert t.memory_used_bytes > 0


def test_set_power_limit_and_restore(nvml: NvmlBackend) -> None:
    device = nvml.inventory()[0]
    if not device.power_limit_settable:
        pytest.skip("device 0 does not expose power-limit constraints")
    before = nvml.get_power_limit(0)
    target = max(device.power_limit_min_w, round(device.power_limit_max_w * 0.6))
    try:
        try:
            nvml.set_power_limit(0, target)
        except PowerLimitError as e:
            if "needs root" in str(e):
                pytest.skip(str(e))
            raise
        assert nvml.get_power_limit(0) == pytest.approx(target, abs=1)
        assert nvml.sample()[0].power_limit_w == pytest.approx(target, abs=1)
        with pytest.raises(PowerLimitError, match="outside its range"):
            nvml.set_power_limit(0, device.power_limit_min_w - 1)
    finally:
        nvml.set_power_limit(0, before)
    assert nvml.get_power_limit(0) == pytest.approx(before, abs=1)


def test_events_thread_stops_on_close() -> None:
    backend = NvmlBackend()
    backend.close()
    backend.close()  # twice is fine
