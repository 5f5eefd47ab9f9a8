from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from scheduler.catalog import (
    SOURCED_FIELDS,
    VENDORS,
    AllocationRule,
    CatalogError,
    DeviceCatalog,
    DeviceModel,
    allocation_rule,
)

REPO = Path(__file__).resolve().parents[2]

REQUIRED = [
    ("nvidia", "H100 80GB"),
    ("nvidia", "H800"),
    ("nvidia", "H20"),
    ("nvidia", "A100 40GB"),
    ("nvidia", "A100 80GB"),
    ("nvidia", "A800 80GB"),
    ("nvidia", "L40S"),
    ("nvidia", "RTX 4090"),
    ("nvidia", "V100 16GB"),
    ("nvidia", "V100 32GB"),
    ("nvidia", "T4"),
    ("nvidia", "A10"),
    ("nvidia", "P100 16GB"),
    ("amd", "MI300X"),
    ("amd", "MI250X"),
    ("ascend", "Ascend 910B"),
    ("ascend", "Ascend 910B4"),
    ("ascend", "Ascend 310P3"),
    ("ascend", "Ascend 910C"),
    ("cambricon", "MLU370-X8"),
    ("cambricon", "MLU370-X4"),
    ("cambricon", "MLU590"),
    ("hygon", "K100"),
    ("hygon", "K100-AI"),
    ("hygon", "Z100"),
    ("moorethreads", "MTT S4000"),
    ("moorethreads", "MTT S5000"),
    ("moorethreads", "MTT S80"),
    ("iluvatar", "BI-V150"),
    ("iluvatar", "BI-V100"),
    ("iluvatar", "MR-V100"),
    ("metax", "C500"),
    ("metax", "C550"),
    ("kunlunxin", "P800"),
    ("kunlunxin", "P800 PCIe"),
    ("kunlunxin", "R200"),
    ("enflame", "S60"),
    ("enflame", "L300"),
    ("enflame", "i20"),
]


@pytest.fixture(scope="module")
def catalog() -> DeviceCatalog:
    return DeviceCatalog.load()


# --- the packaged catalog -------------------------------------------------------------------


def test_packaged_catalog_loads_once(catalog: DeviceCatalog) -> None:
    assert len(catalog) >= len(REQUIRED)
    assert DeviceCatalog.load() is catalog
    assert list(catalog) == list(catalog.models())


@pytest.mark.parametrize(("vendor", "model"), REQUIRED)
def test_required_model_present(catalog: DeviceCatalog, vendor: str, model: str) -> None:
    found = catalog.get(vendor, model)
    assert found is not None
    assert (found.vendor, found.model) == (vendor, model)


def test_vendor_ids_are_the_fixed_set(catalog: DeviceCatalog) -> None:
    assert {m.vendor for m in catalog} == set(VENDORS)


def test_every_figure_names_its_source(catalog: DeviceCatalog) -> None:
    for m in catalog:
        for field in SOURCED_FIELDS:
            if m.needs_source(field):
                assert m.sources.get(field, "").strip(), f"{m.label()}.{field} has no source"


def test_only_uncited_defaults_go_without_a_source(catalog: DeviceCatalog) -> None:
    h100 = catalog.get("nvidia", "H100 80GB")
    assert h100 is not None and h100.chips_per_board == 1
    assert not h100.needs_source("chips_per_board") and not h100.needs_source("allocation")
    x8 = catalog.get("cambricon", "MLU370-X8")
    assert x8 is not None and x8.needs_source("chips_per_board") and x8.needs_source("board_tdp_w")


def test_every_model_states_its_stack(catalog: DeviceCatalog) -> None:
    for m in catalog:
        assert m.k8s_resource and m.visibility_env and m.collective and m.software, m.label()


