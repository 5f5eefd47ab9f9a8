"""`corral report` as Markdown or as one self-contained HTML page (inline CSS, no script, nothing
fetched), both from the same sections of a ReliabilityReport message."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

COMPONENT_NAMES = {
    "gpu": "GPU",
    "gpu_memory": "GPU memory",
    "gpu_interconnect": "GPU interconnect",
    "host": "Host",
    "network": "Network",
    "software": "System software",
    "job": "Job",
    "planned": "Planned",
    "unknown": "Unknown",
    "all": "All hardware",
}
GPU_STATES = (
    ("productive_s", "Productive"),
    ("recompute_lost_s", "Lost to recomputation"),
    ("restart_lost_s", "Lost to restart"),
    ("queued_s", "Queued (devices asked for)"),
    ("idle_s", "Idle (offered, not held)"),
)
PHASE_NAMES = {
    "detect": "Detect (failure → decision)",
    "reschedule": "Reschedule (decision → placed)",
    "restore": "Restore (placed → running)",
    "total": "Total (failure → running)",
}


@dataclass(frozen=True)
class Section:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    numeric: frozenset[int]  # right-aligned columns
    intro: str = ""
    empty: str = "none in this window"
    notes: list[str] = field(default_factory=list)


def hours(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    if value >= 0.0001:
        return f"{value:.3g}"  # three significant digits, not yet in exponent notation
    return "< 0.0001"


def percent(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


def seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def when(ts: Any) -> str:
    return datetime.fromtimestamp(ts.ToNanoseconds() / 1e9).strftime("%Y-%m-%d %H:%M")


def component(name: str) -> str:
    return COMPONENT_NAMES.get(name, name)


def title_line(r: Any) -> str:
    return (
        f"{when(r.since)} → {when(r.until)}"
        if r.since.ToNanoseconds()
        else f"everything stored → {when(r.until)}"
    )


def summary_lines(r: Any) -> list[str]:
    planned = r.interruptions - r.unexpected
    return [
        f"Window: {title_line(r)}; {r.devices} devices in the fleet.",
        f"Interruptions: {r.interruptions} ({r.unexpected} unexpected, {planned} planned).",
        f"Fleet ETTR: {percent(r.fleet_ettr)} (productive time over time since submission, all jobs).",
        f"Lost GPU-hours: {hours(r.lost_gpu_hours)} (recomputation after a failure plus waiting to restart).",
    ]


def sections(r: Any) -> list[Section]:
    gpu_total = sum(getattr(r.gpu_time, key) for key, _ in GPU_STATES)
    return [
        Section(
            "Interruptions by component and cause",
            ("Component", "Category", "Blame", "Count", "Share", "Lost GPU-h"),
            [
                (
                    component(row.component),
                    row.category + ("" if row.unexpected else " (planned)"),
                    row.blame or "-",
                    str(row.count),
                    percent(row.share),
                    hours(row.lost_gpu_hours),
                )
                for row in r.by_cause
            ],
            frozenset({3, 4, 5}),
            intro="Every interrupted attempt, by root cause (the cluster's own Llama 3 Table 5).",
            empty="no interruptions in this window",
        ),
        Section(
            "ETTR of the largest jobs",
            ("Job", "Name", "State", "Devices", "ETTR", "Productive GPU-h", "Lost GPU-h", "Interruptions"),
            [
                (
                    j.job_id,
                    j.name,
                    j.state,
                    str(j.devices),
                    percent(j.ettr),
                    hours(j.productive_gpu_hours),
                    hours(j.lost_gpu_hours),
                    str(j.interruptions),
                )
                for j in r.jobs
            ],
            frozenset({3, 4, 5, 6, 7}),
            intro=f"Fleet-wide ETTR {percent(r.fleet_ettr)}. Productive time counts only work that "
            "can no longer be lost: up to the latest complete checkpoint.",
            empty="no jobs with devices in this window",
        ),
        Section(
            "GPU time",
            ("State", "GPU-hours", "Share"),
            [
                (
                    label,
                    hours(getattr(r.gpu_time, key) / 3600),
                    percent(_ratio(getattr(r.gpu_time, key), gpu_total)),
                )
                for key, label in GPU_STATES
            ],
            frozenset({1, 2}),
            notes=[f"Lost GPU-hours: {hours(r.lost_gpu_hours)}."],
        ),
        Section(
            "MTBF per component and device model",
            ("Component", "Vendor", "Model", "Device-hours", "Failures", "MTBF (h)"),
            [
                (
                    component(m.component),
                    m.vendor or "-",
                    m.model,
                    hours(m.device_hours),
                    str(m.failures),
                    hours(m.mtbf_hours) if m.failures else "no failures",
                )
                for m in r.mtbf
            ],
            frozenset({3, 4, 5}),
            intro="Device-hours of exposure over hardware failures (not blamed on the job).",
            empty="no devices in this window",
        ),
        Section(
            "Recovery phases",
            ("Phase", "Count", "p50", "p95", "max"),
            [
                (
                    PHASE_NAMES.get(p.phase, p.phase),
                    str(p.count),
                    seconds(p.p50_s),
                    seconds(p.p95_s),
                    seconds(p.max_s),
                )
                for p in r.recovery
                if p.count
            ],
            frozenset({1, 2, 3, 4}),
            empty="no recoveries in this window",
        ),
    ]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


# --- Markdown --------------------------------------------------------------------------------


def markdown(r: Any) -> str:
    lines = ["# Corral reliability report", ""]
    lines += [f"- {line}" for line in summary_lines(r)]
    for s in sections(r):
        lines += ["", f"## {s.title}", ""]
        if s.intro:
            lines += [s.intro, ""]
        if s.rows:
            lines.append("| " + " | ".join(s.header) + " |")
            lines.append(
                "|" + "|".join("---:" if i in s.numeric else "---" for i in range(len(s.header))) + "|"
            )
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in s.rows]
        else:
            lines.append(f"_{s.empty}_")
        if s.notes:
            lines += ["", *s.notes]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d232b; }
body { margin: 2rem auto; max-width: 72rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #d6dbe1; padding-bottom: .25rem; }
ul.summary { list-style: none; padding: 0; }
ul.summary li { margin: .15rem 0; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #e6e9ed; text-align: left; }
th { background: #f3f5f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
p.empty { color: #6b7683; font-style: italic; }
p.intro { color: #3c4650; }
"""


def html_page(r: Any) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Corral reliability report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Corral reliability report</h1>",
        '<ul class="summary">'
        + "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(r))
        + "</ul>",
    ]
    for s in sections(r):
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.intro:
            parts.append(f'<p class="intro">{html.escape(s.intro)}</p>')
        if s.rows:
            parts.append("<table><thead><tr>" + _html_row(s.header, s.numeric, "th") + "</tr></thead><tbody>")
            parts += ["<tr>" + _html_row(row, s.numeric, "td") + "</tr>" for row in s.rows]
            parts.append("</tbody></table>")
        else:
            parts.append(f'<p class="empty">{html.escape(s.empty)}</p>')
        parts += [f"<p>{html.escape(note)}</p>" for note in s.notes]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_row(cells: tuple[str, ...], numeric: frozenset[int], tag: str) -> str:
    return "".join(
        f'<{tag} class="num">{html.escape(c)}</{tag}>' if i in numeric else f"<{tag}>{html.escape(c)}</{tag}>"
        for i, c in enumerate(cells)
    )
