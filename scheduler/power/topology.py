"""The power topology: cooling zones, racks and the nodes in them, read from a YAML file.

    zones:
      - name: hall-a
        capacity_kw: 120          # heat the zone's cooling removes, kW
        inlet_limit_c: 27         # inlet temperature the zone must stay under (default 27 °C)
    racks:
      - name: r1
        zone: hall-a
        budget_kw: 40             # PDU budget, kW
        overhead_w_per_node: 4600 # non-accelerator draw per node, W (default 4600)
        nodes: [gpu-001, gpu-002]
    default_rack:                 # where unlisted nodes go (optional, see below)
      zone: hall-a
      budget_kw: 20

Units: budgets and capacities are kW in the file (how sites provision them) and W inside.

Placing a node: a node listed under a rack's `nodes` is in that rack; otherwise a node
label `rack=NAME` (`corral agent --label rack=r1`) places it; otherwise it lands in the
rack named `default`. The file wins over a label, so a stale label on a re-racked node
cannot move it. `default_rack` sets that rack's zone and budget; omitted, the default rack
sits in the only zone (an error when there are several: say which) with the zone's capacity
as its budget, so unplaced nodes are bounded by the zone alone.

`overhead_w_per_node` defaults to 4600 W: a DGX H100's rated maximum is 10.2 kW and its
eight GPUs account for 8 × 700 W, leaving 4.6 kW for CPUs, NVSwitches, NICs, fans and
power-supply loss. The overhead is not measured, so it is counted at that ceiling: counting
it low is what trips a breaker. Racks of smaller nodes should set their own.

Every problem is reported at once with its path: `racks[1] (r2).zone: unknown zone 'z9';
known: z1, z2`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from scheduler.config_errors import ConfigFileError, fail, show
from scheduler.power.domains import DEFAULT_RACK, PowerDomains, Rack, Zone
from scheduler.spec import dns_name, error_message

RACK_LABEL = "rack"
DEFAULT_OVERHEAD_W_PER_NODE = 4600.0
# ASHRAE's recommended envelope for data-centre inlet air tops out at 27 °C.
DEFAULT_INLET_LIMIT_C = 27.0


class TopologyError(ConfigFileError):
    """A topology file with problems: one line per problem, each starting with the file."""


def _positive(unit: str) -> Any:
    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise fail(f"must be a number of {unit} (got {show(value)})")
        if not value > 0:
            raise fail(f"must be > 0 {unit} (got {value:g})")
        return float(value)

    return BeforeValidator(check)


def _non_negative_w(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"must be a number of W (got {show(value)})")
    if value < 0:
        raise fail(f"must be ≥ 0 W (got {value:g})")
    return float(value)


def _inlet(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(f"must be a temperature in °C (got {show(value)})")
    # Outside this nothing is a plausible inlet limit: most likely °F or a typo.
    if not 10 <= value <= 60:
        raise fail(f"must be between 10 and 60 °C (got {value:g}; °F?)")
    return float(value)


def _node_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"must be a node name (got {show(value)})")
    return value.strip()


def _list(value: object) -> object:
    return [] if value is None else value


Name = Annotated[str, BeforeValidator(dns_name)]


class ZoneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    capacity_kw: Annotated[float, _positive("kW")]
    inlet_limit_c: Annotated[float, BeforeValidator(_inlet)] = DEFAULT_INLET_LIMIT_C


class RackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    zone: Name
    budget_kw: Annotated[float, _positive("kW")]
    overhead_w_per_node: Annotated[float, BeforeValidator(_non_negative_w)] = DEFAULT_OVERHEAD_W_PER_NODE
    nodes: Annotated[list[Annotated[str, BeforeValidator(_node_name)]], BeforeValidator(_list)] = Field(
        default_factory=list
    )


class DefaultRackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: Name
    budget_kw: Annotated[float, _positive("kW")]
    overhead_w_per_node: Annotated[float, BeforeValidator(_non_negative_w)] = DEFAULT_OVERHEAD_W_PER_NODE


class _TopologyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zones: Annotated[list[ZoneSpec], BeforeValidator(_list)]
    racks: Annotated[list[RackSpec], BeforeValidator(_list)] = Field(default_factory=list)
    default_rack: DefaultRackSpec | None = None


_FIELDS: dict[str, list[str]] = {
    "top": list(_TopologyFile.model_fields),
    "zones": list(ZoneSpec.model_fields),
    "racks": list(RackSpec.model_fields),
    "default_rack": list(DefaultRackSpec.model_fields),
}


def load_topology(path: str | Path) -> PowerDomains:
    """The file's zones and racks, the default rack among them; TopologyError lists every
    problem with its field path."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError([f"cannot read: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError as exc:
        raise TopologyError([f"not UTF-8 text: {exc.reason}"], source) from None
    return parse_topology(text, source)


def parse_topology(text: str, source: str = "power.yaml") -> PowerDomains:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        raise TopologyError([f"YAML syntax error{where}: {what}"], source) from None
    return topology_from_data(data, source)


def topology_from_data(data: object, source: str = "power.yaml") -> PowerDomains:
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else show(data)
        raise TopologyError([f"must be a mapping with a 'zones' list (got {got})"], source)
    try:
        parsed = _TopologyFile.model_validate(dict(data))
    except ValidationError as exc:
        raise TopologyError([_problem(e, data) for e in exc.errors(include_url=False)], source) from None
    problems = _cross_checks(parsed)
    if problems:
        raise TopologyError(problems, source)
    return _domains(parsed)


