"""Reading numbers out of vendor tool text: one place for units and for "no value" spellings.

Tools print a missing reading as `N/A`, `NA`, `-`, `--` or nothing; every helper here answers
None for those and raises SnapshotError, naming the field, for anything else it cannot read.
"""

from __future__ import annotations

import re

from agents.backends.vendors.snapshot import MIB, SnapshotError

MISSING = frozenset({"", "n/a", "na", "-", "--", "none", "not supported", "unknown", "null"})
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_WATTS = re.compile(rf"^({_NUMBER})\s*(w|mw|uw|µw|kw)?$", re.IGNORECASE)
_CELSIUS = re.compile(rf"^({_NUMBER})\s*(?:°\s*c|℃|c)?$", re.IGNORECASE)
_PERCENT = re.compile(rf"^({_NUMBER})\s*%?$")
_SIZE = re.compile(rf"^({_NUMBER})\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?$", re.IGNORECASE)
# "3410 / 65536", "61258/ 65536", "0 MiB/ 20638 MiB", "2MiB(16384MiB)", "858/65536 MiB"
_USED_TOTAL = re.compile(
    rf"^({_NUMBER})\s*([a-z]*)\s*[/(]\s*({_NUMBER})\s*([a-z]*)\s*\)?\s*([a-z]*)$", re.IGNORECASE
)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": MIB, "mib": MIB,  # tools print MiB as "MB"
    "gb": 1024**3, "gib": 1024**3, "tb": 1024**4, "tib": 1024**4,
}  # fmt: skip
_WATT_FACTOR = {"w": 1.0, "mw": 1e-3, "uw": 1e-6, "µw": 1e-6, "kw": 1e3}


def is_missing(text: str | None) -> bool:
    return text is None or text.strip().casefold() in MISSING


def _fail(field: str, text: str, expected: str) -> SnapshotError:
    return SnapshotError(f"{field}: cannot read {text!r} as {expected}")


def number(text: str | None, field: str) -> float | None:
    if is_missing(text):
        return None
    assert text is not None
    try:
        return float(text.strip())
    except ValueError:
        raise _fail(field, text, "a number") from None


def integer(text: str | None, field: str, base: int = 10) -> int | None:
    if is_missing(text):
        return None
    assert text is not None
    try:
        return int(text.strip(), base)
    except ValueError:
        raise _fail(field, text, "an integer") from None


def watts(text: str | None, field: str, unit: str = "w") -> float | None:
    """`93.9`, `107 W`, `85W`, `350.00 W`; a bare number is in `unit` (w, mw, uw)."""
    if is_missing(text):
        return None
    assert text is not None
    m = _WATTS.match(text.strip())
    if not m:
        raise _fail(field, text, "watts")
    return float(m.group(1)) * _WATT_FACTOR[(m.group(2) or unit).casefold()]


def celsius(text: str | None, field: str) -> float | None:
    """`41`, `28C`, `49.0C`, `45 ℃`, `45 °C`."""
    if is_missing(text):
        return None
    assert text is not None
    m = _CELSIUS.match(text.strip())
    if not m:
        raise _fail(field, text, "degrees Celsius")
    return float(m.group(1))


def percent(text: str | None, field: str) -> float | None:
    if is_missing(text):
        return None
    assert text is not None
    m = _PERCENT.match(text.strip())
    if not m:
        raise _fail(field, text, "a percentage")
    return float(m.group(1))


def size_bytes(text: str | None, field: str, unit: str = "mib") -> int | None:
    """`98304 MiB`, `42976MiB`, `2097152000 bytes`; a bare number is in `unit`."""
    if is_missing(text):
        return None
    assert text is not None
    cleaned = re.sub(r"\s*bytes?$", " b", text.strip(), flags=re.IGNORECASE)
    m = _SIZE.match(cleaned.strip())
    if not m:
        raise _fail(field, text, "a memory size")
    return int(float(m.group(1)) * _SIZE_FACTOR[(m.group(2) or unit).casefold()])


def used_total_bytes(text: str | None, field: str, unit: str = "mib") -> tuple[int | None, int | None]:
    """`used / total` in any of the spellings tools use, both in bytes; (None, None) if missing."""
    if is_missing(text):
        return None, None
    assert text is not None
    m = _USED_TOTAL.match(text.strip())
    if not m:
        raise _fail(field, text, "'used / total' memory")
    used_unit = m.group(2) or m.group(4) or m.group(5) or unit
    total_unit = m.group(4) or m.group(5) or m.group(2) or unit
    try:
        used = float(m.group(1)) * _SIZE_FACTOR[used_unit.casefold()]
        total = float(m.group(3)) * _SIZE_FACTOR[total_unit.casefold()]
    except KeyError:
        raise _fail(field, text, "'used / total' memory") from None
    return int(used), int(total)


def split_pair(text: str, sep: str = "/") -> tuple[str, str]:
    """`93W / 350W` -> ("93W", "350W"); a text without `sep` is (text, "").
    `N/A / N/A` -> ("N/A", "N/A"): the slash inside `N/A` is not the separator."""
    if sep == "/":
        protected = re.sub(r"\bN/A\b", lambda m: m.group(0).replace("/", "\0"), text, flags=re.IGNORECASE)
        left, _, right = protected.partition(sep)
        return left.replace("\0", "/").strip(), right.replace("\0", "/").strip()
    left, _, right = text.partition(sep)
    return left.strip(), right.strip()
