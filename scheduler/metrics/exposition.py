"""A fast writer of the Prometheus text format (0.0.4) for families with many series.

prometheus_client builds a `Sample` per series and validates every label name of every
sample as it writes; at 10,000 nodes (one series per node and state, plus heartbeat ages)
that alone took about a second per scrape. A `Family` here holds finished text lines: label
names are checked once, each series is written once when added, and callers that scrape the
same series again and again (one per node) may keep the text of a line, or of a block of
lines, and add it again with `add_text`. `encode` writes Families and prometheus_client
`Metric`s alike, so small families can stay the library's. The output parses with
prometheus_client's own parser (the tests do), and `as_metrics` goes back that way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from scheduler.metrics.histogram import HistogramSnapshot

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
KINDS = ("gauge", "counter", "histogram")


def escape(value: str) -> str:
    """A label value as the text format quotes it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def number(value: float) -> str:
    """A sample value as Prometheus reads it (Go's float syntax)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


@dataclass
class Family:
    """One metric family: name (a counter's without `_total`), kind, help and label names."""

    name: str
    kind: str
    doc: str
    labels: tuple[str, ...] = ()
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not _NAME.match(self.name):
            raise ValueError(f"name: {self.name!r} is not a Prometheus metric name")
        for label in self.labels:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise ValueError(f"labels: {label!r} is not a usable label name")
        self._sample = f"{self.name}_total" if self.kind == "counter" else self.name

    def prefix(self, values: Sequence[str], suffix: str = "", extra: str = "") -> str:
        """The text of a series up to its value: `name{a="x",b="y"} `."""
        pairs = [f'{label}="{escape(v)}"' for label, v in zip(self.labels, values, strict=True)]
        if extra:
            pairs.append(extra)
        labels = "{" + ",".join(pairs) + "}" if pairs else ""
        return f"{self._sample if not suffix else self.name + suffix}{labels} "

    def add(self, values: Sequence[str], value: float) -> None:
        """One series; for a counter, its total."""
        self.lines.append(f"{self.prefix(values)}{number(value)}\n")

    def add_text(self, text: str) -> None:
        """Lines made earlier by `prefix`/`line` (each ending in a newline)."""
        self.lines.append(text)

    def line(self, values: Sequence[str], value: float) -> str:
        return f"{self.prefix(values)}{number(value)}\n"

    def add_histogram(self, values: Sequence[str], snap: HistogramSnapshot) -> None:
        for bound, count in snap.buckets:
            self.lines.append(f"{self.prefix(values, '_bucket', f'le={_quoted(bound)}')}{count}\n")
        self.lines.append(f"{self.prefix(values, '_count')}{snap.count}\n")
        self.lines.append(f"{self.prefix(values, '_sum')}{number(snap.sum_s)}\n")

    def header(self) -> str:
        doc = self.doc.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self._sample} {doc}\n# TYPE {self._sample} {self.kind}\n"


def _quoted(bound: float) -> str:
    return f'"{number(bound)}"'


def _encode_metric(metric: Metric) -> Iterator[str]:
    head = f"{metric.name}_total" if metric.type == "counter" else metric.name
    doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    yield f"# HELP {head} {doc}\n# TYPE {head} {metric.type}\n"
    for s in metric.samples:
        pairs = ",".join(f'{k}="{escape(v)}"' for k, v in s.labels.items())
        yield f"{s.name}{{{pairs}}} {number(s.value)}\n" if pairs else f"{s.name} {number(s.value)}\n"


def encode(families: Iterable[Family | Metric]) -> bytes:
    out: list[str] = []
    for family in families:
        if isinstance(family, Family):
            out.append(family.header())
            out += family.lines
        else:
            out += _encode_metric(family)
    return "".join(out).encode()


def as_metrics(families: Iterable[Family | Metric]) -> Iterator[Metric]:
    """The same families as prometheus_client Metrics (slow: for registries and tests)."""
    yield from text_string_to_metric_families(encode(families).decode())
