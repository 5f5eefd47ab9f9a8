"""The device catalog: what each accelerator model is, as data with a source for every figure.

The data lives in `devices.yaml` beside this module. Figures nobody could confirm are `None`
here, never a guess, so every consumer must cope with None: `dense_tflops` falls back from BF16
to FP16, and `relative_speed` answers None when either side is unknown.

An entry describes one *schedulable chip*: a board that carries two chips (MLU370-X8, BI-V150,
Atlas 300I Duo, MI250X, an Ascend 910C NPU) is two devices to Corral, so memory, TDP and TFLOPS
are per chip and the board is recorded beside them (`chips_per_board`, `board_tdp_w`). Vendor
rules on how many devices one process may take (`allocation`) are data here too; placement
reads them through `allocation_rule`.

Names are matched ignoring case and treating runs of spaces, `-` and `_` alike, so the NVML name
("NVIDIA H100 80GB HBM3"), a trace code ("V100M32") and a profile's name ("Ascend-910B") all
find their entry. Because a lookup may leave the vendor out, every name and alias is unique
across the whole catalog.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

CATALOG_PATH = Path(__file__).resolve().parent / "devices.yaml"

VENDORS = (
    "nvidia",
    "amd",
    "ascend",
    "cambricon",
    "hygon",
    "moorethreads",
    "iluvatar",
    "metax",
    "kunlunxin",
    "enflame",
)
# Earlier spellings (Huawei for Ascend; Moore Threads after its k8s domain) still find entries.
_VENDOR_ALIASES = {"mthreads": "moorethreads", "huawei": "ascend"}

# Fields that state a fact about the hardware, so each non-null value must name its source.
SOURCED_FIELDS = (
    "memory_gib",
    "tdp_w",
    "bf16_tflops",
    "fp16_tflops",
    "interconnect",
    "island_size",
    "collective",
    "software",
    "k8s_resource",
    "visibility_env",
    "chips_per_board",
    "board_tdp_w",
    "allocation",
)
# Defaults that state nothing worth citing: a board of one chip, no allocation rule.
_UNCITED_DEFAULTS: dict[str, object] = {"chips_per_board": 1, "board_tdp_w": None, "allocation": None}
# A chip's TDP is its share of the board's; allow for the rounding of a written-out share.
_SHARE_TOLERANCE_W = 0.5

# The research notes' tags: V-out one captured tool output, S secondary, U unconfirmed.
# No tag means a datasheet or the vendor's own artefact.
Confidence = Literal["V", "V-out", "S", "U"]

_TOP_LEVEL_KEYS = ("version", "common", "models")

# strict: YAML reads `"300"` and `yes` as text and bool; neither is a figure.
_Figure = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
_Count = Annotated[int, Field(strict=True, gt=0)]
_Text = Annotated[str, Field(strict=True, min_length=1)]


class CatalogError(ValueError):
    """A catalog that cannot be used. `problems` holds one line per bad field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def name_key(name: str) -> str:
    """The form names are compared in: case-folded, spaces/`-`/`_` runs collapsed to one space."""
    return re.sub(r"[\s_\-]+", " ", name.casefold()).strip()


def vendor_key(vendor: str) -> str:
    v = vendor.strip().casefold()
    return _VENDOR_ALIASES.get(v, v)