@pytest.mark.parametrize(
    ("vendor", "model", "field", "tag"),
    [
        ("moorethreads", "MTT S4000", "fp16_tflops", "S"),
        ("metax", "C500", "bf16_tflops", "S"),
        ("hygon", "K100-AI", "tdp_w", "V-out"),
        ("nvidia", "H20", "bf16_tflops", "S"),
        ("ascend", "Ascend 310P3", "board_tdp_w", "S"),
        ("ascend", "Ascend 910C", "memory_gib", "S"),
        ("cambricon", "MLU370-X8", "board_tdp_w", "V-out"),
        ("kunlunxin", "R200", "fp16_tflops", "S"),
        ("enflame", "L300", "memory_gib", "V-out"),
    ],
)
def test_low_confidence_figures_keep_their_tag(
    catalog: DeviceCatalog, vendor: str, model: str, field: str, tag: str
) -> None:
    m = catalog.get(vendor, model)
    assert m is not None
    assert m.confidence[field] == tag


def test_datasheet_figures_carry_no_tag(catalog: DeviceCatalog) -> None:
    m = catalog.get("nvidia", "H100 80GB")
    assert m is not None
    assert dict(m.confidence) == {}


def test_known_figures(catalog: DeviceCatalog) -> None:
    h100 = catalog.get("nvidia", "H100 80GB")
    assert h100 is not None
    assert (h100.memory_gib, h100.tdp_w, h100.island_size) == (80, 700, 8)
    assert h100.k8s_resource == "nvidia.com/gpu"
    ascend = catalog.get("ascend", "Ascend 910B")
    assert ascend is not None
    assert (ascend.k8s_resource, ascend.visibility_env) == (
        "huawei.com/Ascend910",
        "ASCEND_RT_VISIBLE_DEVICES",
    )
    p800 = catalog.get("kunlunxin", "P800")
    assert p800 is not None
    assert (p800.memory_gib, p800.tdp_w, p800.island_size) == (96, 400, 4)


# --- chips and boards -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "model", "chips", "memory_gib", "tdp_w", "board_tdp_w"),
    [
        ("cambricon", "MLU370-X8", 2, 24, 125, 250),
        ("iluvatar", "BI-V150", 2, 32, 175, 350),
        ("ascend", "Ascend 310P3", 2, 48, 75, 150),
        ("amd", "MI250X", 2, 64, 280, 560),
        ("ascend", "Ascend 910C", 2, 64, None, None),
    ],
)
def test_two_chip_boards_are_described_per_chip(
    catalog: DeviceCatalog,
    vendor: str,
    model: str,
    chips: int,
    memory_gib: float,
    tdp_w: float | None,
    board_tdp_w: float | None,
) -> None:
    m = catalog.get(vendor, model)
    assert m is not None
    assert (m.chips_per_board, m.memory_gib, m.tdp_w, m.board_tdp_w) == (
        chips,
        memory_gib,
        tdp_w,
        board_tdp_w,
    )


def test_per_chip_throughput_and_islands(catalog: DeviceCatalog) -> None:
    mi250x = catalog.get("amd", "MI250X")
    assert mi250x is not None and mi250x.dense_tflops == pytest.approx(383 / 2)
    x8 = catalog.get("cambricon", "MLU370-X8")
    assert x8 is not None and x8.island_size == 8  # 4 bridged cards = 8 chips
    a3 = catalog.get("ascend", "Ascend 910C")
    assert a3 is not None and a3.island_size == 16


def test_single_chip_boards_by_default(catalog: DeviceCatalog) -> None:
    for name in ("H100 80GB", "Ascend 910B", "P800", "S60", "C500"):
        m = catalog.get("", name)
        assert m is not None and m.chips_per_board == 1 and m.board_tdp_w is None, name
    mr = catalog.get("iluvatar", "MR-V100")
    assert mr is not None and mr.chips_per_board is None  # a 'DUO' exists; chip count unknown


def test_stack_overrides_per_model(catalog: DeviceCatalog) -> None:
    p310 = catalog.get("ascend", "Ascend 310P3")
    assert p310 is not None and p310.k8s_resource == "huawei.com/Ascend310P"
    assert "Ascend310P" in p310.sources["k8s_resource"]


# --- allocation rules ------------------------------------------------------------------------


