"""Power limits on the agent's side: the control plane's caps kept across agent restarts, and
a safe cap for when the control plane is out of reach.

Persistence: every limit the control plane sets is written to `<data_dir>/power_limits.json`
(atomically) and applied again when the agent starts, so a restarted agent does not let its
devices run at full power until the control plane gets round to resending. A limit equal to
the device's default drops the device from the file: it is no longer capped.

Safe cap: the control plane keeps racks within budget by lowering limits as draw rises; an
agent that cannot hear it (partition, control plane down) would let its devices draw freely.
After `after_s` seconds cut off (0: never), the agent lowers every settable device to
`cap_w`, or to `fraction` of its default limit (whole watts, rounded down), never below the
device's minimum and never above the limit already in force. It logs this as a warning.
When the stream is back the agent lifts its safe caps at once, back to the last caps the
control plane set (the file), or to the default where it set none: the control plane is in
charge again, and resends its caps in force after register. Safe caps are lifted rather
than kept because a control plane without power management never sends a cap, so a kept
safe cap would throttle forever.
Safe caps are not written to the file; a limit the control plane sets while the agent is
cut off (a command that arrived just before) replaces the safe cap on that device.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from corral.v1 import common_pb2

from agents.backends.base import BackendError, DeviceBackend, PowerLimitError

log = logging.getLogger("corral.agent.power")

LIMITS_FILE = "power_limits.json"
DEFAULT_SAFE_CAP_AFTER_S = 60.0
DEFAULT_SAFE_CAP_FRACTION = 0.7
# Limits within this of each other are the same limit: NVML works in mW, profiles in W.
SAME_W = 0.5


@dataclass(frozen=True)
class SafeCapConfig:
    after_s: float = DEFAULT_SAFE_CAP_AFTER_S  # 0: never
    cap_w: float | None = None  # one cap for every device; None: `fraction` of each default
    fraction: float = DEFAULT_SAFE_CAP_FRACTION

    def problems(self) -> list[str]:
        """What is wrong, one line per flag; empty when fine."""
        out: list[str] = []
        if not (math.isfinite(self.after_s) and self.after_s >= 0):
            out.append(f"--safe-cap-after: must be ≥ 0 s, 0 to turn the safe cap off (got {self.after_s:g})")
        if self.cap_w is not None and not (math.isfinite(self.cap_w) and self.cap_w > 0):
            out.append(f"--safe-cap-w: must be a number of W > 0 (got {self.cap_w:g})")
        if not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            out.append(
                "--safe-cap-fraction: must be in (0, 1], a share of each default limit "
                f"(got {self.fraction:g})"
            )
        return out


@dataclass(frozen=True)
class DeviceLimits:
    index: int
    min_w: float
    max_w: float
    default_w: float
    settable: bool

    @classmethod
    def of(cls, device: common_pb2.Device) -> DeviceLimits:
        return cls(
            index=device.index,
            min_w=device.power_limit_min_w,
            max_w=device.power_limit_max_w,
            default_w=device.power_limit_default_w,
            settable=device.power_limit_settable,
        )


def safe_cap_due(config: SafeCapConfig, disconnected_for_s: float) -> bool:
    """Whether an agent cut off this long should be under its safe cap."""
    return config.after_s > 0 and disconnected_for_s >= config.after_s


def safe_cap_w(device: DeviceLimits, config: SafeCapConfig, current_w: float | None = None) -> float | None:
    """The safe cap for one device; None when it is not settable or already at or below it."""
    if not device.settable or device.default_w <= 0:
        return None
    target = config.cap_w if config.cap_w is not None else config.fraction * device.default_w
    # Whole watts, rounded down: some devices take only integers (Cambricon), and a safe cap
    # errs low.
    target = float(math.floor(target + 1e-9))
    if device.min_w > 0:
        target = max(target, device.min_w)
    if device.max_w > 0:
        target = min(target, device.max_w)
    if current_w is not None and current_w > 0 and current_w <= target + SAME_W:
        return None  # a lower cap is in force already: the safe cap must not raise it
    return target


def safe_caps(
    devices: Iterable[DeviceLimits], config: SafeCapConfig, current_w: Mapping[int, float]
) -> dict[int, float]:
    """device index → safe cap, for the devices to lower."""
    out: dict[int, float] = {}
    for d in devices:
        cap = safe_cap_w(d, config, current_w.get(d.index))
        if cap is not None:
            out[d.index] = cap
    return out


def read_limits(path: Path) -> dict[int, float]:
    """The persisted caps; a missing file is none, a damaged one is logged and ignored (the
    control plane resends its caps after register, so nothing is lost for long)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: cannot read it (%s)", path, exc)
        return {}
    limits = data.get("limits") if isinstance(data, dict) else None
    if not isinstance(limits, dict):
        log.warning("ignoring %s: no 'limits' mapping", path)
        return {}
    out: dict[int, float] = {}
    for key, value in limits.items():
        try:
            index, watts = int(key), float(value)
        except (TypeError, ValueError):
            log.warning("ignoring %s entry %r: %r: not a device index and watts", path, key, value)
            continue
        if index >= 0 and math.isfinite(watts) and watts > 0:
            out[index] = watts
    return out