class AllocationRule(BaseModel):
    """How many devices of one model a single worker (one process, one pod) may be given, and
    which ones: a vendor's rule kept as data, e.g. Kunlunxin P800 takes 1, 2, 4 or 8 cards and
    keeps 1, 2 or 4 within one XPU Link island; an Ascend 910C's dies go in pairs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Device counts a worker may have; None: any count.
    sizes: tuple[_Count, ...] | None = None
    # Devices come in index-aligned units of this many (devices k·n … k·n+n-1 are one unit,
    # e.g. the two dies of one 910C NPU); a worker takes whole units. None: single devices.
    multiple_of: _Count | None = None
    # A worker's devices share one interconnect island when the count fits in one; a larger
    # count takes whole islands.
    within_island: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sizes is not None:
            if not self.sizes:
                raise ValueError("sizes: list at least one count, or leave sizes out for any count")
            if list(self.sizes) != sorted(set(self.sizes)):
                raise ValueError(f"sizes: must be ascending without repeats (got {list(self.sizes)})")
            if self.multiple_of and any(n % self.multiple_of for n in self.sizes):
                raise ValueError(f"sizes: every size must be a multiple of multiple_of ({self.multiple_of})")
        if self.sizes is None and not self.multiple_of and not self.within_island:
            raise ValueError("states no rule; write `allocation: null` instead")
        return self

    @property
    def unit(self) -> int:
        return self.multiple_of or 1

    def allows(self, count: int) -> bool:
        """Whether a worker may have `count` devices of this model (0 devices always may)."""
        if count == 0:
            return True
        if self.sizes is not None and count not in self.sizes:
            return False
        return count % self.unit == 0

    def describe(self) -> str:
        """The rule in words, for the reasons a job waits: 'takes 1, 2, 4 or 8 devices per
        worker, within one interconnect island where they fit in one'."""
        parts: list[str] = []
        if self.sizes is not None:
            counts = [str(n) for n in self.sizes]
            listed = counts[0] if len(counts) == 1 else f"{', '.join(counts[:-1])} or {counts[-1]}"
            parts.append(f"takes {listed} devices per worker")
        if self.multiple_of:
            parts.append(f"in index-aligned groups of {self.multiple_of}")
        if self.within_island:
            parts.append("within one interconnect island where they fit in one")
        text = ", ".join(parts)
        return text if text.startswith("takes") else f"takes devices {text}"