def assign(domains: PowerDomains, node_name: str, labels: Mapping[str, str]) -> str:
    """The rack `node_name` is in: the file's placement, else its `rack` label, else the
    default rack. A label naming no known rack counts as no label (see `label_problem`), so a
    typo in one agent's flags cannot keep the node out of every budget."""
    listed = domains.listed_rack(node_name)
    if listed is not None:
        return listed
    label = labels.get(RACK_LABEL, "").strip()
    if label and label in domains.racks:
        return label
    return DEFAULT_RACK


def label_problem(domains: PowerDomains, node_name: str, labels: Mapping[str, str]) -> str | None:
    """Why a node's `rack` label is not followed, in one line for the log; None if it is (or
    there is none)."""
    label = labels.get(RACK_LABEL, "").strip()
    if not label:
        return None
    placed = domains.listed_rack(node_name)
    if placed is not None:
        if placed == label:
            return None
        return f"node {node_name}: label rack={label} ignored; the topology file places it in rack {placed}"
    if label in domains.racks:
        return None
    known = sorted(domains.racks)
    close = difflib.get_close_matches(label, known, n=1)
    meant = f" (did you mean '{close[0]}'?)" if close else ""
    return (
        f"node {node_name}: label rack={label} names no rack{meant}; known: {', '.join(known)}; "
        f"placed in rack {DEFAULT_RACK}"
    )


def _domains(parsed: _TopologyFile) -> PowerDomains:
    zones = {
        z.name: Zone(name=z.name, capacity_w=z.capacity_kw * 1000.0, inlet_limit_c=z.inlet_limit_c)
        for z in parsed.zones
    }
    racks = {
        r.name: Rack(
            name=r.name,
            zone=r.zone,
            budget_w=r.budget_kw * 1000.0,
            overhead_w_per_node=r.overhead_w_per_node,
            nodes=frozenset(r.nodes),
        )
        for r in parsed.racks
    }
    if parsed.default_rack is not None:
        d = parsed.default_rack
        default = Rack(
            name=DEFAULT_RACK,
            zone=d.zone,
            budget_w=d.budget_kw * 1000.0,
            overhead_w_per_node=d.overhead_w_per_node,
            nodes=frozenset(),
        )
    else:
        zone = next(iter(zones.values()))  # _cross_checks made sure there is exactly one
        default = Rack(
            name=DEFAULT_RACK,
            zone=zone.name,
            budget_w=zone.capacity_w,
            overhead_w_per_node=DEFAULT_OVERHEAD_W_PER_NODE,
            nodes=frozenset(),
        )
    racks[DEFAULT_RACK] = default
    return PowerDomains(racks=racks, zones=zones)


def _label(data: Mapping[Any, Any], key: object, index: int) -> str:
    items = data.get(key)
    if isinstance(items, list) and index < len(items) and isinstance(items[index], Mapping):
        name = items[index].get("name")
        if isinstance(name, str) and name:
            return f" ({name})"
    return ""


def _path(loc: tuple[int | str, ...], data: Mapping[Any, Any]) -> str:
    out = ""
    for n, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if n == 1:
                out += _label(data, loc[0], part)
        else:
            out += f".{part}" if out else str(part)
    return out


def _problem(err: ErrorDetails, data: Mapping[Any, Any]) -> str:
    loc = tuple(err["loc"])
    where = _path(loc, data)
    if err["type"] == "extra_forbidden":
        fields = _FIELDS[str(loc[0]) if len(loc) > 1 else "top"]
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{where}: unknown field{hint}; allowed: {', '.join(fields)}"
    return f"{where}: {error_message(err)}"


def _unknown_zone(where: str, zone: str, known: list[str]) -> str:
    close = difflib.get_close_matches(zone, known, n=1)
    meant = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}.zone: unknown zone {zone!r}{meant}; known: {', '.join(known) or '(none)'}"


def _cross_checks(parsed: _TopologyFile) -> list[str]:
    problems: list[str] = []
    if not parsed.zones:
        problems.append("zones: at least one zone is required (name, capacity_kw)")
    zone_at: dict[str, int] = {}
    for i, z in enumerate(parsed.zones):
        if z.name in zone_at:
            problems.append(
                f"zones[{i}] ({z.name}).name: zone {z.name!r} is already defined at "
                f"zones[{zone_at[z.name]}]; rename one or merge them"
            )
        zone_at.setdefault(z.name, i)
    known = sorted(zone_at)
    rack_at: dict[str, int] = {}
    node_at: dict[str, str] = {}
    for i, r in enumerate(parsed.racks):
        label = f"racks[{i}] ({r.name})"
        if r.name == DEFAULT_RACK:
            problems.append(
                f"{label}.name: {DEFAULT_RACK!r} is the rack unlisted nodes land in; "
                "configure it under default_rack, or rename this rack"
            )
        elif r.name in rack_at:
            problems.append(
                f"{label}.name: rack {r.name!r} is already defined at racks[{rack_at[r.name]}]; "
                "rename one or merge them"
            )
        rack_at.setdefault(r.name, i)
        if r.zone not in zone_at:
            problems.append(_unknown_zone(label, r.zone, known))
        for j, node in enumerate(r.nodes):
            where = f"{label}.nodes[{j}]"
            if node in node_at:
                problems.append(
                    f"{where}: node {node!r} is already in {node_at[node]}; a node is in one rack"
                )
            else:
                node_at[node] = where
    if parsed.default_rack is not None:
        if parsed.default_rack.zone not in zone_at:
            problems.append(_unknown_zone("default_rack", parsed.default_rack.zone, known))
    elif len(parsed.zones) > 1:
        problems.append(
            f"default_rack: required when there are several zones ({', '.join(known)}), to say which "
            "zone unlisted nodes are in; e.g. default_rack: {zone: " + known[0] + ", budget_kw: 20}"
        )
    return problems
