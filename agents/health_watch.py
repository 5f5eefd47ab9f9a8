"""Health events from telemetry: counters and flags that change between samples.

NVML's event set reports XIDs and single ECC errors as they happen, but several early warnings
only show up in what a device reports when asked: the uncorrected and corrected ECC totals, row
remapping (pending, failed), thermal throttle reasons and temperature. `TelemetryWatch` turns
their *changes* into `HealthEvent`s for one device; `NodeWatch` keeps one per device. Both are
pure (the caller passes the sample and the time), so the NVML backend and the simulator share
one set of rules, and every rule is tested on hand-built samples.

Rules (each edge-triggered: one event per change, never one per sample):

- uncorrected ECC total rises → ECC_DBE CRITICAL, `code` the increase, sent with the next
  sample. NVML's event set usually reports the same error first; a backend ECC_DBE event for
  the device noted before that next sample stands for it, so the control plane hears it once.
- corrected ECC: `ecc_rate_count` or more new errors within `ecc_rate_window_s` → ECC_SBE
  WARNING (the control plane reads it as a correctable-ECC rate), at most once per window.
- rows pending remap go from 0 to more → ROW_REMAP_PENDING WARNING; the row waits for a reset.
- row remap failure flag turns on → ROW_REMAP_FAILED CRITICAL.
- HW or SW thermal throttling present for `throttle_s` → THERMAL WARNING (slowdown).
- temperature at or above the device's shutdown threshold → THERMAL CRITICAL (shutdown).
- every warning the watch raised has cleared (throttling stopped and the device back under its
  slowdown temperature for `clear_s`; no rows pending; the correctable rate back under its
  threshold) → one RECOVERED INFO. The control plane treats RECOVERED as a passing health
  check, which also clears UNHEALTHY, so it is never sent for a device that had a critical
  condition (those need an operator) or an early warning from another source (see `note`).

The first sample only sets the counters' baseline: errors counted before the agent started
were reported (or not) by whoever ran then. Flags are states, not counts, so a device that
starts with rows pending or a failed remap is reported on its first sample.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from corral.v1 import common_pb2

from agents.timeutil import timestamp

T = common_pb2

# Corral's choice: no published default was found (NVIDIA does not publish the threshold behind
# XID 92, the driver's own high single-bit rate alarm). Ten in an hour is meant to ignore the
# odd corrected error and still warn while a failing row is only being corrected.
DEFAULT_ECC_RATE_COUNT = 10
DEFAULT_ECC_RATE_WINDOW_S = 3600.0
# Short thermal throttling accompanies load steps; sustained throttling is a cooling problem.
DEFAULT_THROTTLE_S = 10.0
# A condition must stay gone this long before the device is called recovered, so a device at
# the edge of its slowdown temperature does not flap between SUSPECT and HEALTHY every sample.
DEFAULT_CLEAR_S = 30.0
# A shutdown-temperature alarm re-arms only this far below the threshold when the slowdown
# temperature is unknown, for the same reason.
SHUTDOWN_REARM_C = 5.0

THERMAL_REASONS = frozenset({T.THROTTLE_REASON_HW_THERMAL, T.THROTTLE_REASON_SW_THERMAL})
# XIDs that xid.yaml marks early_warning (they turn a device SUSPECT): a device that reported
# one must not be called recovered because an unrelated thermal episode ended. Other warning
# XIDs are mostly the job's own faults (13, 31, 43), which leave the device's health alone.
EARLY_WARNING_XIDS = frozenset({63, 92, 94})


@dataclass(frozen=True)
class Thresholds:
    """One device's limits: temperatures from the device (None where unknown), the rest policy."""

    slowdown_c: float | None = None
    shutdown_c: float | None = None
    throttle_s: float = DEFAULT_THROTTLE_S
    clear_s: float = DEFAULT_CLEAR_S
    ecc_rate_count: int = DEFAULT_ECC_RATE_COUNT
    ecc_rate_window_s: float = DEFAULT_ECC_RATE_WINDOW_S


DEFAULT_THRESHOLDS = Thresholds()


