"""Choose the device backend for this node: real hardware first, the simulator on request.

The simulator is never chosen silently: without NVML devices and without `--simulate` the
agent refuses to start, so a node whose driver broke does not come up as a fake one.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agents.backends.base import BackendError, DeviceBackend
from agents.profiles import builtin_profile_names, resolve_profile

log = logging.getLogger("corral.agent.detect")


class NoDeviceBackend(BackendError):
    """No real accelerator was found and no simulation profile was given."""


def detect_backend(simulate_profile: Path | None, *, node_name: str | None = None) -> DeviceBackend:
    from agents.backends.nvml import NvmlBackend, nvml_device_count
    from agents.backends.simulated import SimulatedBackend

    nvml_devices = nvml_device_count()
    if simulate_profile is not None:
        path = resolve_profile(simulate_profile)
        if nvml_devices:
            log.info(
                "NVML found %d device(s), but --simulate %s was given: using the simulated backend",
                nvml_devices,
                path,
            )
        backend = SimulatedBackend.from_path(path, node_name=node_name)
        log.info(
            "simulated backend: profile %s, %d × %s (%s)",
            backend.profile.name,
            backend.profile.devices.count,
            backend.profile.devices.model,
            path,
        )
        return backend
    if nvml_devices:
        nvml = NvmlBackend()
        log.info("NVML backend: %d device(s)", nvml_devices)
        return nvml
    raise NoDeviceBackend(
        "no NVML device was found on this machine; to run a simulated node pass --simulate PROFILE"
        f" (a profile YAML file or a built-in profile: {', '.join(builtin_profile_names())})"
    )
