"""Reading the boxed summary tables that nvidia-smi-shaped tools print, by their labels.

`ixsmi` (an nvidia-smi clone) and `mthreads-gmi` print each device as a band of lines under a
header band of the same height: header line k names, cell by cell, the values on line k of every
device band. Column widths, the number of cells and the labels themselves drift between tool
versions, so nothing here knows a column position: the cell boundaries come from the table's own
`|` separators, the labels from its own header, and a device's value is found by label.

A cell holds several labels separated by two or more spaces ("Fan  Temp  Perf  Pwr:Usage/Cap");
a label or value may contain single spaces ("Compute M.", "MTT S80", "On-die, EDC") and a slash
with any spacing around it ("93W / 350W", "25W /  150W", "N/A / N/A").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A token: words joined by single spaces, and pieces joined by a slash with any spacing.
_TOKEN = re.compile(r"[^\s|]+(?: [^\s|]+)*(?:\s*/\s*[^\s|]+(?: [^\s|]+)*)*")
_SEPARATOR_CHARS = frozenset("|+-=: ")
_BUS_ID = re.compile(r"([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])")
# A whole bus id, the domain optional (efsmi prints `00:2e:00.0`, amd-smi `0000:c1:00.0`).
_WHOLE_BUS_ID = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])")


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # offset in its cell (or line, for a header lookup)
    end: int


@dataclass(frozen=True)
class BandedTable:
    """`rows` maps each device band's labels (normalised by `label_key`) to the raw value text."""

    preamble: tuple[str, ...]  # the lines above the header (tool and driver versions)
    labels: tuple[str, ...]
    rows: tuple[dict[str, str], ...]


def label_key(label: str) -> str:
    return " ".join(label.split()).casefold()


def is_separator(line: str) -> bool:
    """`+-----+`, `|=====|`, `-------`: a rule line, never a row (a bare `|` line is a row)."""
    stripped = line.strip()
    return bool(stripped) and set(stripped) <= _SEPARATOR_CHARS and ("-" in stripped or "=" in stripped)


def tokens(text: str, offset: int = 0) -> list[Token]:
    return [Token(m.group(0), m.start() + offset, m.end() + offset) for m in _TOKEN.finditer(text)]


def bus_id_text(domain: int, bus: int, device: int, function: int) -> str:
    """A PCI address in the sysfs spelling, lower-case `0000:13:00.0`: every reader reports bus
    ids this way, so a vendor's CLI and library paths (and the kernel's view) agree."""
    return f"{domain:04x}:{bus:02x}:{device:02x}.{function:x}"


def pci_bus_id(text: str | None) -> str:
    """The first `00000000:13:00.0` / `0000:13:00.0`-style bus id found in `text`, in the
    sysfs spelling (`bus_id_text`); "" when there is none."""
    if not text:
        return ""
    m = _BUS_ID.search(text)
    if not m:
        return ""
    domain, bus, device, function = m.groups()
    return bus_id_text(int(domain, 16), int(bus, 16), int(device, 16), int(function))


def canonical_bus_id(raw: str) -> str:
    """A whole bus id as a tool or library prints it (`00000000:03:00.0`, `00:2e:00.0`,
    `c1:00.0`) in the sysfs spelling; text that is not a bus id comes back stripped and
    lower-cased rather than refused, so an odd spelling still matches itself across readers."""
    text = raw.strip().lower()
    m = _WHOLE_BUS_ID.fullmatch(text)
    if not m:
        return text
    domain, bus, device, function = m.groups()
    return bus_id_text(int(domain or "0", 16), int(bus, 16), int(device, 16), int(function))


def _cells(line: str, boundaries: Sequence[int]) -> dict[int, list[Token]]:
    """The tokens of `line` by header column. A segment's column is found from the header
    boundary nearest its left `|`, so a row whose separators drift a few characters, or a line
    that merges two columns (mthreads-gmi's ECC line), still lands in the right column."""
    pipes = [i for i, ch in enumerate(line) if ch == "|"]
    edges = [-1, *pipes, len(line)]
    cells: dict[int, list[Token]] = {}
    for left, right in itertools.pairwise(edges):
        if left < 0:
            column = 0
        else:
            nearest = (
                min(range(len(boundaries)), key=lambda b: abs(boundaries[b] - left)) if boundaries else -1
            )
            column = nearest + 1
        found = tokens(line[left + 1 : right])
        if found:
            cells.setdefault(column, []).extend(found)
    return cells


def _assign(labels: Sequence[Token], values: Sequence[Token]) -> dict[str, str]:
    """Values to the labels of one cell: in order when the counts match, else each value to the
    label it overlaps most (or lies nearest to), which covers a blank value among several."""
    if len(labels) == len(values):
        return {label_key(lab.text): val.text for lab, val in zip(labels, values, strict=True)}
    out: dict[str, str] = {}
    for val in values:

        def distance(lab: Token, val: Token = val) -> int:
            overlap = min(lab.end, val.end) - max(lab.start, val.start)
            return -overlap if overlap > 0 else min(abs(lab.start - val.start), abs(lab.end - val.end))

        best = label_key(min(labels, key=distance).text)
        out[best] = f"{out[best]} {val.text}" if best in out else val.text
    return out


def _header_start(lines: Sequence[str], required: Iterable[str]) -> int | None:
    wanted = {label_key(r) for r in required}
    for i, line in enumerate(lines):
        if wanted <= {label_key(t.text) for t in tokens(line)}:
            return i
    return None


def _starts_band(line: str) -> bool:
    first = tokens(line)
    return bool(first) and first[0].text.isdigit()


def parse_banded_table(
    text: str, *, header_labels: Iterable[str], stop_words: Iterable[str] = ("processes",)
) -> BandedTable | None:
    """The table in `text` whose first header line carries every one of `header_labels`, or
    None when there is no such header. Device bands start with a line whose first value is an
    integer (the device id); reading stops at a blank line after the first band, or at a line
    naming one of `stop_words` (the processes table that follows)."""
    lines = [line.expandtabs() for line in text.splitlines()]
    start = _header_start(lines, header_labels)
    if start is None:
        return None
    end = start
    while end < len(lines) and lines[end].strip() and not is_separator(lines[end]):
        end += 1
    header = lines[start:end]
    boundaries = max(([i for i, ch in enumerate(h) if ch == "|"] for h in header), key=len)
    header_cells = [_cells(h, boundaries) for h in header]
    labels = tuple(label_key(t.text) for cells in header_cells for col in sorted(cells) for t in cells[col])
    stops = tuple(s.casefold() for s in stop_words)

    bands: list[list[str]] = []
    for line in lines[end:]:
        if any(s in line.casefold() for s in stops):
            break
        if not line.strip():
            if bands:
                break
            continue
        if is_separator(line):
            continue
        if _starts_band(line) or not bands or len(bands[-1]) >= len(header):
            bands.append([])
        bands[-1].append(line)

    rows = []
    for band in bands:
        row: dict[str, str] = {}
        for k, line in enumerate(band[: len(header)]):
            for column, values in _cells(line, boundaries).items():
                row.update(
                    _assign(header_cells[k].get(column, []), values) if header_cells[k].get(column) else {}
                )
        rows.append(row)
    return BandedTable(tuple(lines[:start]), labels, tuple(rows))


def pick(row: dict[str, str], *aliases: str) -> str | None:
    """The value under the first of `aliases` the row has (labels as `label_key` spells them)."""
    for alias in aliases:
        value = row.get(label_key(alias))
        if value is not None:
            return value
    return None