def test_vendor_allocation_rules(catalog: DeviceCatalog) -> None:
    p800 = catalog.get("kunlunxin", "P800")
    assert p800 is not None and p800.allocation == AllocationRule(sizes=(1, 2, 4, 8), within_island=True)
    assert "HAMi" in p800.sources["allocation"] and "§7.6" in p800.sources["allocation"]
    a3 = catalog.get("ascend", "Ascend 910C")
    assert a3 is not None and a3.allocation == AllocationRule(multiple_of=2)
    assert allocation_rule("kunlunxin", "P800 OAM") == p800.allocation
    assert allocation_rule("huawei", "Ascend910") == a3.allocation
    assert allocation_rule("nvidia", "H100 80GB") is None
    assert allocation_rule("nvidia", "B200") is None
    assert allocation_rule("kunlunxin", "P800 PCIe") is None


@pytest.mark.parametrize(
    ("rule", "allowed", "refused"),
    [
        (AllocationRule(sizes=(1, 2, 4, 8), within_island=True), [0, 1, 2, 4, 8], [3, 5, 6, 7, 16]),
        (AllocationRule(multiple_of=2), [0, 2, 4, 6, 16], [1, 3, 5]),
        (AllocationRule(sizes=(2, 4), multiple_of=2), [2, 4], [1, 6]),
    ],
)
def test_rule_allows(rule: AllocationRule, allowed: list[int], refused: list[int]) -> None:
    assert all(rule.allows(n) for n in allowed)
    assert not any(rule.allows(n) for n in refused)


def test_rule_in_words() -> None:
    assert AllocationRule(sizes=(1, 2, 4, 8), within_island=True).describe() == (
        "takes 1, 2, 4 or 8 devices per worker, within one interconnect island where they fit in one"
    )
    assert AllocationRule(multiple_of=2).describe() == "takes devices in index-aligned groups of 2"


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [
        ({"sizes": [4, 2]}, "sizes: must be ascending without repeats (got [4, 2])"),
        ({"sizes": [1, 2], "multiple_of": 2}, "every size must be a multiple of multiple_of (2)"),
        ({}, "states no rule; write `allocation: null` instead"),
        ({"sizes": []}, "sizes: list at least one count"),
        ({"sizes": [0, 1]}, "must be a positive"),
        ({"multiple_of": 2, "pairs": True}, "pairs: unknown field"),
    ],
)
def test_bad_allocation_rules(tmp_path: Path, allocation: dict[str, Any], expected: str) -> None:
    msg = problems(write(tmp_path, entry(allocation=allocation, sources=SRC(allocation=1))))
    assert "models[0] (cambricon MLU590).allocation" in msg
    assert expected in msg


def test_allocation_rule_needs_a_source(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(allocation={"multiple_of": 2})))
    assert ".allocation: has a value but no source" in msg


def test_board_power_only_on_multi_chip_boards(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(chips_per_board=1, board_tdp_w=250, sources=SRC(board_tdp_w=1))))
    assert ".board_tdp_w: is for boards of several chips" in msg


def test_chip_tdp_is_the_board_share(tmp_path: Path) -> None:
    two = {"chips_per_board": 2, "board_tdp_w": 250}
    srcs = SRC(tdp_w=1, chips_per_board=1, board_tdp_w=1)
    msg = problems(write(tmp_path, entry(tdp_w=250, sources=srcs, **two)))
    assert ".tdp_w: must be board_tdp_w / chips_per_board = 125" in msg
    assert DeviceCatalog.load(write(tmp_path, entry(tdp_w=125, sources=srcs, **two)))
    # A chip count needs a source; an unknown one (null) does not.
    assert ".chips_per_board: has a value but no source" in problems(
        write(tmp_path, entry(chips_per_board=2))
    )
    assert DeviceCatalog.load(write(tmp_path, entry(chips_per_board=None)))


