"""`corral agent inventory`: what the agent would register on this node, without connecting.

`--parse VENDOR FILE` reads a saved summary table of the vendor's tool instead (plain
`npu-smi info`, `cnmon`, `hy-smi`, ...), which is what a user attaches to a support request.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer

from scheduler.cli.common import Output, OutputOpt, console, print_json
from scheduler.cli.errors import CliError, ExitCode

PARSER_NVIDIA = "agents.backends.vendors.nvidia_smi"
BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="auto (NVIDIA first, then any vendor found here), or a vendor: nvidia, ascend, cambricon,"
        " hygon, moorethreads, iluvatar, metax, kunlunxin, enflame, amd.",
    ),
]
ViaOpt = Annotated[
    str,
    typer.Option("--backend-via", help="For a non-NVIDIA vendor: auto (library, else tool), library or cli."),
]


def inventory(
    backend: BackendOpt = "auto",
    backend_via: ViaOpt = "auto",
    simulate: Annotated[
        str | None, typer.Option(help="List a simulated node from this profile instead of this machine.")
    ] = None,
    parse: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            "--parse",
            metavar="VENDOR FILE",
            help="Parse a saved summary table of VENDOR's tool (e.g. `npu-smi info > FILE`) instead.",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Print the devices the agent would register on this node, without connecting."""
    report = _parsed(*parse) if parse is not None else _live(backend, backend_via, simulate)
    if output is Output.json:
        print_json(report)
        return
    _print_table(report)


def _parsed(vendor: str, path: Path) -> dict[str, Any]:
    from agents.backends.vendors import VENDOR_NAMES
    from agents.backends.vendors.registry import DOMESTIC, vendor_module
    from agents.backends.vendors.snapshot import SnapshotError
    from agents.inventory import snapshot_report

    name = vendor.strip().lower()
    if name not in VENDOR_NAMES:
        raise CliError(
            f"--parse: unknown vendor {vendor!r}; known: {', '.join(VENDOR_NAMES)}", ExitCode.BAD_INPUT
        )
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError as e:
        raise CliError(f"--parse: cannot read {path}: {e.strerror or e}", ExitCode.BAD_INPUT) from None
    # NVIDIA's devices are read through NVML; its module here only parses saved nvidia-smi tables.
    module = vendor_module(name) if name in DOMESTIC else importlib.import_module(PARSER_NVIDIA)
    try:
        snap = module.parse_summary(text)
    except SnapshotError as e:
        raise CliError(
            f"{path} is not a summary table of {module.TOOLS[0]} ({name}): {e}",
            ExitCode.BAD_INPUT,
            [f"save the tool's default output, e.g. `{module.TOOLS[0]} > {path.name}`, and pass that file"],
        ) from None
    return snapshot_report(snap)


def _live(backend: str, via: str, simulate: str | None) -> dict[str, Any]:
    from agents.backends.base import BackendError
    from agents.backends.detect import detect_backend
    from agents.inventory import backend_report
    from agents.profiles import ProfileError, resolve_profile

    try:
        profile = resolve_profile(simulate) if simulate else None
        device_backend = detect_backend(profile, backend=backend.strip().lower(), via=via)
    except (BackendError, ProfileError) as e:
        lines = str(e).splitlines()
        raise CliError(lines[0], ExitCode.BAD_INPUT, [line.strip() for line in lines[1:]]) from None
    try:
        return backend_report(device_backend)
    finally:
        device_backend.close()


def _show(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{report.get('vendor') or 'no'} devices from {report.get('source')}")
    for column in (
        "index",
        "model",
        "board",
        "memory",
        "power",
        "limit",
        "temp",
        "util",
        "healthy",
        "faults",
    ):
        table.add_column(column)
    for d in report["devices"]:
        faults = ", ".join(str(f["code"]) for f in d.get("faults", [])) or "-"
        table.add_row(
            str(d["index"]),
            d["model"],
            _show(d.get("board_id")),
            f"{_show(d.get('memory_used_mib'))}/{_show(d['memory_total_mib'])} MiB",
            _show(d["power_w"], " W"),
            _show(d["power_limit_w"], " W"),
            _show(d["temperature_c"], " °C"),
            _show(d.get("utilization_pct"), "%"),
            "yes" if d["healthy"] else "NO",
            faults,
        )
    out = console()
    out.print(table)
    if report.get("islands"):
        islands = "; ".join(",".join(map(str, i)) for i in report["islands"])
        out.print(f"{report.get('interconnect') or 'fast link'} islands: {islands}")
