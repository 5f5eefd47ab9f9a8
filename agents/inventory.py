"""What `corral agent inventory` prints: the devices the agent would register, as plain data.

The same shape whether the devices were read live (any backend) or parsed from a saved tool
output (`--parse VENDOR FILE`, what a user attaches to a support request):
`{"vendor", "source", "interconnect", "islands", "devices": [...]}`, each device with at least
vendor, model (as the catalog names it), index, memory_total_mib, power_w and power_limit_w
(None where the tool shows none), temperature_c and healthy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from corral.v1 import common_pb2

from agents.backends.base import DeviceBackend
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot


def snapshot_report(snap: NodeSnapshot) -> dict[str, Any]:
    from agents.backends.vendors.backend import catalog_model_name

    devices = [replace(c, model=catalog_model_name(c.vendor, c.model)).summary() for c in snap.devices]
    return {
        "vendor": snap.vendor,
        "source": snap.source,
        "interconnect": snap.interconnect or None,
        "islands": [list(i) for i in snap.islands],
        "devices": devices,
    }


def backend_report(backend: DeviceBackend) -> dict[str, Any]:
    from agents.backends.vendors.backend import VendorBackend

    if isinstance(backend, VendorBackend):
        backend.sample()  # a fresh reading, as the agent's first heartbeat would carry
        report = snapshot_report(backend.snapshot)
        report["backend"] = backend.name
        return report
    inventory = backend.inventory()
    samples = {t.index: t for t in backend.sample()}
    islands = sorted({tuple(sorted([d.index, *d.peer_indices])) for d in inventory if d.peer_indices})
    return {
        "backend": backend.name,
        "vendor": inventory[0].vendor if inventory else None,
        "source": backend.name,
        "interconnect": next((d.interconnect for d in inventory if d.peer_indices), None),
        "islands": [list(i) for i in islands],
        "devices": [_device_summary(d, samples.get(d.index)) for d in inventory],
    }


def _device_summary(d: common_pb2.Device, t: common_pb2.DeviceTelemetry | None) -> dict[str, Any]:
    """A registered device in the snapshot's JSON shape (ChipReading.summary), so every backend
    prints the same fields."""
    limit = (t.power_limit_w if t and t.power_limit_w else d.power_limit_default_w) or None
    chip = ChipReading(
        vendor=d.vendor,
        model=d.model,
        index=d.index,
        uuid=d.uuid,
        bus_id=d.bus_id,
        board_id=d.board_id,
        memory_total_bytes=d.memory_bytes,
        memory_used_bytes=t.memory_used_bytes if t else None,
        power_w=t.power_w if t else None,
        power_limit_w=limit,
        power_limit_settable=d.power_limit_settable,
        temperature_c=t.temperature_c if t else None,
        utilization_pct=t.utilization_pct if t else None,
        # A device that answers a sample is healthy as far as the agent alone can tell; the
        # control plane's view (faults, history) is `corral node NAME`.
        healthy=t is not None,
    )
    return chip.summary()