class TelemetryWatch:
    """The rules above for one device; `observe` once per telemetry sample."""

    def __init__(self, index: int, vendor: str = "") -> None:
        self.index = index
        self.vendor = vendor
        self._baseline = False
        self._uncorrected = 0
        self._corrected = 0
        self._remap_pending = 0
        self._remap_failed = False
        # (when, how many) corrected errors appeared; empty unless errors arrived within a window.
        self._corrected_seen: deque[tuple[float, int]] = deque()
        self._corrected_in_window = 0
        self._rate_raised_at: float | None = None
        self._throttle_since: float | None = None
        self._cool_since: float | None = None
        self._thermal_raised = False
        self._shutdown_raised = False
        self._remap_raised = False
        # Uncorrected errors seen in the last sample and not yet reported: a backend event that
        # arrives before the next sample covers them.
        self._dbe_held = 0
        self._dbe_noted = False
        self._dbe_noted_samples = 0
        # Set by a critical condition (ours or the backend's) or another source's early warning:
        # no RECOVERED until the backend itself reports one.
        self._no_recovery = False

    def standing(self) -> list[str]:
        """The warnings this watch raised that have not cleared yet."""
        names = []
        if self._thermal_raised:
            names.append("thermal throttling")
        if self._remap_raised:
            names.append("rows pending remap")
        if self._rate_raised_at is not None:
            names.append("correctable ECC rate")
        return names

    def note(self, event: common_pb2.HealthEvent) -> None:
        """A health event the backend sent for this device, so the watch neither repeats it
        nor undoes it with a RECOVERED."""
        if event.kind == T.HEALTH_EVENT_KIND_RECOVERED:
            # The backend calls the device well again (the simulator's `clear`), and the control
            # plane has heard so: start the warnings afresh rather than send a second RECOVERED.
            # A condition still present is raised again by its own rule: throttling after
            # another `throttle_s`, the correctable rate after another `ecc_rate_count` errors.
            self._no_recovery = self._thermal_raised = self._remap_raised = False
            self._rate_raised_at = self._throttle_since = self._cool_since = None
            self._corrected_seen.clear()
            self._corrected_in_window = 0
            return
        if event.kind == T.HEALTH_EVENT_KIND_ECC_DBE:
            self._dbe_noted, self._dbe_noted_samples = True, 0
        if event.severity == T.SEVERITY_CRITICAL or (
            event.severity == T.SEVERITY_WARNING
            and (event.kind != T.HEALTH_EVENT_KIND_XID or event.code in EARLY_WARNING_XIDS)
        ):
            self._no_recovery = True

    def observe(
        self, sample: common_pb2.DeviceTelemetry, now: float, thresholds: Thresholds = DEFAULT_THRESHOLDS
    ) -> list[common_pb2.HealthEvent]:
        out: list[common_pb2.HealthEvent] = []
        if not self._baseline:
            self._baseline = True
            self._uncorrected = sample.ecc_uncorrected_total
            self._corrected = sample.ecc_corrected_total
        before = self.standing()
        self._watch_uncorrected(sample, out)
        self._watch_corrected(sample, now, thresholds, out)
        self._watch_remap(sample, out)
        self._watch_thermal(sample, now, thresholds, out)
        if before and not self.standing() and not self._no_recovery:
            message = f"cleared: {', '.join(before)}"
            out.append(self._event(T.HEALTH_EVENT_KIND_RECOVERED, T.SEVERITY_INFO, message))
        return out

    # -- the rules -----------------------------------------------------------------------

    def _watch_uncorrected(
        self, sample: common_pb2.DeviceTelemetry, out: list[common_pb2.HealthEvent]
    ) -> None:
        total = sample.ecc_uncorrected_total
        # A counter that goes down was reset (driver reload): count from there.
        rise = total - self._uncorrected if total > self._uncorrected else 0
        self._uncorrected = total
        held, self._dbe_held = self._dbe_held, 0
        if self._dbe_noted:
            if rise or held:  # the backend's event stands for these errors
                self._dbe_noted = False
                return
            # An event whose errors the counter never showed (counted before the baseline)
            # must not swallow a later, unreported rise.
            self._dbe_noted_samples += 1
            self._dbe_noted = self._dbe_noted_samples < 2
        if held:
            self._no_recovery = True
            count = held + rise
            noun = "error" if count == 1 else "errors"
            message = f"{count} uncorrectable ECC {noun} since the last report (total {total})"
            out.append(self._event(T.HEALTH_EVENT_KIND_ECC_DBE, T.SEVERITY_CRITICAL, message, code=count))
        else:
            self._dbe_held = rise

    def _watch_corrected(
        self,
        sample: common_pb2.DeviceTelemetry,
        now: float,
        thresholds: Thresholds,
        out: list[common_pb2.HealthEvent],
    ) -> None:
        total = sample.ecc_corrected_total
        if total > self._corrected:
            self._corrected_seen.append((now, total - self._corrected))
            self._corrected_in_window += total - self._corrected
        self._corrected = total
        window, seen = thresholds.ecc_rate_window_s, self._corrected_seen
        while seen and now - seen[0][0] >= window:
            self._corrected_in_window -= seen.popleft()[1]
        count = self._corrected_in_window
        if self._rate_raised_at is not None and now - self._rate_raised_at >= window:
            # A window later: clear, or (still high) warn once more below.
            self._rate_raised_at = None
        if self._rate_raised_at is None and count >= thresholds.ecc_rate_count:
            self._rate_raised_at = now
            message = (
                f"{count} correctable ECC errors within {_duration(window)}"
                f" (threshold {thresholds.ecc_rate_count}, total {total})"
            )
            out.append(self._event(T.HEALTH_EVENT_KIND_ECC_SBE, T.SEVERITY_WARNING, message))

    def _watch_remap(self, sample: common_pb2.DeviceTelemetry, out: list[common_pb2.HealthEvent]) -> None:
        pending, failed = sample.remapped_rows_pending, sample.row_remap_failed
        if pending and not self._remap_pending:
            self._remap_raised = True
            # NVML only says whether any row is pending, which its backend sends as 1.
            rows = "a memory row" if pending == 1 else f"{pending} memory rows"
            message = f"{rows} pending remap; the remap takes effect at the next GPU reset"
            out.append(self._event(T.HEALTH_EVENT_KIND_ROW_REMAP_PENDING, T.SEVERITY_WARNING, message))
        elif not pending:
            self._remap_raised = False
        self._remap_pending = pending
        if failed and not self._remap_failed:
            self._no_recovery = True
            message = "row remapping failed: the memory cannot be repaired in place"
            out.append(self._event(T.HEALTH_EVENT_KIND_ROW_REMAP_FAILED, T.SEVERITY_CRITICAL, message))
        self._remap_failed = failed

    def _watch_thermal(
        self,
        sample: common_pb2.DeviceTelemetry,
        now: float,
        thresholds: Thresholds,
        out: list[common_pb2.HealthEvent],
    ) -> None:
        temp = sample.temperature_c
        shutdown, slowdown = thresholds.shutdown_c, thresholds.slowdown_c
        if shutdown is not None:
            if temp >= shutdown and not self._shutdown_raised:
                self._shutdown_raised = self._no_recovery = True
                message = f"temperature {temp:g} °C at or above the shutdown threshold {shutdown:g} °C"
                out.append(self._event(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_CRITICAL, message))
            elif temp < (slowdown if slowdown is not None else shutdown - SHUTDOWN_REARM_C):
                self._shutdown_raised = False

        if any(reason in THERMAL_REASONS for reason in sample.throttle_reasons):
            self._cool_since = None
            if self._throttle_since is None:
                self._throttle_since = now
            lasted = now - self._throttle_since
            if not self._thermal_raised and lasted >= thresholds.throttle_s:
                self._thermal_raised = True
                limit = f" (slowdown threshold {slowdown:g} °C)" if slowdown is not None else ""
                message = f"thermal throttling for {lasted:.0f} s at {temp:g} °C{limit}"
                out.append(self._event(T.HEALTH_EVENT_KIND_THERMAL, T.SEVERITY_WARNING, message))
            return
        self._throttle_since = None
        if not self._thermal_raised or (slowdown is not None and temp >= slowdown):
            self._cool_since = None
            return
        if self._cool_since is None:
            self._cool_since = now
        if now - self._cool_since >= thresholds.clear_s:
            self._thermal_raised = False
            self._cool_since = None

    def _event(
        self,
        kind: common_pb2.HealthEventKind.ValueType,
        severity: common_pb2.Severity.ValueType,
        message: str,
        code: int = 0,
    ) -> common_pb2.HealthEvent:
        return common_pb2.HealthEvent(
            device_index=self.index,
            kind=kind,
            code=code,
            severity=severity,
            message=message,
            observed_at=timestamp(),
            vendor=self.vendor,
            injected=False,
        )


class NodeWatch:
    """One `TelemetryWatch` per device of a node, made on first sight of the device."""

    def __init__(self, thresholds: dict[int, Thresholds] | None = None, vendor: str = "") -> None:
        self.thresholds = thresholds or {}
        self.vendor = vendor
        self._watches: dict[int, TelemetryWatch] = {}

    def _watch(self, index: int) -> TelemetryWatch:
        watch = self._watches.get(index)
        if watch is None:
            watch = self._watches[index] = TelemetryWatch(index, self.vendor)
        return watch

    def note(self, event: common_pb2.HealthEvent) -> None:
        self._watch(event.device_index).note(event)

    def observe(
        self, samples: Iterable[common_pb2.DeviceTelemetry], now: float
    ) -> list[common_pb2.HealthEvent]:
        out: list[common_pb2.HealthEvent] = []
        for sample in samples:
            found = self._watch(sample.index).observe(
                sample, now, self.thresholds.get(sample.index, DEFAULT_THRESHOLDS)
            )
            if found:
                out += found
        return out


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return "1 h" if hours == 1 else f"{hours} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
