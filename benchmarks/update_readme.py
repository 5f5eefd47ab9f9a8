"""Rewrite the README's figures from the latest benchmark reports, so they never drift.

    python benchmarks/update_readme.py

Each benchmark writes benchmarks/results/<name>.json; this fills the README section between
`<!-- <name>:begin -->` and `<!-- <name>:end -->` from it, with the command that produced it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def ingest_section(report: dict[str, Any]) -> str:
    rows = [
        "| nodes | telemetry msg/s | lag p50 | lag p99 | server CPU (100% = 1 core) "
        "| generators' CPU | note |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in report["steps"]:
        if not s.get("passed") and not s.get("messages_per_s"):
            continue
        rows.append(
            f"| {s['nodes']:,} | {s['messages_per_s']:,.0f} | {s['lag_p50_s'] * 1000:.1f} ms "
            f"| {s['lag_p99_s'] * 1000:.0f} ms | {s['server_cpu_pct']:.0f}% | {s['generator_cpu_pct']:.0f}% "
            f"| {s['verdict'].removeprefix('ok').strip(' ()')} |"
        )
    m = report["machine"]
    return "\n".join(
        [
            *rows,
            "",
            f"Largest node count held with lag p99 ≤ {report['p99_limit_s']:g} s: "
            f"**{report['largest_nodes_held']:,}** (goal {report['goal_nodes']:,}: "
            f"{'met' if report['goal_met'] else 'not met'}); "
            f"the ramp ended because: {report['stop_reason']}.",
            f"Command: `{report['command']}` on {m['nproc']} × {m['cpu_model']}, Python {m['python']}, "
            f"grpcio {m['grpcio']}, {report['finished_at']}.",
        ]
    )


SECTIONS = {"ingest": ingest_section}


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in SECTIONS.items():
        report = json.loads((RESULTS / f"{name}.json").read_text())
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            print(f"README.md has no <!-- {name}:begin/end --> markers", file=sys.stderr)
            return 1
        section = render(report)
        text = pattern.sub(lambda mt, body=section: mt.group(1) + body + "\n" + mt.group(2), text)
    readme.write_text(text)
    print("README.md figures updated from", ", ".join(f"{n}.json" for n in SECTIONS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
