"""The power topology file: zones, racks, the default rack, node placement, and every kind of
bad input reported with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.power.domains import DEFAULT_RACK, PowerDomains
from scheduler.power.topology import (
    DEFAULT_INLET_LIMIT_C,
    DEFAULT_OVERHEAD_W_PER_NODE,
    TopologyError,
    assign,
    label_problem,
    load_topology,
    parse_topology,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "power.yaml"

GOOD = """
zones:
  - {name: z1, capacity_kw: 100, inlet_limit_c: 30}
  - {name: z2, capacity_kw: 50}
racks:
  - {name: r1, zone: z1, budget_kw: 40, overhead_w_per_node: 1000, nodes: [n1, n2]}
  - {name: r2, zone: z2, budget_kw: 20.5, nodes: [n3]}
default_rack: {zone: z2, budget_kw: 10}
"""


Z1 = "zones: [{name: z1, capacity_kw: 9}]\n"
R1 = "{name: r1, zone: z1, budget_kw: 2"


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "p.yaml")
    assert str(info.value).startswith("p.yaml: ")
    return info.value.problems


def test_good_file_in_watts() -> None:
    d = parse_topology(GOOD)
    assert set(d.zones) == {"z1", "z2"}
    assert d.zones["z1"].capacity_w == 100_000 and d.zones["z1"].inlet_limit_c == 30
    assert d.zones["z2"].inlet_limit_c == DEFAULT_INLET_LIMIT_C
    r1, r2 = d.racks["r1"], d.racks["r2"]
    assert (r1.zone, r1.budget_w, r1.overhead_w_per_node, r1.nodes) == (
        "z1",
        40_000,
        1000,
        frozenset({"n1", "n2"}),
    )
    assert r2.budget_w == 20_500 and r2.overhead_w_per_node == DEFAULT_OVERHEAD_W_PER_NODE
    default = d.racks[DEFAULT_RACK]
    assert (default.zone, default.budget_w, default.nodes) == ("z2", 10_000, frozenset())


def test_default_rack_omitted_with_one_zone_takes_the_zone_capacity() -> None:
    d = parse_topology("zones: [{name: z1, capacity_kw: 30}]")
    assert d.racks[DEFAULT_RACK].zone == "z1"
    assert d.racks[DEFAULT_RACK].budget_w == 30_000


def test_example_file_loads_and_places_the_simulated_cluster(tmp_path: Path) -> None:
    d = load_topology(EXAMPLE)
    assert isinstance(d, PowerDomains)
    assert assign(d, "sim-h100-0", {}) == "r-h100"
    assert assign(d, "sim-h100-1", {}) == "r-h100"
    assert assign(d, "sim-ascend-0", {}) == "r-ascend"
    assert assign(d, "sim-mlu-0", {}) == DEFAULT_RACK


def test_placement_file_wins_over_label_and_label_over_default() -> None:
    d = parse_topology(GOOD)
    assert assign(d, "n1", {"rack": "r2"}) == "r1"  # listed in the file
    assert label_problem(d, "n1", {"rack": "r2"}) == (
        "node n1: label rack=r2 ignored; the topology file places it in rack r1"
    )
    assert assign(d, "n9", {"rack": "r2"}) == "r2"  # unlisted, labelled
    assert label_problem(d, "n9", {"rack": "r2"}) is None
    assert assign(d, "n9", {}) == DEFAULT_RACK  # unlisted, unlabelled
    assert assign(d, "n9", {"rack": "r3"}) == DEFAULT_RACK  # a label naming no rack
    problem = label_problem(d, "n9", {"rack": "r3"})
    assert problem is not None and "names no rack" in problem and "known: default, r1, r2" in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "must be a mapping with a 'zones' list (got an empty document)"),
        ("zones: [", "YAML syntax error"),
        ("racks: []", "zones: required"),
        ("zones: []", "zones: at least one zone is required"),
        ("zones: [{name: z1, capacity_kw: 0}]", "zones[0] (z1).capacity_kw: must be > 0 kW (got 0)"),
        (
            "zones: [{name: z1, capacity_kw: ten}]",
            "zones[0] (z1).capacity_kw: must be a number of kW (got 'ten')",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9, inlet_limit_c: 80}]",
            "zones[0] (z1).inlet_limit_c: must be between 10 and 60 °C (got 80; °F?)",
        ),
        ("zones: [{name: Z_1, capacity_kw: 9}]", "zones[0] (Z_1).name: must be lowercase"),
        (
            "zones: [{name: z1, capacity_kw: 9, capcity: 3}]",
            "zones[0] (z1).capcity: unknown field (did you mean 'capacity_kw'?)",
        ),
        ("zones: [{name: z1, capacity_kw: 9}]\nrack: []", "rack: unknown field (did you mean 'racks'?)"),
        (
            "zones: [{name: z1, capacity_kw: 9}, {name: z1, capacity_kw: 3}]",
            "zones[1] (z1).name: zone 'z1' is already defined at zones[0]",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}, {name: z2, capacity_kw: 3}]\n"
            "racks: [{name: r1, zone: z9, budget_kw: 1}]\ndefault_rack: {zone: z1, budget_kw: 1}",
            "racks[0] (r1).zone: unknown zone 'z9'; known: z1, z2",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\nracks: [{name: r1, zone: z1, budget_kw: -2}]",
            "racks[0] (r1).budget_kw: must be > 0 kW (got -2)",
        ),
        (
            Z1 + "racks: [" + R1 + ", overhead_w_per_node: -1}]",
            "racks[0] (r1).overhead_w_per_node: must be ≥ 0 W (got -1)",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\nracks: [{name: r1, zone: z1}]",
            "racks[0] (r1).budget_kw: required",
        ),
        (
            Z1 + "racks: [" + R1 + ", nodes: [a, '']}]",
            "racks[0] (r1).nodes[1]: must be a node name (got '')",
        ),
        (
            Z1 + "racks: [" + R1 + ", nodes: [a]}, {name: r2, zone: z1, budget_kw: 2, nodes: [a]}]",
            "racks[1] (r2).nodes[0]: node 'a' is already in racks[0] (r1).nodes[0]; a node is in one rack",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\n"
            "racks: [{name: r1, zone: z1, budget_kw: 2}, {name: r1, zone: z1, budget_kw: 3}]",
            "racks[1] (r1).name: rack 'r1' is already defined at racks[0]",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\nracks: [{name: default, zone: z1, budget_kw: 2}]",
            "racks[0] (default).name: 'default' is the rack unlisted nodes land in",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}, {name: z2, capacity_kw: 3}]",
            "default_rack: required when there are several zones (z1, z2)",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\ndefault_rack: {zone: z3, budget_kw: 1}",
            "default_rack.zone: unknown zone 'z3'; known: z1",
        ),
        (
            "zones: [{name: z1, capacity_kw: 9}]\ndefault_rack: {zone: z1, budget_kw: 1, nodes: [a]}",
            "default_rack.nodes: unknown field; allowed: zone, budget_kw, overhead_w_per_node",
        ),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_listed_at_once() -> None:
    found = problems(
        "zones: [{name: z1, capacity_kw: 0}]\n"
        "racks: [{name: r1, zone: z1, budget_kw: 0}, {name: r2, zone: z1, budget_kw: x}]"
    )
    assert [p.split(":")[0] for p in found] == [
        "zones[0] (z1).capacity_kw",
        "racks[0] (r1).budget_kw",
        "racks[1] (r2).budget_kw",
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "missing.yaml")
    assert info.value.problems[0].startswith("cannot read")