def write_limits(path: Path, limits: Mapping[int, float]) -> None:
    """Write atomically: a crash mid-write leaves the old file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = {"limits": {str(i): w for i, w in sorted(limits.items())}}
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(body, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class PowerLimits:
    """The agent's power limits: applies the control plane's caps and persists them, and puts
    on and lifts the safe cap. Thread-safe: commands run in worker threads."""

    def __init__(self, backend: DeviceBackend, data_dir: Path, config: SafeCapConfig | None = None) -> None:
        self.backend = backend
        self.path = data_dir / LIMITS_FILE
        self.config = config or SafeCapConfig()
        self._lock = threading.Lock()
        self._limits = read_limits(self.path)
        self._devices: dict[int, DeviceLimits] | None = None
        self.safe_capped: set[int] = set()  # devices under the safe cap now

    @property
    def limits(self) -> dict[int, float]:
        with self._lock:
            return dict(self._limits)

    def _device_limits(self) -> dict[int, DeviceLimits]:
        if self._devices is None:
            self._devices = {d.index: DeviceLimits.of(d) for d in self.backend.inventory()}
        return self._devices

    def restore(self) -> None:
        """At start: apply the persisted caps again. One that no longer applies (no such
        device, out of range) is logged and dropped from the file."""
        with self._lock:
            dropped = []
            for index, watts in sorted(self._limits.items()):
                try:
                    self.backend.set_power_limit(index, watts)
                except (PowerLimitError, BackendError) as exc:
                    log.warning(
                        "persisted power limit %g W for device %d not re-applied: %s", watts, index, exc
                    )
                    dropped.append(index)
                else:
                    log.info("device %d power limit %g W re-applied from %s", index, watts, self.path)
            for index in dropped:
                del self._limits[index]
            if dropped:
                write_limits(self.path, self._limits)

    def apply(self, index: int, watts: float) -> None:
        """A cap from the control plane: set it, and remember it (or forget it when it is the
        default). PowerLimitError / BackendError from the backend pass through unrecorded."""
        with self._lock:
            self.backend.set_power_limit(index, watts)
            self.safe_capped.discard(index)
            device = self._device_limits().get(index)
            at_default = device is not None and abs(watts - device.default_w) <= SAME_W
            before = dict(self._limits)
            if at_default:
                self._limits.pop(index, None)
            else:
                self._limits[index] = watts
            if self._limits != before:
                write_limits(self.path, self._limits)

    def check(self, disconnected_for_s: float) -> None:
        """Put on the safe cap if the agent has been cut off long enough (at most once per
        outage: devices already under it are left alone)."""
        if not safe_cap_due(self.config, disconnected_for_s):
            return
        with self._lock:
            devices = [d for i, d in self._device_limits().items() if i not in self.safe_capped]
            if not devices:
                return
            current = {}
            for d in devices:
                try:
                    current[d.index] = self.backend.get_power_limit(d.index)
                except (PowerLimitError, BackendError):
                    continue
            caps = safe_caps(devices, self.config, current)
            applied = []
            for index, watts in sorted(caps.items()):
                try:
                    self.backend.set_power_limit(index, watts)
                except (PowerLimitError, BackendError) as exc:
                    log.warning("safe cap %g W on device %d failed: %s", watts, index, exc)
                    continue
                self.safe_capped.add(index)
                applied.append(f"{index}→{watts:g} W")
            if applied:
                log.warning(
                    "cut off from the control plane for %.0f s (safe cap after %g s): capped device(s) %s",
                    disconnected_for_s,
                    self.config.after_s,
                    ", ".join(applied),
                )

    def lift(self) -> None:
        """Back in touch: undo the safe caps, to the last caps the control plane set or the
        defaults."""
        with self._lock:
            if not self.safe_capped:
                return
            restored = []
            for index in sorted(self.safe_capped):
                device = self._device_limits().get(index)
                watts = self._limits.get(index, device.default_w if device is not None else 0.0)
                if watts <= 0:
                    continue
                try:
                    self.backend.set_power_limit(index, watts)
                except (PowerLimitError, BackendError) as exc:
                    log.warning("lifting the safe cap on device %d failed: %s", index, exc)
                    continue
                restored.append(f"{index}→{watts:g} W")
            self.safe_capped.clear()
            log.info("control plane reachable again: safe caps lifted (%s)", ", ".join(restored) or "none")
