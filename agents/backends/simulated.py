"""A simulated node for machines without accelerators and for fault injection.

Behaviour follows a profile (`agents/profiles/*.yaml`): power moves between idle and load
as the executor reports which devices run workers, honours power caps, heats the device
through a first-order thermal model, and faults can be injected. Every device it reports
carries `simulated=True` so it is never mistaken for hardware.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from corral.v1 import common_pb2

from agents.backends.base import BackendError, DeviceBackend, NodeInfo, PowerLimitError
from agents.backends.vendors.faults import SEVERITY_BY_NAME, describe_code, vendor_code_value
from agents.backends.xid import XID_FELL_OFF_BUS, xid_kind, xid_message, xid_severity
from agents.faults import parse_fault
from agents.health_watch import Thresholds
from agents.profiles import GIB, NodeProfile, load_profile
from agents.timeutil import timestamp

log = logging.getLogger("corral.agent.simulated")

THERMAL_FAULT_EXCESS_C = 5.0  # how far above the slowdown threshold an injected thermal fault sits
# Enough at once for the telemetry watch's default rate rule (10 within an hour) to warn.
ECC_SBE_FAULT_ERRORS = 20


@dataclass
class _DeviceState:
    limit_w: float
    temperature_c: float
    energy_j: float = 0.0
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    remap_pending: int = 0
    remap_failed: bool = False
    lost: bool = False
    hung: bool = False
    hot: bool = False
    vendor_codes: set[int] = field(default_factory=set)  # injected vendor error codes standing


class SimulatedBackend(DeviceBackend):
    name = "simulated"

    def __init__(
        self,
        profile: NodeProfile,
        *,
        node_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.profile = profile
        self.node_name = node_name or profile.node.default_name
        self.visibility_env = profile.devices.visibility
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._busy: frozenset[int] = frozenset()
        spec = profile.devices
        idle_temp = spec.thermal.ambient_c + spec.thermal.c_per_w * spec.power.idle_w
        self._devices = [
            _DeviceState(limit_w=spec.power.default_w, temperature_c=idle_temp) for _ in range(spec.count)
        ]
        self._last = clock()

    @classmethod
    def from_path(cls, path: Path, *, node_name: str | None = None) -> SimulatedBackend:
        return cls(load_profile(path), node_name=node_name)

    def node_info(self) -> NodeInfo:
        node = self.profile.node
        return NodeInfo(self.node_name, node.cpu_count, int(node.memory_gib * GIB))

    def inventory(self) -> list[common_pb2.Device]:
        spec = self.profile.devices
        return [
            common_pb2.Device(
                index=i,
                vendor=spec.vendor,
                model=spec.model,
                uuid=f"SIM-{uuid.uuid5(uuid.NAMESPACE_URL, f'corral-sim/{self.node_name}/{i}')}",
                memory_bytes=spec.memory_bytes,
                power_limit_min_w=spec.power.min_w,
                power_limit_max_w=spec.power.max_w,
                power_limit_default_w=spec.power.default_w,
                power_limit_settable=spec.power.settable,
                bus_id=f"0000:{i + 1:02x}:00.0",
                peer_indices=spec.peers(i),
                interconnect=spec.interconnect.name,
                simulated=True,
                visibility_env=spec.visibility,
            )
            for i in range(spec.count)
        ]

    def health_thresholds(self) -> dict[int, Thresholds]:
        thermal = self.profile.devices.thermal
        limits = Thresholds(slowdown_c=thermal.slowdown_c, shutdown_c=thermal.shutdown_c)
        return dict.fromkeys(range(self.profile.devices.count), limits)

    def set_busy(self, indices: Collection[int]) -> None:
        with self._lock:
            self._advance()
            self._busy = frozenset(indices)

    # -- the models ----------------------------------------------------------------------

    def _power_util(self, index: int, state: _DeviceState) -> tuple[float, float, bool]:
        """(power W, utilisation %, capped) at this instant."""
        power = self.profile.devices.power
        busy = index in self._busy
        target = power.load_w if busy and not state.hung else power.idle_w
        jitter = 1.0 + self._rng.uniform(-power.noise_frac, power.noise_frac)
        util = 100.0 if state.hung else (min(100.0, 97.0 * jitter) if busy else 0.0)
        return min(target * jitter, state.limit_w), util, target > state.limit_w

    def _advance(self) -> None:
        """Integrate temperature and energy up to now; callers hold the lock."""
        now = self._clock()
        dt, self._last = max(0.0, now - self._last), now
        if dt == 0.0:
            return
        thermal = self.profile.devices.thermal
        alpha = 1.0 - math.exp(-dt / thermal.time_constant_s)
        for index, state in enumerate(self._devices):
            if state.lost:
                continue
            power, _, _ = self._power_util(index, state)
            steady = thermal.ambient_c + thermal.c_per_w * power
            if state.hot:
                steady = max(steady, thermal.slowdown_c + THERMAL_FAULT_EXCESS_C)
            state.temperature_c += (steady - state.temperature_c) * alpha
            state.energy_j += power * dt

    def sample(self) -> list[common_pb2.DeviceTelemetry]:
        spec = self.profile.devices
        out = []
        with self._lock:
            self._advance()
            for index, state in enumerate(self._devices):
                if state.lost:
                    continue
                power, util, capped = self._power_util(index, state)
                busy = index in self._busy
                reasons = []
                if not busy and not state.hung:
                    reasons.append(common_pb2.THROTTLE_REASON_GPU_IDLE)
                if busy and capped:
                    reasons.append(common_pb2.THROTTLE_REASON_SW_POWER_CAP)
                if state.hot or state.temperature_c >= spec.thermal.slowdown_c:
                    reasons += [common_pb2.THROTTLE_REASON_SW_THERMAL, common_pb2.THROTTLE_REASON_HW_THERMAL]
                out.append(
                    common_pb2.DeviceTelemetry(
                        index=index,
                        power_w=round(power, 3),
                        temperature_c=round(state.temperature_c, 1),
                        utilization_pct=round(util, 1),
                        memory_used_bytes=int(spec.memory_bytes * spec.busy_memory_frac) if busy else 0,
                        power_limit_w=state.limit_w,
                        throttle_reasons=reasons,
                        ecc_corrected_total=state.ecc_corrected,
                        ecc_uncorrected_total=state.ecc_uncorrected,
                        energy_j=round(state.energy_j, 3),
                        remapped_rows_pending=state.remap_pending,
                        row_remap_failed=state.remap_failed,
                    )
                )
        return out

    # -- power limits --------------------------------------------------------------------

    def _state(self, index: int) -> _DeviceState:
        if not 0 <= index < len(self._devices):
            raise BackendError(f"no device {index} on this node (devices 0-{len(self._devices) - 1})")
        return self._devices[index]

    def set_power_limit(self, index: int, watts: float) -> None:
        power = self.profile.devices.power
        with self._lock:
            state = self._state(index)
            if not power.settable:
                raise PowerLimitError(
                    f"the power limit of {self.profile.devices.model} devices is not settable"
                    f" (profile {self.profile.name})"
                )
            if not power.min_w <= watts <= power.max_w:
                raise PowerLimitError(
                    f"power limit {watts:g} W for device {index} is outside its range"
                    f" {power.min_w:g}-{power.max_w:g} W"
                )
            if state.lost:
                raise BackendError(f"device {index} is lost (fell off the bus)")
            self._advance()
            state.limit_w = float(watts)
        log.info("device %d power limit set to %g W (simulated)", index, watts)

    def get_power_limit(self, index: int) -> float:
        with self._lock:
            return self._state(index).limit_w

    def vendor_codes(self, index: int) -> set[int]:
        """The vendor error codes injected on a device and not cleared yet."""
        with self._lock:
            return set(self._state(index).vendor_codes)

    # -- faults --------------------------------------------------------------------------

    def inject_fault(self, index: int, fault: str) -> None:
        parsed = parse_fault(fault)
        kind, code = parsed.kind, parsed.code
        if kind == "vendor":
            try:
                code = vendor_code_value(self.profile.devices.vendor, parsed.vendor_code)
            except ValueError as e:
                raise BackendError(str(e)) from None
        with self._lock:
            state = self._state(index)
            if state.lost and kind != "clear":
                raise BackendError(f"device {index} is lost; only 'clear' brings it back")
            self._advance()
            event = self._apply_fault(index, state, kind, code)
        if event is None:
            log.warning("device %d: injected %s (it shows in telemetry)", index, fault)
            return
        log.warning("device %d: injected %s: %s", index, fault, event.message)
        self._emit_health(event)

    def _apply_fault(
        self, index: int, state: _DeviceState, kind: str, code: int
    ) -> common_pb2.HealthEvent | None:
        """Change the device; the event to send directly, or None for faults that act only
        through telemetry (the agent's telemetry watch reports them, as it does on hardware)."""
        slowdown = self.profile.devices.thermal.slowdown_c
        if kind == "thermal":
            state.hot = True
            state.temperature_c = max(state.temperature_c, slowdown + THERMAL_FAULT_EXCESS_C)
            return None
        if kind == "ecc-sbe":
            state.ecc_corrected += ECC_SBE_FAULT_ERRORS
            return None
        if kind == "remap-pending":
            state.remap_pending += 1
            return None
        if kind == "remap-failed":
            state.remap_failed = True
            return None
        event = common_pb2.HealthEvent(
            device_index=index, vendor=self.profile.devices.vendor, injected=True, observed_at=timestamp()
        )
        if kind == "fell-off-bus" or (kind == "xid" and code == XID_FELL_OFF_BUS):
            state.lost = True
            event.kind, event.code = common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST, XID_FELL_OFF_BUS
            event.severity, event.message = common_pb2.SEVERITY_CRITICAL, xid_message(XID_FELL_OFF_BUS)
        elif kind == "xid":
            event.kind, event.code, event.severity = xid_kind(code), code, xid_severity(code)
            event.message = xid_message(code)
        elif kind == "ecc-dbe":
            state.ecc_uncorrected += 1
            event.kind, event.severity = common_pb2.HEALTH_EVENT_KIND_ECC_DBE, common_pb2.SEVERITY_CRITICAL
            event.message = "double-bit (uncorrectable) ECC error"
        elif kind == "vendor":
            state.vendor_codes.add(code)
            severity, event.message = describe_code(self.profile.devices.vendor, code)
            event.kind, event.code, event.severity = (
                common_pb2.HEALTH_EVENT_KIND_VENDOR,
                code,
                SEVERITY_BY_NAME[severity],
            )
        elif kind == "hang":
            state.hung = True
            event.kind, event.severity = common_pb2.HEALTH_EVENT_KIND_HANG, common_pb2.SEVERITY_WARNING
            event.message = "device reports 100% utilisation at idle power: no progress"
        else:  # clear; a GPU reset also applies the pending remaps, and the repair ends a failure
            state.lost = state.hung = state.hot = state.remap_failed = False
            state.remap_pending = 0
            state.vendor_codes.clear()
            event.kind, event.severity = common_pb2.HEALTH_EVENT_KIND_RECOVERED, common_pb2.SEVERITY_INFO
            event.message = "injected faults cleared"
        return event
