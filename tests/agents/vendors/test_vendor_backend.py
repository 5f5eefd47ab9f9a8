"""VendorBackend: snapshots in, inventory / telemetry / health events out, with a deadline."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from corral.v1 import common_pb2

from agents.backends.base import BackendError, PowerLimitError
from agents.backends.vendors.backend import VendorBackend
from agents.backends.vendors.faults import FaultTable, FaultTableError, vendor_code_value
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, SnapshotError, VendorFault
from agents.backends.vendors.tool import ToolTimeout

GIB = 1024**3


def chip(index: int, **fields: object) -> ChipReading:
    base = ChipReading(
        vendor="testvendor",
        model="Widget 9000",
        index=index,
        uuid=f"W-{index}",
        bus_id=f"0000:{index + 1:02x}:00.0",
        memory_total_bytes=64 * GIB,
        memory_used_bytes=GIB,
        power_w=90.0 + index,
        power_limit_w=300.0,
        temperature_c=40.0,
        utilization_pct=5.0,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


class ScriptedReader:
    """A reader that answers the snapshots it is handed, or raises / hangs on request."""

    vendor = "testvendor"
    via = "cli"

    def __init__(self, snapshot: NodeSnapshot) -> None:
        self.snapshot = snapshot
        self.error: Exception | None = None
        self.hang = threading.Event()
        self.reads = 0
        self.closed = False

    def read(self) -> NodeSnapshot:
        self.reads += 1
        if self.hang.is_set():
            time.sleep(3)
        if self.error is not None:
            raise self.error
        return self.snapshot

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerLimitError("no watt cap on this part")

    def close(self) -> None:
        self.closed = True


def snapshot(*chips: ChipReading) -> NodeSnapshot:
    return NodeSnapshot("testvendor", "widget-smi 1.0", chips, interconnect="widgetlink", islands=((0, 1),))


def test_inventory_and_telemetry_follow_the_snapshot() -> None:
    reader = ScriptedReader(snapshot(chip(0, board_id="b0"), chip(1, board_id="b0", power_w=None), chip(2)))
    backend = VendorBackend(reader, visibility_env="WIDGET_VISIBLE_DEVICES")
    devices = {d.index: d for d in backend.inventory()}
    assert devices[0].peer_indices == [1] and devices[0].interconnect == "widgetlink"
    assert devices[2].peer_indices == [] and devices[2].interconnect == "pcie"
    assert devices[1].board_id == "b0" and devices[1].source == "cli"
    assert devices[0].memory_bytes == 64 * GIB and devices[0].visibility_env == "WIDGET_VISIBLE_DEVICES"
    assert backend.name == "testvendor-cli"
    samples = {t.index: t for t in backend.sample()}
    # A board's power is counted once: the chip without a reading reports 0 W, not a copy.
    assert samples[0].power_w == 90.0 and samples[1].power_w == 0.0
    assert samples[2].memory_used_bytes == GIB and samples[2].power_limit_w == 300.0
    assert backend.health_events() == []
    with pytest.raises(PowerLimitError):
        backend.set_power_limit(0, 200)
    backend.close()
    assert reader.closed


def test_models_are_named_as_the_catalog_names_them() -> None:
    reader = ScriptedReader(snapshot(replace(chip(0), vendor="ascend", model="Ascend 910B2C")))
    reader.vendor = "ascend"
    backend = VendorBackend(reader, visibility_env="ASCEND_RT_VISIBLE_DEVICES")
    assert backend.inventory()[0].model == "Ascend 910B"


def test_faults_are_reported_once_and_recovery_only_after_warnings() -> None:
    reader = ScriptedReader(snapshot(chip(0), chip(1)))
    backend = VendorBackend(reader, visibility_env="W")
    reader.snapshot = snapshot(chip(0, faults=(VendorFault(7, "link flapping"),)), chip(1))
    backend.sample()
    backend.sample()
    events = backend.health_events()
    assert [(e.kind, e.code, e.device_index) for e in events] == [(common_pb2.HEALTH_EVENT_KIND_VENDOR, 7, 0)]
    assert events[0].vendor == "testvendor" and "link flapping" in events[0].message
    # No table for this vendor: a warning, and its clearing is a recovery.
    assert events[0].severity == common_pb2.SEVERITY_WARNING
    reader.snapshot = snapshot(chip(0), chip(1))
    backend.sample()
    assert [e.kind for e in backend.health_events()] == [common_pb2.HEALTH_EVENT_KIND_RECOVERED]


def test_a_chip_that_disappears_is_lost_once() -> None:
    reader = ScriptedReader(snapshot(chip(0), chip(1)))
    backend = VendorBackend(reader, visibility_env="W")
    reader.snapshot = snapshot(chip(0))
    assert [t.index for t in backend.sample()] == [0]
    backend.sample()
    lost = backend.health_events()
    assert [(e.kind, e.device_index, e.severity) for e in lost] == [
        (common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST, 1, common_pb2.SEVERITY_CRITICAL)
    ]


def test_a_hung_reader_costs_one_event_not_a_stuck_agent() -> None:
    reader = ScriptedReader(snapshot(chip(0)))
    backend = VendorBackend(reader, visibility_env="W", read_timeout_s=0.3)
    reader.hang.set()
    assert backend.sample() == []
    # Had the second sample waited (with a deadline longer than the hang), it would have got
    # the hung read's answer; it answers at once instead, and starts no second read.
    backend._timeout_s = 60.0
    assert backend.sample() == []
    assert reader.reads == 2  # the first read at construction, then one hung read
    events = backend.health_events()
    assert [e.kind for e in events] == [common_pb2.HEALTH_EVENT_KIND_TOOL_ERROR]
    assert "no answer within 0.3 s" in events[0].message


@pytest.mark.parametrize(
    "error", [ToolTimeout("widget-smi did not answer within 10 s"), SnapshotError("Power: cannot read 'zz'")]
)
def test_tool_errors_and_garbage_are_one_event_each_episode(error: Exception) -> None:
    reader = ScriptedReader(snapshot(chip(0)))
    backend = VendorBackend(reader, visibility_env="W")
    reader.error = error
    assert backend.sample() == [] and backend.sample() == []
    events = backend.health_events()
    assert len(events) == 1 and str(error) in events[0].message
    reader.error = None
    assert len(backend.sample()) == 1
    reader.error = error
    backend.sample()
    assert len(backend.health_events()) == 1  # a new episode


def test_a_node_whose_devices_cannot_be_listed_does_not_start() -> None:
    reader = ScriptedReader(snapshot(chip(0)))
    reader.error = ToolTimeout("widget-smi did not answer within 10 s; killed")
    with pytest.raises(BackendError, match="cannot list devices: widget-smi did not answer"):
        VendorBackend(reader, visibility_env="W")
    reader.error = None
    reader.snapshot = snapshot()
    with pytest.raises(BackendError, match="reports no devices"):
        VendorBackend(reader, visibility_env="W")


def test_fault_tables_are_checked_and_codes_read_both_ways() -> None:
    good = {
        "vendor": "x",
        "source": "test",
        "code_format": "hex",
        "classes": {
            "Reset": {"severity": "critical", "component": "device", "blame": "hardware",
                      "early_warning": False, "action": "reset the device"},
        },
        "codes": [{"code": "80E01801", "name": "HBM error", "class": "Reset", "source": "doc"}],
        "unknown": "Reset",
    }  # fmt: skip
    table = FaultTable.parse(good, "x.yaml")
    assert table.lookup(0x80E01801).listed and table.format_code(0x80E01801) == "80E01801"
    assert not table.lookup(1).listed and table.lookup(1).critical
    with pytest.raises(FaultTableError, match=r"codes\[0\]\.class: 'Nope' is not under classes"):
        FaultTable.parse({**good, "codes": [{**good["codes"][0], "class": "Nope"}]}, "x.yaml")  # type: ignore[dict-item]
    with pytest.raises(FaultTableError, match="unknown: class 'Gone'"):
        FaultTable.parse({**good, "unknown": "Gone"}, "x.yaml")
    assert vendor_code_value("nobody", "48") == 48
    assert vendor_code_value("nobody", "0x10") == 16
    with pytest.raises(ValueError, match="not a nobody error code"):
        vendor_code_value("nobody", "zz")