# --- lookups --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vendor", "name", "model"),
    [
        ("nvidia", "NVIDIA H100 80GB HBM3", "H100 80GB"),
        ("", "nvidia h100 80gb hbm3", "H100 80GB"),
        ("nvidia", "H100-SXM5-80GB", "H100 80GB"),
        ("nvidia", "V100M32", "V100 32GB"),
        ("NVIDIA", "v100m16", "V100 16GB"),
        ("", "Tesla V100-SXM2-32GB", "V100 32GB"),
        ("", "P100", "P100 16GB PCIe"),
        ("", "T4", "T4"),
        ("", "A10", "A10"),
        ("nvidia", "NVIDIA A800-SXM4-80GB", "A800 80GB"),
        # the NVML backend's fallback: NVML name less "NVIDIA ", spaces turned to dashes
        ("nvidia", "GeForce-RTX-4090", "RTX 4090"),
        ("nvidia", "Tesla-T4", "T4"),
        ("nvidia", "H800-80GB-HBM3", "H800"),
        ("ascend", "Ascend-910B", "Ascend 910B"),
        ("ascend", "910B2C", "Ascend 910B"),
        ("cambricon", "mlu370_x8", "MLU370-X8"),
        ("mthreads", "MTTS4000", "MTT S4000"),
        ("hygon", "K100_AI", "K100-AI"),
        ("metax", "MXC500", "C500"),
        # what the vendor tools print (research §N.2), and the old vendor name
        ("huawei", "910B2C", "Ascend 910B"),
        ("ascend", "Ascend 910B2C", "Ascend 910B"),
        ("ascend", "Ascend910B3", "Ascend 910B"),
        ("ascend", "910B4", "Ascend 910B4"),
        ("ascend", "Ascend910", "Ascend 910C"),
        ("ascend", "310P3", "Ascend 310P3"),
        ("cambricon", "MLU370-X8", "MLU370-X8"),
        ("cambricon", "MLU370-X4", "MLU370-X4"),
        ("hygon", "K100_AI", "K100-AI"),
        ("hygon", "Z100L", "Z100"),
        ("moorethreads", "MTT S80", "MTT S80"),
        ("moorethreads", "MTT S5000", "MTT S5000"),
        ("moorethreads", "MTTS4000", "MTT S4000"),
        ("iluvatar", "Iluvatar BI-V150", "BI-V150"),
        ("iluvatar", "Iluvatar BI-V100", "BI-V100"),
        ("metax", "MetaX C500", "C500"),
        ("metax", "MXC550", "C550"),
        ("kunlunxin", "P800 OAM", "P800"),
        ("kunlunxin", "P800 PCIe", "P800 PCIe"),
        ("enflame", "S60", "S60"),
        ("enflame", "L300", "L300"),
        ("amd", "AMD Instinct MI250X", "MI250X"),
    ],
)
def test_lookup_by_name_or_alias(catalog: DeviceCatalog, vendor: str, name: str, model: str) -> None:
    found = catalog.get(vendor, name)
    assert found is not None
    assert found.model == model


def test_lookup_misses_are_none(catalog: DeviceCatalog) -> None:
    assert catalog.get("", "B200") is None
    # Not known to be the same part as an entry, so not matched (notes say why).
    assert catalog.get("enflame", "S60G") is None
    assert catalog.get("iluvatar", "BI-V150S") is None
    assert catalog.get("cambricon", "MLUXXX-XX") is None
    assert catalog.get("ascend", "H100 80GB") is None
    assert catalog.get("nobody", "T4") is None


def test_models_by_vendor(catalog: DeviceCatalog) -> None:
    nvidia = catalog.models("nvidia")
    assert nvidia and all(m.vendor == "nvidia" for m in nvidia)
    assert catalog.models("NVIDIA") == nvidia
    assert catalog.models("nobody") == ()
    assert len(catalog.models()) == len(catalog)


# --- unknowns -------------------------------------------------------------------------------


def test_unknowns_stay_none(catalog: DeviceCatalog) -> None:
    mlu590 = catalog.get("cambricon", "MLU590")
    assert mlu590 is not None
    assert (mlu590.memory_gib, mlu590.tdp_w, mlu590.dense_tflops) == (None, None, None)
    ascend = catalog.get("ascend", "Ascend 910B")
    assert ascend is not None
    assert ascend.tdp_w is None and ascend.island_size is None
    # Figures the research tags [U] stay null and are quoted in the notes.
    for vendor, model, quoted in [
        ("ascend", "Ascend 910C", "~310 W"),
        ("enflame", "i20", "150 W"),
        ("hygon", "Z100", "32 GB"),
        ("iluvatar", "BI-V150", None),
        ("kunlunxin", "P800", "~345"),
    ]:
        m = catalog.get(vendor, model)
        assert m is not None and m.dense_tflops is None, model
        if quoted:
            assert quoted in m.notes, model
    r200 = catalog.get("kunlunxin", "R200")
    assert r200 is not None and r200.memory_gib is None  # 16 GB and 32 GB variants


