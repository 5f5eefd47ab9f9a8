"""The real NVIDIA backend: thin I/O around pynvml, conversions in `nvml_convert`.

pynvml is imported only when an `NvmlBackend` is built (or NVML is probed), so importing
the agent stays fast and works on machines without the NVIDIA driver.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from corral.v1 import common_pb2

from agents.backends.base import BackendError, DeviceBackend, PowerLimitError
from agents.backends.nvml_convert import (
    HEALTH_EVENT_MASK,
    NVLINK_REMOTE_GPU,
    VISIBILITY_ENV,
    NvmlRawDevice,
    NvmlRawSample,
    device_from_raw,
    health_event_from_nvml,
    nvlink_peers,
    telemetry_from_raw,
    thresholds_from_raw,
    throttle_reasons_from_mask,
)
from agents.backends.xid import XID_FELL_OFF_BUS, xid_message
from agents.health_watch import Thresholds
from agents.timeutil import timestamp

__all__ = [
    "NvmlBackend",
    "NvmlRawDevice",
    "NvmlRawSample",
    "health_event_from_nvml",
    "nvml_device_count",
    "telemetry_from_raw",
    "throttle_reasons_from_mask",
]

log = logging.getLogger("corral.agent.nvml")
T = TypeVar("T")

# NVML answers these for features a device or driver lacks; the field is then left empty.
_ABSENT_ERRORS = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_INVALID_ARGUMENT")


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise BackendError("the NVML backend needs nvidia-ml-py (module pynvml)") from e
    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def nvml_device_count() -> int:
    """Devices NVML sees, 0 where the library or driver is missing; leaves NVML as it found it."""
    nv = _pynvml()
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        log.debug("NVML unavailable: %s", e)
        return 0
    try:
        return int(nv.nvmlDeviceGetCount())
    except nv.NVMLError as e:
        log.debug("NVML device count failed: %s", e)
        return 0
    finally:
        nv.nvmlShutdown()


class NvmlBackend(DeviceBackend):
    name = "nvml"
    visibility_env = VISIBILITY_ENV

    def __init__(self, *, watch_events: bool = True) -> None:
        super().__init__()
        self._nv = _pynvml()
        try:
            self._nv.nvmlInit()
        except self._nv.NVMLError as e:
            raise BackendError(f"NVML failed to initialise: {e}") from e
        self._closed = False
        self._lost: set[int] = set()
        self._stop = threading.Event()
        count = int(self._nv.nvmlDeviceGetCount())
        self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._raw = [self._read_device(i, h) for i, h in enumerate(self._handles)]
        self._peers = nvlink_peers(self._raw)
        self._thread = threading.Thread(target=self._watch_events, name="corral-nvml-events", daemon=True)
        if watch_events:
            self._thread.start()

    # -- helpers -------------------------------------------------------------------------

    def _is(self, err: Exception, *names: str) -> bool:
        return getattr(err, "value", None) in {getattr(self._nv, n, object()) for n in names}

    def _optional(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except self._nv.NVMLError as e:
            if self._is(e, *_ABSENT_ERRORS):
                return None
            raise

    def _read_device(self, index: int, handle: Any) -> NvmlRawDevice:
        nv = self._nv
        constraints = self._optional(nv.nvmlDeviceGetPowerManagementLimitConstraints, handle)
        threshold = nv.nvmlDeviceGetTemperatureThreshold
        return NvmlRawDevice(
            index=index,
            name=str(nv.nvmlDeviceGetName(handle)),
            uuid=str(nv.nvmlDeviceGetUUID(handle)),
            memory_total_bytes=int(nv.nvmlDeviceGetMemoryInfo(handle).total),
            bus_id=_text(nv.nvmlDeviceGetPciInfo(handle).busId),
            limit_min_mw=int(constraints[0]) if constraints else None,
            limit_max_mw=int(constraints[1]) if constraints else None,
            limit_default_mw=self._optional(nv.nvmlDeviceGetPowerManagementDefaultLimit, handle),
            nvlinks=self._read_nvlinks(handle),
            slowdown_c=self._optional(threshold, handle, nv.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
            shutdown_c=self._optional(threshold, handle, nv.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
        )

    def _read_nvlinks(self, handle: Any) -> list[tuple[int, str]]:
        nv = self._nv
        links: list[tuple[int, str]] = []
        for link in range(int(nv.NVML_NVLINK_MAX_LINKS)):
            try:
                if not nv.nvmlDeviceGetNvLinkState(handle, link):
                    continue
                remote = _text(nv.nvmlDeviceGetNvLinkRemotePciInfo(handle, link).busId)
                kind = self._optional(nv.nvmlDeviceGetNvLinkRemoteDeviceType, handle, link)
            except nv.NVMLError as e:
                # NotSupported: no NVLink here; InvalidArgument: past the last link. Topology is
                # a placement hint, so any other error is logged rather than fatal.
                if not self._is(e, *_ABSENT_ERRORS):
                    log.info("NVLink query failed at link %d: %s", link, e)
                break
            links.append((NVLINK_REMOTE_GPU if kind is None else int(kind), remote))
        return links

    def _handle(self, index: int) -> Any:
        if not 0 <= index < len(self._handles):
            raise BackendError(f"no device {index} on this node (devices 0-{len(self._handles) - 1})")
        if index in self._lost:
            raise BackendError(f"device {index} is lost (fell off the bus)")
        return self._handles[index]

    def _mark_lost(self, index: int, err: Exception) -> None:
        if index in self._lost:
            return
        self._lost.add(index)
        log.error("device %d lost: %s", index, err)
        self._emit_health(
            common_pb2.HealthEvent(
                device_index=index,
                kind=common_pb2.HEALTH_EVENT_KIND_DEVICE_LOST,
                code=XID_FELL_OFF_BUS,
                severity=common_pb2.SEVERITY_CRITICAL,
                message=f"{xid_message(XID_FELL_OFF_BUS)} (NVML: {err})",
                observed_at=timestamp(),
                vendor="nvidia",
            )
        )

    # -- DeviceBackend -------------------------------------------------------------------

    def inventory(self) -> list[common_pb2.Device]:
        return [device_from_raw(raw, self._peers[raw.index]) for raw in self._raw]

    def health_thresholds(self) -> dict[int, Thresholds]:
        return {raw.index: thresholds_from_raw(raw) for raw in self._raw}

    def sample(self) -> list[common_pb2.DeviceTelemetry]:
        out = []
        for index, handle in enumerate(self._handles):
            if index in self._lost:
                continue
            try:
                out.append(telemetry_from_raw(self._read_sample(index, handle)))
            except self._nv.NVMLError as e:
                if self._is(e, "NVML_ERROR_GPU_IS_LOST"):
                    self._mark_lost(index, e)
                else:
                    log.warning("device %d: telemetry read failed: %s", index, e)
        return out

    def _read_sample(self, index: int, handle: Any) -> NvmlRawSample:
        nv, opt = self._nv, self._optional
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or (
            nv.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        ecc = nv.nvmlDeviceGetTotalEccErrors
        util = opt(nv.nvmlDeviceGetUtilizationRates, handle)
        return NvmlRawSample(
            index=index,
            power_mw=opt(nv.nvmlDeviceGetPowerUsage, handle) or 0,
            temperature_c=opt(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU) or 0,
            gpu_util_pct=int(util.gpu) if util is not None else 0,
            memory_used_bytes=int(nv.nvmlDeviceGetMemoryInfo(handle).used),
            enforced_limit_mw=opt(nv.nvmlDeviceGetEnforcedPowerLimit, handle) or 0,
            throttle_mask=opt(reasons, handle),
            ecc_corrected=opt(ecc, handle, nv.NVML_MEMORY_ERROR_TYPE_CORRECTED, nv.NVML_VOLATILE_ECC),
            ecc_uncorrected=opt(ecc, handle, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC),
            energy_mj=opt(nv.nvmlDeviceGetTotalEnergyConsumption, handle),
            remapped_rows=opt(nv.nvmlDeviceGetRemappedRows, handle),
        )

    def set_power_limit(self, index: int, watts: float) -> None:
        handle = self._handle(index)
        raw = self._raw[index]
        if raw.limit_min_mw is None or raw.limit_max_mw is None:
            raise PowerLimitError(f"device {index} ({raw.name}) does not support setting a power limit")
        lo, hi = raw.limit_min_mw / 1000.0, raw.limit_max_mw / 1000.0
        if not lo <= watts <= hi:
            raise PowerLimitError(
                f"power limit {watts:g} W for device {index} is outside its range {lo:g}-{hi:g} W"
            )
        try:
            self._nv.nvmlDeviceSetPowerManagementLimit(handle, round(watts * 1000))
        except self._nv.NVMLError as e:
            if self._is(e, "NVML_ERROR_NO_PERMISSION"):
                raise PowerLimitError(
                    f"setting the power limit of device {index} needs root (NVML: {e})"
                ) from e
            raise PowerLimitError(f"setting the power limit of device {index} failed: {e}") from e
        log.info("device %d power limit set to %g W", index, watts)

    def get_power_limit(self, index: int) -> float:
        return int(self._nv.nvmlDeviceGetPowerManagementLimit(self._handle(index))) / 1000.0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        try:
            self._nv.nvmlShutdown()
        except self._nv.NVMLError as e:
            log.debug("nvmlShutdown: %s", e)

    # -- health events -------------------------------------------------------------------

    def _index_of(self, handle: Any) -> int | None:
        address = ctypes.cast(handle, ctypes.c_void_p).value
        for index, known in enumerate(self._handles):
            if ctypes.cast(known, ctypes.c_void_p).value == address:
                return index
        return None

    def _watch_events(self) -> None:
        """Wait on NVML's event set in short slices so close() stops the thread promptly."""
        nv = self._nv
        try:
            event_set = nv.nvmlEventSetCreate()
        except nv.NVMLError as e:
            log.warning("NVML health events unavailable: %s", e)
            return
        try:
            for index, handle in enumerate(self._handles):
                try:
                    supported = int(nv.nvmlDeviceGetSupportedEventTypes(handle))
                    nv.nvmlDeviceRegisterEvents(handle, supported & HEALTH_EVENT_MASK, event_set)
                except nv.NVMLError as e:
                    log.info("device %d: NVML health events unavailable: %s", index, e)
            while not self._stop.is_set():
                try:
                    data = nv.nvmlEventSetWait_v2(event_set, 500)
                except nv.NVMLError as e:
                    if not self._is(e, "NVML_ERROR_TIMEOUT"):
                        log.warning("NVML event wait failed: %s", e)
                        self._stop.wait(1.0)
                    continue
                source = self._index_of(data.device)
                if source is None:
                    log.warning("NVML event 0x%x for an unknown device handle", data.eventType)
                    continue
                event = health_event_from_nvml(int(data.eventType), int(data.eventData), source)
                if event is not None:
                    log.warning("device %d: %s", source, event.message)
                    self._emit_health(event)
        finally:
            try:
                nv.nvmlEventSetFree(event_set)
            except nv.NVMLError as e:
                log.debug("nvmlEventSetFree: %s", e)
