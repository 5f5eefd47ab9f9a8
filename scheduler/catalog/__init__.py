"""The device catalog: accelerator models, their figures and where each figure comes from."""

from scheduler.catalog.catalog import (
    CATALOG_PATH,
    SOURCED_FIELDS,
    VENDORS,
    CatalogError,
    Confidence,
    DeviceCatalog,
    DeviceModel,
    model_key,
    name_key,
    vendor_key,
)

__all__ = [
    "CATALOG_PATH",
    "SOURCED_FIELDS",
    "VENDORS",
    "CatalogError",
    "Confidence",
    "DeviceCatalog",
    "DeviceModel",
    "model_key",
    "name_key",
    "vendor_key",
]
