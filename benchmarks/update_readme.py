"""Rewrite the README's figures from the latest benchmark reports, so they never drift.

    python benchmarks/update_readme.py            # every section
    python benchmarks/update_readme.py recovery   # only the named ones

Each benchmark writes benchmarks/results/<name>.json; this fills the README section between
`<!-- <name>:begin -->` and `<!-- <name>:end -->` from it, with the command that produced it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
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


def openb_section(reports: dict[str, Any]) -> str:
    """One row per pod list: the default policy beside our replay of FGD and best-fit, and
    beside FGD's published figure."""
    rows = [
        "| pod list | Corral (default policy) | `fgd` (ours) | `best-fit` (ours) | FGD published "
        "| Corral vs FGD published |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    commands = []
    for trace, r in reports.items():
        p, published = r["policies"], r["published_alloc_130"].get("FGD")
        mine = p[r["default_policy"]]["alloc_130"]

        def fig(name: str, p: dict[str, Any] = p) -> str:
            return f"{p[name]['alloc_130']:.2f}" if name in p else "-"

        delta = f"**{mine - published:+.2f}**" if published else "-"
        rows.append(
            f"| {trace} | **{mine:.2f}** | {fig('fgd')} | {fig('best-fit')} "
            f"| {f'{published:.2f}' if published else '-'} | {delta} |"
        )
        commands.append(f"`{r['command']}` ({r['finished_at'][:10]})")
    seeds = next(iter(reports.values()))["seeds"]
    return "\n".join(
        [
            *rows,
            "",
            f"GPU allocation % at 130% arrived demand, mean of seeds {seeds[0]}–{seeds[-1]}. "
            "Commands: " + "; ".join(commands) + ".",
        ]
    )


def scale_section(r: dict[str, Any]) -> str:
    single, goals = r["single"], r["goals"]
    rows = [
        f"Single-device decisions (policy `{r['settings']['policy']}`), filling "
        f"{r['fleet']['nodes']:,} nodes × 8 devices from 0 to {single['reached_fill']:.0%}: "
        f"**{single['decisions_per_s']:,.0f}/s** "
        f"(p50 {single['p50_ms']:.2f} ms, p99 {single['p99_ms']:.2f} ms; "
        f"goal ≥ {goals['single_per_s']:,.0f}/s: {'met' if goals['single_met'] else 'not met'}; anchor "
        f"{r['anchor']}).",
        "",
        "| gang | topology | p50 | p99 | placed |",
        "|---:|---|---:|---:|---:|",
    ]
    for g in r["gangs"]:
        rows.append(
            f"| {g['devices']:,} devices | {g['topology']} | {g['p50_ms']:.1f} ms | {g['p99_ms']:.1f} ms "
            f"| {g['placed']}/{g['repeats']} |"
        )
    if sim := r.get("simulator"):
        rows += [
            "",
            f"Simulator: {sim['jobs']:,} jobs on {sim['nodes']:,} nodes, every pass the control plane's "
            f"(`{sim['pass']}`), in **{sim['wall_s'] / 60:.1f} min** "
            f"({sim['placements_per_wall_s']:,.0f} placements/s of wall time).",
        ]
    rows += [
        "",
        f"Peak memory {r['peak_rss_mib']:.0f} MiB. Command: `{r['command']}` on {r['machine']['nproc']} × "
        f"{r['machine']['cpu_model']}, {r['finished_at'][:10]}.",
    ]
    return "\n".join(rows)


def hetero_section(r: dict[str, Any]) -> str:
    rows = [
        "| offered load | model-agnostic mean JCT | throughput-aware | vs agnostic | p95 agnostic → aware "
        "| fastest model first |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in r["runs"]:
        v = run["variants"]
        a, t = v["agnostic"], v["throughput-aware"]
        c = v.get("fastest-first")
        relative = f"{c['jct_mean_s'] / a['jct_mean_s']:.2f}×" if c else "-"
        rows.append(
            f"| {run['load']:.0%} | {a['jct_mean_s'] / 3600:.2f} h | {t['jct_mean_s'] / 3600:.2f} h "
            f"| **{t['jct_mean_s'] / a['jct_mean_s']:.2f}×** "
            f"| {a['jct_p95_s'] / 3600:.2f} h → {t['jct_p95_s'] / 3600:.2f} h "
            f"| {relative} |"
        )
    rows += ["", f"Command: `{r['command']}`, {r['finished_at'][:10]}."]
    return "\n".join(rows)


def sim_openb_section(r: dict[str, Any]) -> str:
    s = r["summary"]
    return (
        f"The simulator replays the openb trace with its own arrival and deletion times "
        f"({r['tasks']:,} tasks on {r['nodes']:,} nodes, policy `{r['policy']}`, every pass the control "
        f"plane's `schedule_pass`) in **{r['wall_s']:.1f} s** ({s['passes']:,} passes). "
        f"Command: `{r['command']}`, {r['finished_at'][:10]}."
    )


def ettr_section(r: dict[str, Any]) -> str:
    j, g = r["job"], r["goals"]
    rows = [
        "| checkpoint cost C | fixed 30 min | bound 1 − √(2C/M) − R/M | `auto` | `auto` − bound "
        "| `auto` + warnings | − bound |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, v in r["by_cost"].items():
        rows.append(
            f"| {c} s | {v['fixed_30min']:.2%} | {v['bound']:.2%} | **{v['auto']:.2%}** "
            f"| {100 * (v['auto'] - v['bound']):+.2f} pt | **{v['auto_proactive']:.2%}** "
            f"| {100 * (v['auto_proactive'] - v['bound']):+.2f} pt |"
        )
    verdict = " ".join(
        f"{text}: {'met' if g[key] else 'not met'}."
        for key, text in (
            ("auto_within_half_point", "`auto` within 0.5 points of the bound at every C"),
            ("proactive_above_bound", "`auto` + warnings above the bound"),
            ("at_least_97_at_lowest_cost", f"≥ 97% at C = {g['lowest_cost']} s"),
        )
    )
    return "\n".join(
        [
            *rows,
            "",
            f"{j['devices']:,} devices, M = {j['job_mtbf_h']:.2f} h, "
            f"R = {j['mean_downtime_per_failure_s']:.0f} s down per failure (restart + detection), "
            f"mean of {len(r['seeds'])} seeds. {verdict} "
            f"Command: `{r['command']}`, {r['finished_at'][:10]}.",
        ]
    )


def recovery_section(r: dict[str, Any]) -> str:
    def sec(x: float | None) -> str:
        return f"{x:.2f} s" if x is not None else "-"

    rows = [
        "| fault | recovered | injection → all workers running p50 / p99 | detection p50 / p99 "
        "| control plane p50 / p99 | workers start p50 | restart backoff p50 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in [*r["by_kind"].items(), ("**all**", r)]:
        if s["injected"]:
            rows.append(
                f"| {kind} | {s['recovered']}/{s['injected']} "
                f"| {sec(s['inject_to_running_p50_s'])} / {sec(s['inject_to_running_p99_s'])} "
                f"| {sec(s['detect_p50_s'])} / {sec(s['detect_p99_s'])} "
                f"| {sec(s['control_plane_p50_s'])} / **{sec(s['control_plane_p99_s'])}** "
                f"| {sec(s['start_p50_s'])} | {sec(s.get('backoff_p50_s'))} |"
            )
    g, st = r["goals"], r["settings"]
    agents = r["dead_agent_detect_s"] + r["hung_agent_detect_s"]

    def met(v: bool | None) -> str:
        return "not measured" if v is None else "met" if v else "not met"

    flags = " ".join(st["server_flags"]) or "none"
    return "\n".join(
        [
            *rows,
            "",
            f"{st['nodes']} simulated 8-device nodes, a {st['workers']}-worker gang; heartbeat timeout "
            f"{r['heartbeat_timeout_s']:g} s, node grace {r['node_grace_s']:g} s, other server flags: "
            f"`{flags}`. Control plane's share p99 ≤ {g['control_plane_p99_goal_s']:g} s: "
            f"{met(g['control_plane_p99_met'])}. Dead or hung agent detected ≤ timeout + 1 s: "
            f"{met(g['agent_detect_met'])}"
            + (f" (worst {max(agents):.2f} s)" if agents else "")
            + f". Command: `{r['command']}`, {r['finished_at'][:10]}.",
        ]
    )


def power_section(r: dict[str, Any]) -> str:
    rows = [
        "| provisioned | strategy | throughput kept | priority-weighted kept | s over budget | energy |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for level, by in r["levels"].items():
        for name, v in by.items():
            bold = "**" if name == "corral" else ""
            rows.append(
                f"| {level}% | {bold}{name}{bold} | {v['throughput_kept']:.2%} "
                f"| {bold}{v['weighted_throughput_kept']:.2%}{bold} | {v['seconds_over_budget']:.1f} "
                f"| {v['energy_kwh']:.1f} kWh |"
            )
    g, e = r["goals"], r["extra_devices"]
    verdict = " ".join(
        f"{text}: {'met' if g[key] else 'not met'}."
        for key, text in (
            ("within_1pct_of_optimal", "Corral ≥ 99% of the optimum's weighted throughput"),
            ("at_most_2s_over_after_any_change", "≤ 2 s over budget after any change"),
            ("above_uniform", "above uniform caps"),
        )
    )
    ratio = ", ".join(f"{lv}%: {v:.2%}" for lv, v in g["corral_over_optimal_weighted"].items())
    hosts = "; ".join(
        f"at {lv}%, {v['devices_per_nameplate_budget']:.2f}× the devices "
        f"({v['site_throughput_vs_nameplate']:.2f}× the throughput)"
        for lv, v in e.items()
    )
    return "\n".join(
        [
            *rows,
            "",
            f"{r['site']['devices']} devices, {r['settings']['horizon_s']} s. Corral / optimum, weighted: "
            f"{ratio}. {verdict} A budget provisioned for nameplate hosts {hosts}. "
            f"Command: `{r['command']}`, {r['finished_at'][:10]}.",
        ]
    )


def dashboard_section(r: dict[str, Any]) -> str:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f} ms"

    rows = ["| view | p50 | p95 | max | size |", "|---|---:|---:|---:|---:|"]
    for v in r["rows"]:
        label = f"**{v['label']}**" if v["headline"] else v["label"]
        size = v["bytes"] / 2**20
        rows.append(
            f"| {label} (`{v['path']}`) | {ms(v['p50_ms'])} | {ms(v['p95_ms'])} | {ms(v['max_ms'])} "
            f"| {size:.2f} MiB |"
        )
    g, s, sv = r["goals"], r["store"], r["server"]
    n = s["rows"]

    def met(v: bool | None) -> str:
        return "not measured" if v is None else "met" if v else "not met"

    return "\n".join(
        [
            *rows,
            "",
            f"Goals at p95: landing page ≤ {g['page_goal_ms']:g} ms {met(g['landing_met'])}, failure feed "
            f"≤ {g['page_goal_ms']:g} ms {met(g['failures_met'])}, `/metrics` ≤ {g['scrape_goal_ms']:g} ms "
            f"{met(g['metrics_met'])}. Store: {n['nodes']:,} nodes × 8 devices, {n['jobs']:,} jobs, "
            f"{n['events']:,} events ({s['db_mib']:,.0f} MiB of SQLite); no agent connected (every node "
            f"disconnected). Server up in {sv['ready_s']:.1f} s. {r['settings']['requests']} requests per "
            f"view over one keep-alive connection. Command: `{r['command']}`, {r['finished_at'][:10]}.",
        ]
    )


def _openb_reports() -> dict[str, Any]:
    order = ("default", "gpuspec33", "multigpu50", "gpushare40")
    found = {p.stem.removeprefix("openb_"): json.loads(p.read_text()) for p in RESULTS.glob("openb_*.json")}
    return {t: found[t] for t in sorted(found, key=lambda t: order.index(t) if t in order else len(order))}


SECTIONS: dict[str, Callable[[Any], str]] = {
    "ingest": ingest_section,
    "openb": openb_section,
    "scale": scale_section,
    "hetero": hetero_section,
    "sim_openb": sim_openb_section,
    "ettr": ettr_section,
    "recovery": recovery_section,
    "power": power_section,
    "dashboard": dashboard_section,
}
LOADERS: dict[str, Callable[[], Any]] = {
    "openb": _openb_reports,
    "sim_openb": lambda: json.loads((RESULTS / "sim_openb_default.json").read_text()),
}


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if unknown := [n for n in names if n not in SECTIONS]:
        print(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    readme = ROOT / "README.md"
    text = readme.read_text()
    chosen = {n: r for n, r in SECTIONS.items() if not names or n in names}
    for name, render in chosen.items():
        loader = LOADERS.get(name)
        report = loader() if loader else json.loads((RESULTS / f"{name}.json").read_text())
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            print(f"README.md has no <!-- {name}:begin/end --> markers", file=sys.stderr)
            return 1
        section: str = render(report)
        text = pattern.sub(lambda mt: mt.group(1) + section + "\n" + mt.group(2), text)  # noqa: B023 (used at once)
    readme.write_text(text)
    print("README.md figures updated:", ", ".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