class DeviceModel(BaseModel):
    """One accelerator model, as one schedulable chip; None means nobody could confirm it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str
    model: _Text
    aliases: tuple[_Text, ...] = ()
    memory_gib: _Figure | None
    tdp_w: _Figure | None
    bf16_tflops: _Figure | None
    fp16_tflops: _Figure | None
    interconnect: _Text | None
    island_size: _Count | None
    collective: _Text | None
    software: _Text | None
    k8s_resource: _Text | None
    visibility_env: _Text | None
    # The board as sold: how many schedulable chips it carries (None: not known) and its power.
    chips_per_board: _Count | None = 1
    board_tdp_w: _Figure | None = None
    allocation: AllocationRule | None = None
    sources: Mapping[str, _Text] = Field(default_factory=dict)
    confidence: Mapping[str, Confidence] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("vendor", mode="before")
    @classmethod
    def _known_vendor(cls, v: object) -> object:
        if v not in VENDORS:
            raise ValueError(f"must be one of {', '.join(VENDORS)} (got {v!r})")
        return v

    @model_validator(mode="after")
    def _sourced(self) -> Self:
        problems = _rule_problems(self)
        if problems:
            summary = "; ".join(f"{path}: {text}" for path, text in problems)
            raise PydanticCustomError("catalog_rule", "{summary}", {"summary": summary, "problems": problems})
        return self

    @property
    def dense_tflops(self) -> float | None:
        """BF16 where the part has it, else FP16 (Volta, Turing, Pascal), else unknown."""
        return self.bf16_tflops if self.bf16_tflops is not None else self.fp16_tflops

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)

    def needs_source(self, field: str) -> bool:
        """Whether `field` states a fact that must be cited: any value but null and the
        uncited defaults (a one-chip board, no allocation rule)."""
        value = getattr(self, field)
        if value is None:
            return False
        return field not in _UNCITED_DEFAULTS or value != _UNCITED_DEFAULTS[field]

    def label(self) -> str:
        return f"{self.vendor} {self.model}"


def _rule_problems(m: DeviceModel) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    fields = ", ".join(SOURCED_FIELDS)
    for key in m.sources:
        if key not in SOURCED_FIELDS:
            problems.append((f"sources.{key}", f"not a field that takes a source; one of {fields}"))
    for key in m.confidence:
        if key not in SOURCED_FIELDS:
            problems.append((f"confidence.{key}", f"not a tagged field; one of {fields}"))
        elif getattr(m, key) is None:
            problems.append((f"confidence.{key}", "tags a null figure; drop the tag or fill in the figure"))
    for field in SOURCED_FIELDS:
        if m.needs_source(field) and field not in m.sources:
            fix = f"add sources.{field}, or write null if unknown"
            problems.append((field, f"has a value but no source; {fix}"))
    problems.extend(_board_problems(m))
    seen = {name_key(m.model): "model"}
    for i, alias in enumerate(m.aliases):
        earlier = seen.setdefault(name_key(alias), f"aliases[{i}]")
        if earlier != f"aliases[{i}]":
            why = "case, spaces, '-' and '_' are ignored"
            problems.append((f"aliases[{i}]", f"{alias!r} repeats {earlier} ({why})"))
    return problems


def _board_problems(m: DeviceModel) -> list[tuple[str, str]]:
    """A board's power is the chips' together: catch a per-board figure left in `tdp_w`."""
    if m.board_tdp_w is None:
        return []
    if m.chips_per_board == 1:
        return [("board_tdp_w", "is for boards of several chips; a one-chip board's power is tdp_w")]
    if m.tdp_w is not None and m.chips_per_board is not None:
        share = m.board_tdp_w / m.chips_per_board
        if abs(m.tdp_w - share) > _SHARE_TOLERANCE_W:
            why = f"board_tdp_w / chips_per_board = {share:g}; tdp_w is one chip's share of the board"
            return [("tdp_w", f"must be {why} (got {m.tdp_w:g})")]
    return []


class DeviceCatalog:
    """The accelerator models Corral knows, looked up by vendor and any of their names."""

    def __init__(self, models: Iterable[DeviceModel], origin: str = "catalog") -> None:
        self._models = tuple(models)
        problems = _collisions(list(enumerate(self._models)))
        if problems:
            raise CatalogError([f"{origin}: {p}" for p in problems])
        self._by_name = {name_key(n): m for m in self._models for n in m.names}

    @classmethod
    def load(cls, path: Path | None = None) -> DeviceCatalog:
        """The catalog in `path`, or the packaged one (read once per process) when None."""
        if path is None:
            return _packaged()
        return cls._from_file(path, str(path))

    @classmethod
    def _from_file(cls, path: Path, origin: str) -> DeviceCatalog:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CatalogError([f"{origin}: cannot read: {e.strerror or e}"]) from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise CatalogError([f"{origin}: not valid YAML: {e}"]) from e
        return cls.parse(data, origin)

    @classmethod
    def parse(cls, data: Any, origin: str = "catalog") -> DeviceCatalog:
        """A catalog from already-loaded YAML data; every problem is reported, not just the first."""
        if not isinstance(data, dict):
            raise CatalogError([f"{origin}: must be a mapping with `version: 1` and a `models:` list"])
        problems = [
            f"{origin}: {key}: unknown top-level key; the keys are {', '.join(_TOP_LEVEL_KEYS)}"
            for key in data
            if key not in _TOP_LEVEL_KEYS
        ]
        if data.get("version") != 1:
            problems.append(f"{origin}: version: must be 1 (got {data.get('version')!r})")
        raw = data.get("models")
        if not isinstance(raw, list) or not raw:
            raise CatalogError([*problems, f"{origin}: models: must be a non-empty list of device models"])
        good: list[tuple[int, DeviceModel]] = []
        for i, entry in enumerate(raw):
            where = f"{origin}: models[{i}]{_raw_label(entry)}"
            if not isinstance(entry, dict):
                problems.append(f"{where}: must be a mapping of fields")
                continue
            try:
                good.append((i, DeviceModel.model_validate(entry)))
            except ValidationError as e:
                problems.extend(f"{where}.{path}: {text}" for path, text in _describe(e))
        problems.extend(f"{origin}: {p}" for p in _collisions(good))
        if problems:
            raise CatalogError(problems)
        return cls((m for _, m in good), origin)

    def get(self, vendor: str, model: str) -> DeviceModel | None:
        """The model named `model` (its catalog name or any alias); `vendor` "" matches any vendor."""
        found = self._by_name.get(name_key(model))
        if found is None or (vendor and found.vendor != vendor_key(vendor)):
            return None
        return found

    def models(self, vendor: str | None = None) -> tuple[DeviceModel, ...]:
        if not vendor:
            return self._models
        v = vendor_key(vendor)
        return tuple(m for m in self._models if m.vendor == v)

    def relative_speed(
        self, vendor: str, model: str, reference: tuple[str, str] = ("nvidia", "A100 80GB")
    ) -> float | None:
        """Dense tensor throughput of `model` over `reference`'s; None where either is unknown."""
        target, ref = self.get(vendor, model), self.get(*reference)
        if target is None or ref is None:
            return None
        mine, theirs = target.dense_tflops, ref.dense_tflops
        if mine is None or theirs is None:
            return None
        return mine / theirs

    def __iter__(self) -> Iterator[DeviceModel]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        return f"DeviceCatalog({len(self._models)} models)"


