"""The device catalog: accelerator models, their figures and where each figure comes from."""

from scheduler.catalog.catalog import (
    CATALOG_PATH,
    SOURCED_FIELDS,
    VENDORS,
    AllocationRule,
    CatalogError,
    Confidence,
    DeviceCatalog,
    DeviceModel,
    allocation_rule,
    model_key,
    name_key,
    vendor_key,
)

__all__ = [
    "CATALOG_PATH",
    "SOURCED_FIELDS",
    "VENDORS",
    "AllocationRule",
    "CatalogError",
    "Confidence",
    "DeviceCatalog",
    "DeviceModel",
    "allocation_rule",
    "model_key",
    "name_key",
    "vendor_key",
]