@pytest.mark.parametrize(
    ("vendor", "model"), [("nvidia", "V100 32GB"), ("nvidia", "T4"), ("nvidia", "P100 16GB")]
)
def test_dense_tflops_falls_back_to_fp16(catalog: DeviceCatalog, vendor: str, model: str) -> None:
    m = catalog.get(vendor, model)
    assert m is not None
    assert m.bf16_tflops is None
    assert m.fp16_tflops is not None and m.dense_tflops == m.fp16_tflops


def test_dense_tflops_prefers_bf16() -> None:
    m = DeviceModel.model_validate(
        entry(bf16_tflops=10, fp16_tflops=20, sources=SRC(bf16_tflops=1, fp16_tflops=1))
    )
    assert m.dense_tflops == 10
    assert DeviceModel.model_validate(entry()).dense_tflops is None


def test_device_model_is_frozen() -> None:
    m = DeviceModel.model_validate(entry())
    with pytest.raises(ValidationError):
        m.tdp_w = 5  # type: ignore[misc]


# --- relative speed -------------------------------------------------------------------------


def test_relative_speed_orders_generations(catalog: DeviceCatalog) -> None:
    speeds = [catalog.relative_speed("nvidia", m) for m in ("H100 80GB", "A100 80GB", "V100 32GB", "T4")]
    assert None not in speeds
    assert speeds == sorted(speeds, reverse=True)  # type: ignore[type-var]
    assert speeds[1] == 1.0


def test_relative_speed_unknowns_are_none(catalog: DeviceCatalog) -> None:
    assert catalog.relative_speed("ascend", "Ascend 910B") is None
    assert catalog.relative_speed("nvidia", "B200") is None
    assert catalog.relative_speed("nvidia", "T4", reference=("ascend", "Ascend 910B")) is None


def test_relative_speed_other_reference(catalog: DeviceCatalog) -> None:
    speed = catalog.relative_speed("nvidia", "A100 80GB", reference=("nvidia", "H100 80GB"))
    assert speed is not None and 0.3 < speed < 0.33


# --- bad catalog files ----------------------------------------------------------------------


def SRC(**fields: int) -> dict[str, str]:
    return {f: "a citation" for f in fields}


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {f: None for f in SOURCED_FIELDS}
    base.update(vendor="cambricon", model="MLU590", aliases=[], sources={}, notes="")
    base.update(overrides)
    return base


def write(tmp_path: Path, *models: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "models": list(models), **top}, sort_keys=False))
    return path


def problems(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        DeviceCatalog.load(path)
    return str(info.value)


def test_minimal_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, entry(), entry(vendor="enflame", model="S60", tdp_w=300, sources=SRC(tdp_w=1)))
    cat = DeviceCatalog.load(path)
    assert len(cat) == 2 and cat.get("enflame", "s60") is not None


def test_negative_tdp_names_entry_and_field(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(), entry(), entry(), entry(tdp_w=-1, sources=SRC(tdp_w=1))))
    assert "models[3] (cambricon MLU590).tdp_w: must be a positive number (got -1)" in msg


def test_unknown_field_suggests_the_right_one(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(tdpw=300)))
    assert "models[0] (cambricon MLU590).tdpw: unknown field; did you mean 'tdp_w'?" in msg


def test_missing_vendor(tmp_path: Path) -> None:
    e = entry()
    del e["vendor"]
    assert "models[0] (MLU590).vendor: required" in problems(write(tmp_path, e))


def test_unknown_vendor(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(vendor="Nvidia")))
    assert ".vendor: must be one of nvidia, amd," in msg and "(got 'Nvidia')" in msg