@functools.cache
def model_key(name: str) -> str:
    """The key two names of one model share: the packaged catalog's name when it knows the
    model under any alias (`Ascend-910B`, `Ascend 910B`, `910B2`...), else the name folded.
    Requests, quotas and devices compare models through it."""
    found = _packaged().get("", name)
    return name_key(found.model if found is not None else name)


@functools.cache
def allocation_rule(vendor: str, model: str) -> AllocationRule | None:
    """The packaged catalog's allocation rule for (vendor, model); None where the model has
    none or is not in the catalog. Cached: placement asks for every candidate device set."""
    found = _packaged().get(vendor, model)
    return found.allocation if found is not None else None


@functools.cache
def _packaged() -> DeviceCatalog:
    return DeviceCatalog._from_file(CATALOG_PATH, CATALOG_PATH.name)


def _raw_label(entry: object) -> str:
    if not isinstance(entry, dict):
        return ""
    parts = [str(entry[k]) for k in ("vendor", "model") if isinstance(entry.get(k), str)]
    return f" ({' '.join(parts)})" if parts else ""


def _collisions(entries: list[tuple[int, DeviceModel]]) -> list[str]:
    problems: list[str] = []
    owner: dict[str, tuple[int, DeviceModel, str]] = {}
    for i, m in entries:
        for j, name in enumerate(m.names):
            where = "model" if j == 0 else f"aliases[{j - 1}]"
            key = name_key(name)
            if key not in owner:
                owner[key] = (i, m, where)
                continue
            k, other, other_where = owner[key]
            if where == other_where == "model" and m.vendor == other.vendor:
                problems.append(
                    f"models[{i}] ({m.label()}): duplicates models[{k}] ({other.label()});"
                    " each (vendor, model) appears once"
                )
            else:
                problems.append(
                    f"models[{i}] ({m.label()}).{where}: {name!r} is already the {other_where} of"
                    f" models[{k}] ({other.label()}); names and aliases must be unique across the catalog"
                )
    return problems


def _describe(err: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for e in err.errors():
        if e["type"] == "catalog_rule":
            out.extend((path, text) for path, text in (e.get("ctx") or {})["problems"])
            continue
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        out.append((path or "(entry)", _explain(e)))
    return out


def _explain(e: ErrorDetails) -> str:
    kind, got = e["type"], e.get("input")
    shown = repr(got) if isinstance(got, str) else str(got)
    field = str(e["loc"][0]) if e["loc"] else ""
    if kind == "missing":
        return "required; write null if unknown" if field in SOURCED_FIELDS else "required"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, list(DeviceModel.model_fields), n=1)
        fields = ", ".join(DeviceModel.model_fields)
        hint = f"did you mean {close[0]!r}?" if close else f"the fields are {fields}"
        return f"unknown field; {hint}"
    if kind == "greater_than":
        whole = "whole " if field == "island_size" else ""
        return f"must be a positive {whole}number (got {shown})"
    if kind in ("float_type", "finite_number"):
        return f"must be a number, or null if unknown (got {shown})"
    if kind == "int_type":
        return f"must be a whole number, or null if unknown (got {shown})"
    if kind == "string_type":
        return f"must be text (got {shown})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "literal_error":
        return f"must be one of V, V-out, S, U (got {shown})"
    text = str(e["msg"]).removeprefix("Value error, ")
    return text if "(got" in text else f"{text} (got {shown})"
