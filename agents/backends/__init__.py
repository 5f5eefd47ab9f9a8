"""Device backends behind one interface; import a concrete backend from its own module."""

from agents.backends.base import (
    BackendError,
    DeviceBackend,
    FaultInjectionUnsupported,
    NodeInfo,
    PowerLimitError,
)

__all__ = ["BackendError", "DeviceBackend", "FaultInjectionUnsupported", "NodeInfo", "PowerLimitError"]
