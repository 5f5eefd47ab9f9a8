"""Choose the device backend for this node: real hardware first, the simulator on request.

The simulator is never chosen silently: without devices and without `--simulate` the agent
refuses to start, so a node whose driver broke does not come up as a fake one. `--backend`
names a vendor outright (and `--backend-via` library or cli); otherwise NVIDIA (NVML) is tried
first, then the domestic vendors whose PCI devices or tools this machine has.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agents.backends.base import BackendError, DeviceBackend
from agents.profiles import builtin_profile_names, resolve_profile

log = logging.getLogger("corral.agent.detect")


class NoDeviceBackend(BackendError):
    """No real accelerator was found and no simulation profile was given."""


def detect_backend(
    simulate_profile: Path | None,
    *,
    node_name: str | None = None,
    backend: str = "auto",
    via: str = "auto",
) -> DeviceBackend:
    if simulate_profile is not None:
        return _simulated(simulate_profile, node_name)
    if backend == "nvidia":
        nvidia = _nvml()
        if nvidia is None:
            raise NoDeviceBackend("--backend nvidia: NVML found no device (is the NVIDIA driver loaded?)")
        return nvidia
    if backend != "auto":
        return vendor_backend(backend, via)
    nvml = _nvml()
    if nvml is not None:
        return nvml
    from agents.backends.vendors.registry import detect_vendors

    found = detect_vendors()
    if len(found) > 1:
        raise NoDeviceBackend(
            f"devices of several vendors were found ({', '.join(found)}); one agent serves one vendor:"
            " pass --backend NAME"
        )
    if found:
        return vendor_backend(found[0], via)
    raise NoDeviceBackend(
        "no accelerator was found on this machine (no NVML device, no domestic vendor's PCI devices"
        " or tools); pass --backend NAME to name the vendor, or --simulate PROFILE to run a"
        f" simulated node (a profile YAML file or a built-in profile: {', '.join(builtin_profile_names())})"
    )


def vendor_backend(vendor: str, via: str = "auto") -> DeviceBackend:
    from agents.backends.vendors.backend import VendorBackend
    from agents.backends.vendors.registry import VIAS, open_reader, vendor_module

    if via not in VIAS:
        raise NoDeviceBackend(f"--backend-via must be one of {', '.join(VIAS)} (got {via!r})")
    module = vendor_module(vendor)
    reader = open_reader(vendor, via)  # type: ignore[arg-type]
    backend = VendorBackend(reader, visibility_env=module.VISIBILITY_ENV)
    log.info("%s backend via %s: %d device(s)", vendor, reader.via, len(backend.inventory()))
    return backend


def _nvml() -> DeviceBackend | None:
    from agents.backends.nvml import NvmlBackend, nvml_device_count

    count = nvml_device_count()
    if not count:
        return None
    log.info("NVML backend: %d device(s)", count)
    return NvmlBackend()


def _simulated(profile: Path, node_name: str | None) -> DeviceBackend:
    from agents.backends.recorded import simulated_backend
    from agents.profiles import load_profile

    path = resolve_profile(profile)
    backend = simulated_backend(load_profile(path), node_name=node_name)
    spec = backend.profile.devices
    how = f", speaking {spec.vendor}'s tool from {spec.recorded}" if spec.recorded else ""
    log.info(
        "simulated backend: profile %s, %d × %s (%s)%s",
        backend.profile.name,
        spec.count,
        spec.model,
        path,
        how,
    )
    return backend
