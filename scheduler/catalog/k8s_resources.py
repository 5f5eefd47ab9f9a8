"""Kubernetes resource names per vendor and model, for the Kubernetes launcher.

The data lives in `k8s_resources.yaml` beside this module: for each vendor the names its own
device plugin registers and the names HAMi (the multi-vendor sharing scheduler) uses, with
HAMi's memory unit, each with a source. A vendor's default entry can be overridden per catalog
model (`models:`) and per tool spelling (`names:`, e.g. the Ascend bin '910B2', which HAMi
names separately).

    >>> resource_names("hygon", "K100").hami.count
    'hygon.com/hcunum'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scheduler.catalog.catalog import VENDORS, DeviceCatalog, name_key, vendor_key

K8S_RESOURCES_PATH = Path(__file__).resolve().parent / "k8s_resources.yaml"

# A Kubernetes extended-resource name: a DNS-style domain, '/', a name.
_RESOURCE_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
ResourceName = Annotated[str, Field(strict=True, pattern=_RESOURCE_NAME)]
_Text = Annotated[str, Field(strict=True, min_length=1)]
_OVERRIDABLE = ("vendor_plugin", "hami", "hami_alternatives")
_TOP_LEVEL_KEYS = ("version", "entries")


class K8sResourcesError(ValueError):
    """A resource-name table that cannot be used. `problems` holds one line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class HamiResources(BaseModel):
    """One set of names HAMi registers for a model: devices, memory and cores per device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: ResourceName
    memory: ResourceName | None = None
    core: ResourceName | None = None
    # MiB one unit of `memory` stands for (1, 256, 512, 1024); None where `memory_percent`.
    memory_unit_mib: Annotated[int, Field(strict=True, gt=0)] | None = None
    # A unit of `memory` is 1% of the device's memory (Cambricon sMLU), not an amount.
    memory_percent: bool = False

    @model_validator(mode="after")
    def _one_memory_unit(self) -> Self:
        if self.memory is None and (self.memory_unit_mib is not None or self.memory_percent):
            raise ValueError("a memory unit without a memory resource; name `memory` or drop the unit")
        if self.memory is not None and (self.memory_unit_mib is None) == (not self.memory_percent):
            raise ValueError(
                "a memory resource needs exactly one unit: memory_unit_mib or memory_percent: true"
            )
        return self

    def memory_units(self, mib: int, device_mib: int | None = None) -> int:
        """How many units of `memory` ask for `mib` MiB (rounded up); for a percentage unit,
        of a device of `device_mib` MiB."""
        if self.memory is None:
            raise ValueError(f"HAMi's {self.count} has no memory resource")
        if self.memory_percent:
            if not device_mib:
                raise ValueError(f"{self.memory} counts percent of the device: give the device's memory")
            return min(100, -(-mib * 100 // device_mib))
        assert self.memory_unit_mib is not None  # the validator guarantees one unit
        return -(-mib // self.memory_unit_mib)


class K8sResources(BaseModel):
    """What a pod asks for to get devices of one model: the vendor plugin's names (the default
    first) and HAMi's (None where HAMi has none for the model)."""

    model_config = ConfigDict(frozen=True)

    vendor: str
    model: str  # the catalog's name, or the name asked for where the catalog does not know it
    vendor_plugin: tuple[str, ...]
    hami: HamiResources | None
    hami_alternatives: tuple[HamiResources, ...] = ()
    sources: Mapping[str, str] = Field(default_factory=dict)
    notes: str = ""


class _Entry(BaseModel):
    """One entry of the file; fields it leaves out come from the level above."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str
    models: tuple[_Text, ...] = ()
    names: tuple[_Text, ...] = ()
    vendor_plugin: Annotated[tuple[ResourceName, ...], Field(min_length=1)] | None = None
    hami: HamiResources | None = None
    hami_alternatives: tuple[HamiResources, ...] = ()
    sources: Mapping[str, _Text] = Field(default_factory=dict)
    notes: str = ""

    @model_validator(mode="after")
    def _checked(self) -> Self:
        problems: list[str] = []
        if self.vendor not in VENDORS:
            problems.append(f"vendor: must be one of {', '.join(VENDORS)} (got {self.vendor!r})")
        if self.models and self.names:
            problems.append(
                "models/names: an entry overrides either catalog models or tool spellings, not both"
            )
        written = [f for f in _OVERRIDABLE if f in self.model_fields_set]
        if self.is_default:
            if "vendor_plugin" not in self.model_fields_set or self.vendor_plugin is None:
                problems.append("vendor_plugin: the vendor's default entry lists at least one name")
            if "hami" not in self.model_fields_set:
                problems.append("hami: the vendor's default entry writes it out (null where HAMi has none)")
        elif not written:
            problems.append("overrides nothing; write vendor_plugin, hami or hami_alternatives")
        for key in self.sources:
            if key not in _OVERRIDABLE:
                problems.append(
                    f"sources.{key}: not a field that takes a source; one of {', '.join(_OVERRIDABLE)}"
                )
        problems.extend(f"{f}: has no source; add sources.{f}" for f in written if f not in self.sources)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_default(self) -> bool:
        return not self.models and not self.names

    def over(self, base: K8sResources) -> K8sResources:
        """`base` with this entry's fields written over it."""
        changed: dict[str, Any] = {f: getattr(self, f) for f in _OVERRIDABLE if f in self.model_fields_set}
        notes = " ".join(n for n in (base.notes, self.notes) if n)
        return base.model_copy(
            update={**changed, "sources": {**base.sources, **self.sources}, "notes": notes}
        )


