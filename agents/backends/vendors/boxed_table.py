"""Reading the boxed summary tables that nvidia-smi-style vendor tools print (mx-smi, xpu_smi).

Such a table has a header block of one or more lines, each split by `|` into cells, each cell
naming one or more columns ("GPU  NAME", "Temp  Pwr:Usage/Cap"); a `|===|` rule; then one block
per device, as many lines as the header, closed by a `+---+` rule. The value for a label sits in
the same line and cell of the device block as the label sits in the header. Reading by label
rather than by column position is what survives the layout drift between tool versions (mx-smi
2.2.9 moved power to the first cell and temperature to the second; a version may drop a column).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.backends.vendors.snapshot import SnapshotError

_RULE = re.compile(r"^[|+][-=+|]+[|+]$")
# A unit a tool sometimes prints apart from its number ("45 C", "0 %"); joined back on before
# values are split, so the token count per label stays right.
_LONE_UNITS = frozenset({"c", "℃", "°c", "w", "%", "mib", "mb", "gib"})
_NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?$")
_RULE_CELL = re.compile(r"[-=+\s]*")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class BoxedTable:
    """`header` lists, per header line, per cell, the labels (casefolded); `records` holds one
    label -> value text map per device block, in the order the tool printed them."""

    header: tuple[tuple[tuple[str, ...], ...], ...]
    records: tuple[dict[str, str], ...]

    def labels(self) -> set[str]:
        return {label for line in self.header for cell in line for label in cell}


def table_cells(line: str) -> list[str]:
    """`| a | b |` -> ["a", "b"] (inner text, unstripped)."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|"):
        body = body[:-1]
    return body.split("|")


def boxed_rows(text: str) -> list[list[str]]:
    """Every `| a | b |` line of `text` as its stripped cells, rule rows (`|---+===|`) dropped:
    for tables whose device rows are told apart by what they hold rather than by a fixed block
    height (amd-smi, efsmi), read with `read_labelled_row`."""
    rows = []
    for line in text.splitlines():
        stripped = line.strip()
        if len(stripped) < 2 or stripped[0] != "|" or stripped[-1] != "|":
            continue
        cells = [cell.strip() for cell in table_cells(stripped)]
        if all(_RULE_CELL.fullmatch(cell) for cell in cells):
            continue
        rows.append(cells)
    return rows


def read_labelled(
    labels: Sequence[str], text: str, patterns: Mapping[str, re.Pattern[str]], *, strict: bool, source: str
) -> dict[str, str]:
    """Consume `text` label by label, each value matched by its label's pattern (one token for a
    label without one); the last label takes the rest. A value that does not look like its
    label's raises SnapshotError when `strict` (efsmi: the row is not the kind these labels
    name), else the next token is taken, or "" when none is left (amd-smi, rocm-smi: a spelling
    that drifted still reads)."""
    values: dict[str, str] = {}
    rest = text.strip()
    for position, label in enumerate(labels):
        if position == len(labels) - 1:
            values[label] = rest.strip()
            break
        m = patterns.get(label, _TOKEN).match(rest) or (None if strict else _TOKEN.match(rest))
        if m is None:
            if strict:
                raise SnapshotError(f"{source}: cannot read {label} from {text!r}")
            values[label] = ""
            continue
        values[label] = m.group(0).strip()
        rest = rest[m.end() :].lstrip()
    return values


def read_labelled_row(
    template: Sequence[Sequence[str]],
    cells: Sequence[str],
    patterns: Mapping[str, re.Pattern[str]],
    *,
    strict: bool,
    source: str,
) -> dict[str, str]:
    """One `boxed_rows` row read cell by cell against the header row's labels (`template`)."""
    values: dict[str, str] = {}
    for labels, cell in zip(template, cells, strict=False):
        values.update(read_labelled(labels, cell, patterns, strict=strict, source=source))
    return values


def _is_rule(line: str) -> bool:
    return bool(_RULE.match(line.strip()))


