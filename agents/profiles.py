"""Node profiles for the simulated backend: what a simulated node looks like and how it behaves.

A profile is a YAML file validated here. Errors name the field path so a typo in a profile
is fixed in one look (`devices.power.idle_w: must be > 0 (got -5)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
GIB = 1024**3

# The runtime variable each vendor's stack reads to pick devices
# (see ../shared/research/domestic_devices.md, cross-vendor summary).
VISIBILITY_BY_VENDOR: Mapping[str, str] = {
    "nvidia": "CUDA_VISIBLE_DEVICES",
    "ascend": "ASCEND_RT_VISIBLE_DEVICES",
    "cambricon": "MLU_VISIBLE_DEVICES",
    "hygon": "HIP_VISIBLE_DEVICES",
    "moorethreads": "MUSA_VISIBLE_DEVICES",
    "iluvatar": "CUDA_VISIBLE_DEVICES",
    "metax": "MACA_VISIBLE_DEVICES",
    "kunlunxin": "XPU_VISIBLE_DEVICES",
    "enflame": "TOPS_VISIBLE_DEVICES",
    "amd": "HIP_VISIBLE_DEVICES",
}


class ProfileError(ValueError):
    """A profile that cannot be used; the message lists every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerModel(_Strict):
    """Power-limit range and the two operating points the simulator moves between."""

    min_w: float = Field(gt=0)
    max_w: float = Field(gt=0)
    default_w: float = Field(gt=0)
    settable: bool = True
    idle_w: float = Field(gt=0)
    load_w: float = Field(gt=0)
    noise_frac: float = Field(default=0.02, ge=0, lt=0.5)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.min_w <= self.default_w <= self.max_w:
            raise ValueError(
                f"default_w ({self.default_w:g}) must lie between min_w ({self.min_w:g})"
                f" and max_w ({self.max_w:g})"
            )
        if self.idle_w >= self.load_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) must be below load_w ({self.load_w:g})")
        return self


class ThermalModel(_Strict):
    """First-order model: temperature relaxes towards ambient + c_per_w · power."""

    ambient_c: float = 30.0
    c_per_w: float = Field(gt=0)
    time_constant_s: float = Field(gt=0)
    slowdown_c: float = Field(gt=0)
    # NVML's shutdown temperature; left out where no source gives it, which turns off the
    # telemetry watch's shutdown rule for the simulated devices.
    shutdown_c: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _shutdown_above_slowdown(self) -> Self:
        if self.shutdown_c is not None and self.shutdown_c <= self.slowdown_c:
            raise ValueError(
                f"shutdown_c ({self.shutdown_c:g}) must be above slowdown_c ({self.slowdown_c:g})"
            )
        return self


class Interconnect(_Strict):
    name: str = Field(min_length=1)
    islands: list[list[int]] = Field(default_factory=list)


class DeviceSpec(_Strict):
    vendor: str = Field(min_length=1)
    model: str = Field(min_length=1)
    count: int = Field(gt=0, le=64)
    memory_gib: float = Field(gt=0)
    visibility_env: str | None = None
    busy_memory_frac: float = Field(default=0.85, ge=0, le=1)
    power: PowerModel
    thermal: ThermalModel
    interconnect: Interconnect
    # A saved summary table of the vendor's tool (under agents/profiles/recorded/): the node then
    # speaks the vendor's language. Its inventory is that table parsed by the real parser, and
    # every sample is the simulated state rendered in the tool's layout and parsed again.
    recorded: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.visibility_env is None and self.vendor not in VISIBILITY_BY_VENDOR:
            raise ValueError(f"visibility_env is required for vendor {self.vendor!r}")
        seen: set[int] = set()
        for island in self.interconnect.islands:
            for index in island:
                if not 0 <= index < self.count:
                    raise ValueError(f"interconnect.islands: device {index} is outside 0-{self.count - 1}")
                if index in seen:
                    raise ValueError(f"interconnect.islands: device {index} is in two islands")
                seen.add(index)
        return self

    @property
    def visibility(self) -> str:
        return self.visibility_env or VISIBILITY_BY_VENDOR[self.vendor]

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    def peers(self, index: int) -> list[int]:
        for island in self.interconnect.islands:
            if index in island:
                return sorted(i for i in island if i != index)
        return []


class NodeSpec(_Strict):
    default_name: str = Field(min_length=1)
    cpu_count: int = Field(gt=0)
    memory_gib: float = Field(gt=0)


class NodeProfile(_Strict):
    name: str = Field(min_length=1)
    node: NodeSpec
    devices: DeviceSpec


def _describe(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}
    words = {
        "missing": "required",
        "extra_forbidden": "unknown field",
        "string_too_short": "must not be empty",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        shown = f"{limit:g}" if isinstance(limit, int | float) else str(limit)
        text = f"must be {bounds[kind]} {shown}"
    else:
        text = words.get(kind) or str(error["msg"]).removeprefix("Value error, ")
    if kind not in ("missing", "extra_forbidden") and not isinstance(error.get("input"), dict | list):
        text += f" (got {error.get('input')!r})"
    return text


def format_validation_error(err: ValidationError) -> list[str]:
    lines = []
    for error in err.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(profile)"
        lines.append(f"{path}: {_describe(error)}")
    return lines


def parse_profile(data: Any, source: str = "profile") -> NodeProfile:
    try:
        return NodeProfile.model_validate(data)
    except ValidationError as e:
        raise ProfileError(f"invalid {source}:\n  " + "\n  ".join(format_validation_error(e))) from e


def load_profile(path: Path) -> NodeProfile:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ProfileError(f"cannot read profile {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise ProfileError(f"profile {path} is not valid YAML: {e}") from e
    return parse_profile(data, source=f"profile {path}")


def builtin_profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def builtin_profile(name: str) -> Path:
    path = PROFILE_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"no built-in profile {name!r}; built-in profiles: {', '.join(builtin_profile_names())}"
        )
    return path


def resolve_profile(spec: str | Path) -> Path:
    """A path to a profile file, or the name of a built-in one (`h100-sxm-8`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.suffix in ("", ".yaml") and path.parent == Path("."):
        return builtin_profile(path.name)
    raise ProfileError(
        f"profile {spec} does not exist; pass a YAML file or one of: {', '.join(builtin_profile_names())}"
    )
