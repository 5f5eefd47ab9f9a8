"""One DeviceBackend for every non-NVIDIA vendor: snapshots in, the agent's messages out.

A vendor reader (library or CLI, see the vendor modules) produces a `NodeSnapshot`; this class
turns it into inventory, telemetry and health events:

- inventory is the first snapshot, with models named as the catalog names them;
- each sample is a fresh read, done on a worker thread with a deadline, so a vendor tool or
  library call that hangs costs one TOOL_ERROR health event, never a stuck agent;
- faults are edge-triggered: a code is reported when it appears on a chip, classified through
  the vendor's table (faults/<vendor>.yaml) for the severity it is sent with; a chip that stops
  answering is DEVICE_LOST once; when every non-critical fault of a chip has cleared the chip is
  reported RECOVERED (never after a critical one: those need an operator).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from corral.v1 import common_pb2

from agents.backends.base import BackendError, DeviceBackend, NodeInfo, host_node_info
from agents.backends.vendors.faults import SEVERITY_BY_NAME, describe_code
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, SnapshotError, VendorReader
from agents.backends.vendors.tool import ToolError
from agents.timeutil import timestamp

log = logging.getLogger("corral.agent.vendor")

DEFAULT_READ_TIMEOUT_S = 30.0


def catalog_model_name(vendor: str, model: str) -> str:
    """The catalog's name for what a tool printed ("910B2C" -> "Ascend 910B"); unchanged when
    the catalog does not know it, so an unlisted part still registers under its own name."""
    from scheduler.catalog.catalog import DeviceCatalog

    found = DeviceCatalog.load().get(vendor, model)
    return found.model if found is not None else model


class VendorBackend(DeviceBackend):
    """`reader` is read once at construction (BackendError if that fails: a node whose devices
    cannot be listed must not register) and again on every sample."""

    def __init__(
        self,
        reader: VendorReader,
        *,
        visibility_env: str,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        simulated: bool = False,
        source: str | None = None,
        node_info: Callable[[], NodeInfo] = host_node_info,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.name = f"{reader.vendor}-{reader.via}"
        self.visibility_env = visibility_env
        self.source = source or reader.via
        self._simulated = simulated
        self._timeout_s = read_timeout_s
        self._node_info = node_info
        self._lock = threading.Lock()
        self._pending: Future[NodeSnapshot] | None = None
        self._reported: dict[int, set[int]] = {}  # fault codes already sent, per chip
        self._critical_seen: set[int] = set()
        self._lost: set[int] = set()
        self._tool_failing = False
        try:
            first = self._read()
        except (ToolError, SnapshotError, BackendError) as e:
            raise BackendError(f"{reader.vendor} ({reader.via}): cannot list devices: {e}") from e
        if not first.devices:
            raise BackendError(f"{reader.vendor} ({reader.via}): the {first.source} reports no devices")
        self.snapshot = first
        self._devices = [self._device(c, first) for c in first.devices]
        self._limits = {c.index: c.power_limit_w for c in first.devices}
        self._observe_faults(first)  # faults standing at start are reported with the first sample

    # -- reading with a deadline -----------------------------------------------------------

    def _read(self) -> NodeSnapshot:
        """One read on a worker thread; a read still running from last time is waited for
        rather than started twice (a hung tool must not pile up threads)."""
        with self._lock:
            if self._tool_failing and self._pending is not None and not self._pending.done():
                # Known hung: answer at once rather than wait out another deadline per sample.
                raise ToolError(
                    f"{self.reader.vendor} {self.reader.via}: the last read has still not returned"
                )
            if self._pending is None or self._pending.done():
                future: Future[NodeSnapshot] = Future()
                self._pending = future

                def work() -> None:
                    try:
                        future.set_result(self.reader.read())
                    except BaseException as e:  # handed to the waiting caller
                        future.set_exception(e)

                threading.Thread(target=work, name=f"corral-{self.name}-read", daemon=True).start()
            pending = self._pending
        try:
            return pending.result(timeout=self._timeout_s)
        except FutureTimeout:
            raise ToolError(
                f"{self.reader.vendor} {self.reader.via} read gave no answer within {self._timeout_s:g} s"
            ) from None

    # -- DeviceBackend ---------------------------------------------------------------------

    def node_info(self) -> NodeInfo:
        return self._node_info()

    def inventory(self) -> list[common_pb2.Device]:
        return list(self._devices)

    def sample(self) -> list[common_pb2.DeviceTelemetry]:
        try:
            snap = self._read()
        except (ToolError, SnapshotError, BackendError) as e:
            self._tool_failed(str(e))
            return []
        if self._tool_failing:
            self._tool_failing = False
            log.warning("%s answers again", self.name)
        self.snapshot = snap
        self._observe_faults(snap)
        return [self._telemetry(c) for c in snap.devices if not c.lost and c.index not in self._lost]

    def set_power_limit(self, index: int, watts: float) -> None:
        self.reader.set_power_limit(index, watts)
        self._limits[index] = float(watts)

    def get_power_limit(self, index: int) -> float:
        chip = self.snapshot.by_index().get(index)
        if chip is not None and chip.power_limit_w is not None:
            return chip.power_limit_w
        return self._limits.get(index) or 0.0

    def close(self) -> None:
        self.reader.close()

    # -- conversions -------------------------------------------------------------------------

    def _device(self, chip: ChipReading, snap: NodeSnapshot) -> common_pb2.Device:
        peers = next((sorted(set(i) - {chip.index}) for i in snap.islands if chip.index in i), [])
        return common_pb2.Device(
            index=chip.index,
            vendor=chip.vendor,
            model=catalog_model_name(chip.vendor, chip.model),
            uuid=chip.uuid,
            memory_bytes=chip.memory_total_bytes or 0,
            power_limit_min_w=chip.power_limit_min_w or 0.0,
            power_limit_max_w=chip.power_limit_max_w or 0.0,
            power_limit_default_w=chip.power_limit_default_w or chip.power_limit_w or 0.0,
            power_limit_settable=chip.power_limit_settable,
            bus_id=chip.bus_id,
            peer_indices=peers,
            interconnect=snap.interconnect if peers else "pcie",
            simulated=self._simulated,
            visibility_env=self.visibility_env,
            board_id=chip.board_id,
            source=self.source,
        )

    @staticmethod
    def _telemetry(chip: ChipReading) -> common_pb2.DeviceTelemetry:
        return common_pb2.DeviceTelemetry(
            index=chip.index,
            power_w=chip.power_w or 0.0,
            temperature_c=chip.temperature_c or 0.0,
            utilization_pct=chip.utilization_pct or 0.0,
            memory_used_bytes=chip.memory_used_bytes or 0,
            power_limit_w=chip.power_limit_w or 0.0,
            ecc_corrected_total=chip.ecc_corrected_total or 0,
            ecc_uncorrected_total=chip.ecc_uncorrected_total or 0,
        )

    # -- health --------------------------------------------------------------------------

    def _event(
        self, index: int, kind: common_pb2.HealthEventKind.ValueType, severity: common_pb2.Severity.ValueType,
        message: str, code: int = 0,
    ) -> common_pb2.HealthEvent:  # fmt: skip
        return common_pb2.HealthEvent(
            device_index=index, kind=kind, code=code, severity=severity, message=message,
            vendor=self.reader.vendor, observed_at=timestamp(),
        )  # fmt: skip

    def _tool_failed(self, why: str) -> None:
        if self._tool_failing:
            return
        self._tool_failing = True
        log.error("%s: %s", self.name, why)
        first = self._devices[0].index if self._devices else 0
        self._emit_health(
            self._event(first, common_pb2.HEALTH_EVENT_KIND_TOOL_ERROR, common_pb2.SEVERITY_WARNING, why)
        )

    def _observe_faults(self, snap: NodeSnapshot) -> None:
        seen = snap.by_index()
        for device in self._devices:
            index = device.index
            chip = seen.get(index)
            if chip is None or chip.lost:
                if index not in self._lost:
                    self._lost.add(index)
                    self._emit_health(
                        self._event(
                            index,
                            common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST,
                            common_pb2.SEVERITY_CRITICAL,
                            f"{device.model} {index} no longer answers {snap.source} (fell off the bus?)",
                        )
                    )
                continue
            self._lost.discard(index)
            self._diff_faults(index, chip)

    def _diff_faults(self, index: int, chip: ChipReading) -> None:
        codes = {f.code for f in chip.faults}
        reported = self._reported.setdefault(index, set())
        for fault in chip.faults:
            if fault.code in reported:
                continue
            reported.add(fault.code)
            severity, label = describe_code(self.reader.vendor, fault.code)
            if severity == "critical":
                self._critical_seen.add(index)
            text = f": {fault.text}" if fault.text and fault.text not in label else ""
            self._emit_health(
                self._event(
                    index,
                    common_pb2.HEALTH_EVENT_KIND_VENDOR,
                    SEVERITY_BY_NAME[severity],
                    f"{label}{text}",
                    code=fault.code,
                )
            )
        cleared = reported - codes
        if not cleared:
            return
        reported -= cleared
        if not reported and index not in self._critical_seen:
            gone = ", ".join(map(str, sorted(cleared)))
            message = f"{chip.vendor} reports no fault any more (cleared: {gone})"
            self._emit_health(
                self._event(index, common_pb2.HEALTH_EVENT_KIND_RECOVERED, common_pb2.SEVERITY_INFO, message)
            )