def test_missing_figure_says_write_null(tmp_path: Path) -> None:
    e = entry()
    del e["tdp_w"]
    assert "(cambricon MLU590).tdp_w: required; write null if unknown" in problems(write(tmp_path, e))


def test_figure_without_source(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(memory_gib=48)))
    assert "models[0] (cambricon MLU590).memory_gib: has a value but no source" in msg


def test_text_is_not_a_figure(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(tdp_w="300", island_size=True, sources=SRC(tdp_w=1, island_size=1))))
    assert ".tdp_w: must be a number, or null if unknown (got '300')" in msg
    assert ".island_size: must be a whole number" in msg


def test_bad_confidence_and_source_keys(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(sources={"speed": "x"}, confidence={"tdp_w": "S"})))
    assert ".sources.speed: not a field that takes a source" in msg
    assert ".confidence.tdp_w: tags a null figure" in msg
    msg = problems(write(tmp_path, entry(tdp_w=1, sources=SRC(tdp_w=1), confidence={"tdp_w": "maybe"})))
    assert ".confidence.tdp_w: must be one of V, V-out, S, U (got 'maybe')" in msg


def test_duplicate_alias_names_both_entries(tmp_path: Path) -> None:
    msg = problems(
        write(tmp_path, entry(aliases=["MLU-590"]), entry(vendor="enflame", model="S60", aliases=["mlu_590"]))
    )
    assert "models[1] (enflame S60).aliases[0]: 'mlu_590' is already the aliases[0] of models[0]" in msg
    assert "(cambricon MLU590)" in msg


def test_alias_colliding_with_a_model_name(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(), entry(vendor="enflame", model="S60", aliases=["mlu590"])))
    assert (
        "models[1] (enflame S60).aliases[0]: 'mlu590' is already the model of models[0] (cambricon MLU590)"
        in msg
    )


def test_duplicate_model(tmp_path: Path) -> None:
    msg = problems(write(tmp_path, entry(), entry(model="mlu590")))
    assert "models[1] (cambricon mlu590): duplicates models[0] (cambricon MLU590)" in msg


def test_alias_repeating_its_own_model(tmp_path: Path) -> None:
    assert ".aliases[0]: 'mlu590' repeats model" in problems(write(tmp_path, entry(aliases=["mlu590"])))


def test_every_problem_is_reported(tmp_path: Path) -> None:
    e = entry(tdp_w=-5, sources=SRC(tdp_w=1))
    del e["vendor"]
    with pytest.raises(CatalogError) as info:
        DeviceCatalog.load(write(tmp_path, e, entry(memory_gib=0)))
    assert len(info.value.problems) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: [\n", "not valid YAML"),
        ("- 1\n", "must be a mapping with `version: 1`"),
        ("version: 1\nmodels: []\n", "models: must be a non-empty list"),
        ("version: 2\nmodels: [1]\n", "version: must be 1 (got 2)"),
        ("version: 1\nmodels: [1]\nextra: 1\n", "extra: unknown top-level key"),
        ("version: 1\nmodels: [1]\n", "models[0]: must be a mapping of fields"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "devices.yaml"
    path.write_text(text)
    assert expected in problems(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in problems(tmp_path / "nope.yaml")


def test_catalog_from_models_refuses_collisions() -> None:
    m = DeviceModel.model_validate(entry())
    with pytest.raises(CatalogError, match="duplicates models"):
        DeviceCatalog([m, m])


# --- packaging ------------------------------------------------------------------------------


def test_yaml_ships_with_the_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "*.yaml" in config["tool"]["setuptools"]["package-data"]["scheduler.catalog"]


def test_nvml_backend_names_resolve(catalog: DeviceCatalog) -> None:
    # The NVML backend reports these names as device models; the scheduler keys speed on them.
    from agents.backends.nvml_convert import MODEL_NAMES

    for nvml_name, reported in MODEL_NAMES.items():
        for name in (nvml_name, reported):
            found = catalog.get("nvidia", name)
            assert found is not None, name
            assert found is catalog.get("nvidia", reported)