class K8sResourceTable:
    """The resource names of every vendor, looked up by vendor and model name."""

    def __init__(self, entries: list[_Entry], catalog: DeviceCatalog, origin: str = "k8s resources") -> None:
        self._catalog = catalog
        self._defaults: dict[str, _Entry] = {}
        self._by_model: dict[tuple[str, str], _Entry] = {}
        self._by_name: dict[tuple[str, str], _Entry] = {}
        problems: list[str] = []
        for i, e in enumerate(entries):
            where = f"{origin}: entries[{i}] ({e.vendor})"
            if e.is_default:
                if e.vendor in self._defaults:
                    problems.append(f"{where}: a second default entry for {e.vendor}")
                self._defaults[e.vendor] = e
            for model in e.models:
                found = catalog.get(e.vendor, model)
                if found is None or found.model != model:
                    problems.append(
                        f"{where}.models: {model!r} is not a {e.vendor} model name in the catalog"
                    )
                elif self._by_model.setdefault((e.vendor, name_key(model)), e) is not e:
                    problems.append(f"{where}.models: {model!r} is overridden twice")
            for name in e.names:
                if self._by_name.setdefault((e.vendor, name_key(name)), e) is not e:
                    problems.append(f"{where}.names: {name!r} is overridden twice")
        for vendor in {e.vendor for e in entries} - set(self._defaults):
            problems.append(f"{origin}: {vendor}: entries override a vendor with no default entry")
        if problems:
            raise K8sResourcesError(problems)

    @classmethod
    def load(cls, path: Path | None = None, catalog: DeviceCatalog | None = None) -> K8sResourceTable:
        """The table in `path`, or the packaged one (read once per process) when None."""
        if path is None and catalog is None:
            return _packaged()
        path = path or K8S_RESOURCES_PATH
        origin = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise K8sResourcesError([f"{origin}: cannot read: {e.strerror or e}"]) from e
        except yaml.YAMLError as e:
            raise K8sResourcesError([f"{origin}: not valid YAML: {e}"]) from e
        return cls.parse(data, catalog or DeviceCatalog.load(), origin)

    @classmethod
    def parse(cls, data: Any, catalog: DeviceCatalog, origin: str = "k8s resources") -> K8sResourceTable:
        """A table from loaded YAML; every problem is reported, not just the first."""
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
            raise K8sResourcesError([f"{origin}: must be a mapping with `version: 1` and an `entries:` list"])
        problems = [f"{origin}: {k}: unknown top-level key" for k in data if k not in _TOP_LEVEL_KEYS]
        if data.get("version") != 1:
            problems.append(f"{origin}: version: must be 1 (got {data.get('version')!r})")
        entries: list[_Entry] = []
        for i, raw in enumerate(data["entries"]):
            try:
                entries.append(_Entry.model_validate(raw))
            except ValidationError as e:
                problems.extend(
                    f"{origin}: entries[{i}]{_path(err['loc'])}: {_message(err)}" for err in e.errors()
                )
        if problems:
            raise K8sResourcesError(problems)
        return cls(entries, catalog, origin)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(v for v in VENDORS if v in self._defaults)

    def lookup(self, vendor: str, model: str) -> K8sResources:
        """The names for `model` of `vendor` (any name or alias the catalog knows, or a tool's
        spelling the table lists); the vendor's defaults for a model nobody listed."""
        v = vendor_key(vendor)
        default = self._defaults.get(v)
        if default is None:
            known = ", ".join(self.vendors)
            raise LookupError(f"no Kubernetes resource names for vendor {vendor!r}; known: {known}")
        found = self._catalog.get(v, model)
        result = default.over(
            K8sResources(vendor=v, model=found.model if found else model, vendor_plugin=(), hami=None)
        )
        by_model = self._by_model.get((v, name_key(found.model))) if found else None
        for entry in (by_model, self._by_name.get((v, name_key(model)))):
            if entry is not None:
                result = entry.over(result)
        return result


def resource_names(vendor: str, model: str) -> K8sResources:
    """The packaged table's names for (vendor, model); raises LookupError for an unknown vendor."""
    return _packaged().lookup(vendor, model)


@functools.cache
def _packaged() -> K8sResourceTable:
    return K8sResourceTable.load(K8S_RESOURCES_PATH, DeviceCatalog.load())


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


def _message(err: Any) -> str:
    text = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        return f"{err['input']!r} is not a Kubernetes resource name (domain/name)"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return text