def header_labels(cell: str, phrases: Sequence[str]) -> tuple[str, ...]:
    """The labels of one header cell: known multi-word phrases ("Volatile Uncorr. ECC") first,
    then every other whitespace-separated word is a label of its own."""
    text = cell.strip()
    if not text:
        return ()
    alternatives = [re.escape(p) for p in sorted(phrases, key=len, reverse=True)]
    pattern = re.compile("|".join([*alternatives, r"\S+"]), re.IGNORECASE)
    return tuple(m.group(0).casefold() for m in pattern.finditer(text))


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for token in text.split():
        if tokens and token.casefold() in _LONE_UNITS and _NUMBER.match(tokens[-1]):
            tokens[-1] += token
        else:
            tokens.append(token)
    return tokens


def split_values(text: str, labels: Sequence[str], wide: frozenset[str]) -> list[str]:
    """Split one value cell among its labels. Every label takes one token except the first
    `wide` one (a name, `48W / 350W`, a state sentence), which takes whatever is left over."""
    if not labels:
        return []
    if len(labels) == 1:
        return [text.strip()]
    tokens = _tokens(text)
    if len(tokens) <= len(labels):
        return tokens + [""] * (len(labels) - len(tokens))
    wide_at = next((i for i, label in enumerate(labels) if label in wide), len(labels) - 1)
    after = len(labels) - wide_at - 1
    end = len(tokens) - after
    return [*tokens[:wide_at], " ".join(tokens[wide_at:end]), *tokens[end:]]


def _header_span(lines: Sequence[str], marker: re.Pattern[str] | None) -> tuple[int, int] | None:
    """(first header line, the rule under the header) or None when there is no such table. The
    header ends at the first `|===|` rule; where a (hand-abridged) table has none, at the first
    rule under the line that `marker` finds."""
    for at, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("|=") and _is_rule(stripped):
            return _span_ending_at(lines, at)
    if marker is None:
        return None
    found = next((i for i, line in enumerate(lines) if marker.search(line) and not _is_rule(line)), None)
    if found is None:
        return None
    rule = next((i for i in range(found + 1, len(lines)) if _is_rule(lines[i])), None)
    return None if rule is None else _span_ending_at(lines, rule)


def _span_ending_at(lines: Sequence[str], end: int) -> tuple[int, int] | None:
    start = end
    while start > 0 and not _is_rule(lines[start - 1]) and lines[start - 1].strip().startswith("|"):
        start -= 1
    return (start, end) if start < end else None


def _device_blocks(lines: Sequence[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or not stripped.startswith(("|", "+")):
            break  # the device table ends at a blank line (a process table may follow)
        if _is_rule(stripped):
            if current:
                blocks.append(current)
            current = []
            continue
        current.append(stripped)
    if current:
        blocks.append(current)
    return blocks


def parse_boxed_table(
    text: str,
    *,
    phrases: Sequence[str] = (),
    wide: frozenset[str] = frozenset(),
    marker: re.Pattern[str] | None = None,
) -> BoxedTable | None:
    """The table in `text`, or None where `text` has no boxed header; SnapshotError where a
    device block does not have the header's shape."""
    lines = text.splitlines()
    span = _header_span(lines, marker)
    if span is None:
        return None
    start, end = span
    header = tuple(
        tuple(header_labels(cell, phrases) for cell in table_cells(line)) for line in lines[start:end]
    )
    records = []
    for block in _device_blocks(lines[end + 1 :]):
        if len(block) != len(header):
            raise SnapshotError(
                f"a device block has {len(block)} lines where the header has {len(header)}: {block[0]!r}"
            )
        record: dict[str, str] = {}
        for header_line, value_line in zip(header, block, strict=True):
            cells = table_cells(value_line)
            for i, labels in enumerate(header_line):
                values = split_values(cells[i] if i < len(cells) else "", labels, wide)
                for label, value in zip(labels, values, strict=True):
                    record.setdefault(label, value)
        records.append(record)
    return BoxedTable(header, tuple(records))


def glimpse(text: str, limit: int = 80) -> str:
    """What a refused text looked like, for the error message: its first non-blank line."""
    for line in text.splitlines():
        if line.strip():
            shown = line.strip()
            return repr(shown if len(shown) <= limit else shown[:limit] + "...")
    return "empty text"
