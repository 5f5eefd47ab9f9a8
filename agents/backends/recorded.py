"""A simulated node that speaks its vendor's language: recorded tool output, real parsers.

The profile names a saved summary table of the vendor's tool (agents/profiles/recorded/). Its
inventory is that table read by the vendor module's real parser; every sample is the simulated
state (power, temperature, load, injected vendor error codes) rendered in the tool's own layout
and read back through the vendor's real CLI reader. So `corral up`'s Ascend and Cambricon nodes
exercise the parsers, and `corral sim inject --fault vendor:80E01801` reaches the control plane
the way an Ascend error code does on hardware: in `npu-smi` output, parsed and classified.

What a tool does not print (energy, throttle reasons, ECC totals) comes from the simulator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from types import ModuleType

from corral.v1 import common_pb2

from agents.backends.simulated import SimulatedBackend
from agents.backends.vendors.backend import VendorBackend
from agents.backends.vendors.faults import fault_table
from agents.backends.vendors.registry import vendor_module
from agents.backends.vendors.snapshot import ChipReading, NodeSnapshot, VendorFault
from agents.health_watch import Thresholds
from agents.profiles import PROFILE_DIR, NodeProfile, ProfileError

RECORDED_DIR = PROFILE_DIR / "recorded"
# One rendered state serves every command of one read (a CLI read runs several).
_STATE_TTL_S = 0.2
# The parser reports these itself, from the rendered output; the simulator's copy would double them.
_PARSED_KINDS = frozenset({common_pb2.HEALTH_EVENT_KIND_VENDOR, common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST})


def recorded_base(profile: NodeProfile) -> tuple[ModuleType, NodeSnapshot]:
    """The vendor module and the parsed recorded table of a profile with `devices.recorded`."""
    spec = profile.devices
    assert spec.recorded is not None
    path = RECORDED_DIR / spec.recorded
    try:
        module = vendor_module(spec.vendor)
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(
            f"profile {profile.name}: devices.recorded: cannot read {path}: {e.strerror}"
        ) from e
    except ValueError as e:
        raise ProfileError(f"profile {profile.name}: devices.vendor: {e}") from e
    base = module.parse_summary(text)
    if len(base.devices) != spec.count:
        raise ProfileError(
            f"profile {profile.name}: devices.count is {spec.count} but {spec.recorded} lists"
            f" {len(base.devices)} devices; make them agree"
        )
    return module, base


class _SimulatedTool:
    """A ToolRunner that answers the vendor's commands from the simulator's current state."""

    def __init__(self, sim: SimulatedBackend, module: ModuleType, base: NodeSnapshot) -> None:
        self.sim, self.module, self.base = sim, module, base
        self._lock = threading.Lock()
        self._state: tuple[float, NodeSnapshot] | None = None
        # The simulator's sample behind the last rendered state, by position: what the tool
        # does not print is taken from it rather than from a second sample.
        self.samples: dict[int, common_pb2.DeviceTelemetry] = {}

    def run(self, argv: Sequence[str]) -> str:
        text: str = self.module.render_tool_output(argv, self.state())
        return text

    def state(self) -> NodeSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._state is None or now - self._state[0] > _STATE_TTL_S:
                self._state = (now, self._render_state())
            return self._state[1]

    def _render_state(self) -> NodeSnapshot:
        samples = self.samples = {t.index: t for t in self.sim.sample()}
        table = fault_table(self.base.vendor)
        # The simulator models each chip; a board's reading is the sum of its chips, shown on
        # the chip the recorded table showed it on.
        board_w: dict[str, float] = {}
        board_limit_w: dict[str, float] = {}
        for position, chip in enumerate(self.base.devices):
            if chip.board_id and position in samples:
                board_w[chip.board_id] = board_w.get(chip.board_id, 0.0) + samples[position].power_w
                board_limit_w[chip.board_id] = (
                    board_limit_w.get(chip.board_id, 0.0) + samples[position].power_limit_w
                )
        chips: list[ChipReading] = []
        for position, chip in enumerate(self.base.devices):
            t = samples.get(position)
            if t is None:  # fell off the bus: the tool no longer lists it
                continue
            codes = sorted(self.sim.vendor_codes(position))
            critical = table is not None and any(table.lookup(c).critical for c in codes)
            power = board_w.get(chip.board_id, t.power_w)
            limit = board_limit_w.get(chip.board_id, t.power_limit_w)
            chips.append(
                replace(
                    chip,
                    power_w=None if chip.power_w is None else round(power, 1),
                    power_limit_w=None if chip.power_limit_w is None else round(limit),
                    temperature_c=round(t.temperature_c),
                    utilization_pct=round(t.utilization_pct),
                    memory_used_bytes=t.memory_used_bytes,
                    faults=tuple(VendorFault(c) for c in codes),
                    healthy=not critical,
                )
            )
        return replace(self.base, devices=tuple(chips))


class RecordedSimBackend(VendorBackend):
    """Simulated devices (physics, power caps, fault injection) seen through the vendor's tool."""

    def __init__(self, profile: NodeProfile, *, node_name: str | None = None) -> None:
        module, base = recorded_base(profile)
        self.sim = SimulatedBackend(profile, node_name=node_name)
        self.profile = profile
        self._indices = [chip.index for chip in base.devices]  # by simulator position
        self._positions = {index: position for position, index in enumerate(self._indices)}
        self._tool = _SimulatedTool(self.sim, module, base)
        reader = module.CliReader(self._tool)
        super().__init__(
            reader,
            visibility_env=self.sim.visibility_env,
            simulated=True,
            source="recorded",
            node_info=self.sim.node_info,
        )
        self.name = f"recorded-{profile.devices.vendor}"
        self.sim.set_health_listener(self._from_simulator)

    def _position(self, index: int) -> int:
        return self._positions.get(index, index)

    def _index(self, position: int) -> int:
        return self._indices[position] if 0 <= position < len(self._indices) else position

    def inventory(self) -> list[common_pb2.Device]:
        """The parsed devices, with what the simulator stands in for: the library's power-limit
        range (the tool does not print it) and the profile's interconnect islands."""
        simulated = {d.index: d for d in self.sim.inventory()}
        out = []
        for device in super().inventory():
            sim = simulated[self._position(device.index)]
            peers = [self._index(p) for p in sim.peer_indices]
            d = common_pb2.Device()
            d.CopyFrom(device)
            d.power_limit_min_w, d.power_limit_max_w = sim.power_limit_min_w, sim.power_limit_max_w
            d.power_limit_default_w, d.power_limit_settable = (
                sim.power_limit_default_w,
                sim.power_limit_settable,
            )
            del d.peer_indices[:]
            d.peer_indices.extend(peers)
            d.interconnect = sim.interconnect if peers else "pcie"
            out.append(d)
        return out

    def sample(self) -> list[common_pb2.DeviceTelemetry]:
        parsed = super().sample()
        extras = self._tool.samples
        for t in parsed:
            sim = extras.get(self._position(t.index))
            if sim is None:
                continue
            t.throttle_reasons.extend(sim.throttle_reasons)
            t.energy_j, t.power_limit_w = sim.energy_j, sim.power_limit_w
            t.ecc_corrected_total, t.ecc_uncorrected_total = (
                sim.ecc_corrected_total,
                sim.ecc_uncorrected_total,
            )
            t.remapped_rows_pending, t.row_remap_failed = sim.remapped_rows_pending, sim.row_remap_failed
        return parsed

    def health_thresholds(self) -> dict[int, Thresholds]:
        return {self._index(p): t for p, t in self.sim.health_thresholds().items()}

    def set_busy(self, indices: Collection[int]) -> None:
        self.sim.set_busy([self._position(i) for i in indices])

    def inject_fault(self, index: int, fault: str) -> None:
        self.sim.inject_fault(self._position(index), fault)

    def set_power_limit(self, index: int, watts: float) -> None:
        self.sim.set_power_limit(self._position(index), watts)

    def get_power_limit(self, index: int) -> float:
        return self.sim.get_power_limit(self._position(index))

    def _emit_health(self, event: common_pb2.HealthEvent) -> None:
        event.injected = True  # every fault on a simulated node was injected
        super()._emit_health(event)

    def _from_simulator(self, event: common_pb2.HealthEvent) -> None:
        if event.kind in _PARSED_KINDS:
            return
        event.device_index = self._index(event.device_index)
        self._emit_health(event)


def simulated_backend(
    profile: NodeProfile, *, node_name: str | None = None
) -> SimulatedBackend | RecordedSimBackend:
    if profile.devices.recorded:
        return RecordedSimBackend(profile, node_name=node_name)
    return SimulatedBackend(profile, node_name=node_name)
