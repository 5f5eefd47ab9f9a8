"""Named queues, their fair-share weights and their device quotas, read from a YAML file.

    queues:
      - name: research
        weight: 2
        cohort: lab
        quotas:
          - {vendor: ascend, model: "Ascend 910B", nominal: 64, borrowing_limit: 32}
          - {vendor: nvidia, nominal: 16}      # model omitted: all NVIDIA models together

Quotas follow Kueue: a queue may always use its `nominal` devices of a selector; in a cohort
it may borrow what the other members leave unused of theirs (selectors matched exactly),
up to `borrowing_limit` (omitted: as much as the cohort leaves). A pool no quota entry
matches is unlimited for that queue. Every entry matching a pool applies, so
`{vendor: nvidia, nominal: 16}` caps all NVIDIA use even next to a per-model entry.
The `default` queue always exists and is unlimited unless the file says otherwise.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from scheduler.catalog import model_key
from scheduler.config_errors import ConfigFileError, fail, show
from scheduler.placement.request import Pool
from scheduler.spec import dns_name, error_message, vendor_name

DEFAULT_QUEUE = "default"
# What people write for a vendor, by its software stack or product line.


class QueueConfigError(ConfigFileError):
    """A queue file with problems: one line per problem, each starting with the file."""


def _model(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise fail(f"must be a model name such as 'H100-SXM5-80GB', or omitted (got {show(value)})")
    return value.strip()


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            raise fail(f"must be a whole number of devices (got {show(value)})")
        value = int(value)
    if value < 0:
        raise fail(f"must be ≥ 0 (got {value})")
    return value


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise fail(f"must be a number > 0 (got {show(value)})")
    return float(value)


Name = Annotated[str, BeforeValidator(dns_name)]
Count = Annotated[int, BeforeValidator(_count)]


class QuotaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: Annotated[str, BeforeValidator(vendor_name)]
    model: Annotated[str | None, BeforeValidator(_model)] = None
    nominal: Count
    borrowing_limit: Annotated[int | None, BeforeValidator(lambda v: None if v is None else _count(v))] = None

    @property
    def selector(self) -> tuple[str, str]:
        """(vendor, model key or "" for all of the vendor's models)."""
        return (self.vendor, model_key(self.model) if self.model else "")

    def matches(self, pool: Pool) -> bool:
        return pool[0] == self.vendor and (self.model is None or model_key(pool[1]) == model_key(self.model))

    def describe(self) -> str:
        return f"{self.vendor} {self.model}" if self.model else f"{self.vendor} (all models)"


class QueueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    weight: Annotated[float, BeforeValidator(_weight)] = 1.0
    cohort: Annotated[str | None, BeforeValidator(lambda v: None if v is None else dns_name(v))] = None
    quotas: Annotated[list[QuotaSpec], BeforeValidator(lambda v: [] if v is None else v)] = Field(
        default_factory=list
    )


class _QueueFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queues: Annotated[list[QueueSpec], BeforeValidator(lambda v: [] if v is None else v)]


_FIELDS: dict[str, list[str]] = {
    "top": list(_QueueFile.model_fields),
    "queue": list(QueueSpec.model_fields),
    "quota": list(QuotaSpec.model_fields),
}


class QueueSet:
    """The queues a control plane schedules with; `default` is always among them."""

    def __init__(self, queues: Iterable[QueueSpec] = ()) -> None:
        self._queues: dict[str, QueueSpec] = {}
        for q in queues:
            if q.name in self._queues:
                raise ValueError(f"queue {q.name!r} given twice")
            self._queues[q.name] = q
        self._queues.setdefault(DEFAULT_QUEUE, QueueSpec(name=DEFAULT_QUEUE))
        self._cohorts: dict[str, list[QueueSpec]] = {}
        for q in self._queues.values():
            if q.cohort is not None:
                self._cohorts.setdefault(q.cohort, []).append(q)

    @classmethod
    def default(cls) -> QueueSet:
        return cls()

    @classmethod
    def load(cls, path: str | Path) -> QueueSet:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise QueueConfigError([f"cannot read: {exc.strerror or exc}"], source) from None
        except UnicodeDecodeError as exc:
            raise QueueConfigError([f"not UTF-8 text: {exc.reason}"], source) from None
        return cls.parse(text, source)

    @classmethod
    def parse(cls, text: str, source: str = "queues.yaml") -> QueueSet:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            what = getattr(exc, "problem", None) or str(exc)
            raise QueueConfigError([f"YAML syntax error{where}: {what}"], source) from None
        return cls.from_data(data, source)

    @classmethod
    def from_data(cls, data: object, source: str = "queues.yaml") -> QueueSet:
        if not isinstance(data, Mapping):
            got = "an empty document" if data is None else show(data)
            raise QueueConfigError([f"must be a mapping with a 'queues' list (got {got})"], source)
        try:
            parsed = _QueueFile.model_validate(dict(data))
        except ValidationError as exc:
            raise QueueConfigError(
                [_problem(e, data) for e in exc.errors(include_url=False)], source
            ) from None
        problems = _cross_checks(parsed.queues)
        if problems:
            raise QueueConfigError(problems, source)
        return cls(parsed.queues)

    def __iter__(self) -> Iterator[QueueSpec]:
        return iter(self._queues.values())

    def __len__(self) -> int:
        return len(self._queues)

    def __contains__(self, name: object) -> bool:
        return name in self._queues

    @property
    def names(self) -> list[str]:
        return list(self._queues)

    def get(self, name: str) -> QueueSpec | None:
        return self._queues.get(name)

    def check_queue(self, name: str) -> str | None:
        """None when jobs may name `name`; otherwise why not, in one line for the submitter."""
        if name in self._queues:
            return None
        known = sorted(self._queues)
        close = difflib.get_close_matches(name, known, n=1)
        meant = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown queue {name!r}{meant}; known queues: {', '.join(known)}"

    def weight(self, name: str) -> float:
        q = self._queues.get(name)
        return q.weight if q is not None else 1.0

    def quotas_for(self, queue: str, pool: Pool) -> list[QuotaSpec]:
        """Every quota entry of `queue` that covers `pool`; empty: unlimited there."""
        q = self._queues.get(queue)
        return [] if q is None else [e for e in q.quotas if e.matches(pool)]

    def quota_for(self, queue: str, pool: Pool) -> tuple[int, int | None] | None:
        """(nominal, borrowing limit) of the most specific entry covering `pool`; None: unlimited.
        A borrowing limit of None means "as much as the cohort leaves"; 0 outside a cohort."""
        entries = sorted(self.quotas_for(queue, pool), key=lambda e: e.model is None)
        if not entries:
            return None
        e = entries[0]
        q = self._queues[queue]
        return (e.nominal, e.borrowing_limit if q.cohort is not None else 0)

    def cohort_peers(self, queue: str) -> list[QueueSpec]:
        """The other queues of `queue`'s cohort, in file order."""
        q = self._queues.get(queue)
        if q is None or q.cohort is None:
            return []
        return [p for p in self._cohorts[q.cohort] if p.name != queue]


def _queue_label(data: Mapping[Any, Any], index: int) -> str:
    queues = data.get("queues")
    if isinstance(queues, list) and index < len(queues) and isinstance(queues[index], Mapping):
        name = queues[index].get("name")
        if isinstance(name, str) and name:
            return f" ({name})"
    return ""


def _path(loc: tuple[int | str, ...], data: Mapping[Any, Any]) -> str:
    out = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if n == 1 and loc[0] == "queues":
                out += _queue_label(data, part)
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(err: ErrorDetails, data: Mapping[Any, Any]) -> str:
    loc = tuple(err["loc"])
    kind = err["type"]
    where = _path(loc, data)
    if kind == "extra_forbidden":
        fields = _FIELDS["quota" if "quotas" in loc else "queue" if len(loc) > 1 else "top"]
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{where}: unknown field{hint}; allowed: {', '.join(fields)}"
    return f"{where}: {error_message(err)}"


def _cross_checks(queues: list[QueueSpec]) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    for i, q in enumerate(queues):
        label = f"queues[{i}] ({q.name})"
        if q.name in first:
            problems.append(
                f"{label}.name: queue {q.name!r} is already defined at queues[{first[q.name]}]; "
                "rename one or merge them"
            )
        first.setdefault(q.name, i)
        seen: dict[tuple[str, str], int] = {}
        for j, e in enumerate(q.quotas):
            if e.selector in seen:
                problems.append(
                    f"{label}.quotas[{j}]: {e.describe()} already has a quota at quotas[{seen[e.selector]}]; "
                    "keep one"
                )
            seen.setdefault(e.selector, j)
            if e.borrowing_limit is not None and q.cohort is None:
                problems.append(
                    f"{label}.quotas[{j}].borrowing_limit: a queue can only borrow within a cohort; "
                    "set the queue's cohort or remove borrowing_limit"
                )
    return problems
