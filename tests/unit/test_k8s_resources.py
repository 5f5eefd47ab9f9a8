"""Kubernetes resource names (scheduler/catalog/k8s_resources.yaml) for the Kubernetes launcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.catalog import VENDORS, DeviceCatalog
from scheduler.catalog.k8s_resources import (
    HamiResources,
    K8sResourcesError,
    K8sResourceTable,
    resource_names,
)


@pytest.fixture(scope="module")
def catalog() -> DeviceCatalog:
    return DeviceCatalog.load()


# --- the packaged table ----------------------------------------------------------------------


def test_every_vendor_has_names() -> None:
    assert K8sResourceTable.load().vendors == VENDORS
    assert K8sResourceTable.load() is K8sResourceTable.load()


def test_every_catalog_model_resolves_to_its_catalog_resource(catalog: DeviceCatalog) -> None:
    for m in catalog:
        found = resource_names(m.vendor, m.model)
        assert found.model == m.model and found.vendor == m.vendor
        # The catalog's k8s_resource is the vendor plugin's default name.
        assert found.vendor_plugin[0] == m.k8s_resource, m.label()
        for field in ("vendor_plugin", "hami"):
            assert found.sources.get(field), f"{m.label()}: {field} has no source"
        if found.hami_alternatives:
            assert found.sources.get("hami_alternatives"), m.label()


@pytest.mark.parametrize(
    ("vendor", "model", "plugin", "count", "memory", "core", "unit_mib"),
    [
        (
            "nvidia",
            "H100 80GB",
            "nvidia.com/gpu",
            "nvidia.com/gpu",
            "nvidia.com/gpumem",
            "nvidia.com/gpucores",
            1,
        ),
        ("amd", "MI300X", "amd.com/gpu", "amd.com/gpu", "amd.com/gpumem", "amd.com/gpucores", 1),
        ("hygon", "K100", "hygon.com/dcu", "hygon.com/hcunum", "hygon.com/hcumem", "hygon.com/hcucores", 1),
        (
            "moorethreads",
            "MTT S4000",
            "mthreads.com/gpu",
            "mthreads.com/vgpu",
            "mthreads.com/sgpu-memory",
            "mthreads.com/sgpu-core",
            512,
        ),
        (
            "iluvatar",
            "BI-V150",
            "iluvatar.com/gpu",
            "iluvatar.ai/BI-V150-vgpu",
            "iluvatar.ai/BI-V150.vMem",
            "iluvatar.ai/BI-V150.vCore",
            256,
        ),
        (
            "iluvatar",
            "BI-V100",
            "iluvatar.com/gpu",
            "iluvatar.ai/BI-V100-vgpu",
            "iluvatar.ai/BI-V100.vMem",
            "iluvatar.ai/BI-V100.vCore",
            256,
        ),
        (
            "metax",
            "C500",
            "metax-tech.com/gpu",
            "metax-tech.com/sgpu",
            "metax-tech.com/vmemory",
            "metax-tech.com/vcore",
            1024,
        ),
        (
            "enflame",
            "S60",
            "enflame.com/gcu",
            "enflame.com/drs-gcu",
            "enflame.com/gcu-memory",
            "enflame.com/gcu-core",
            1,
        ),
        (
            "ascend",
            "910B2",
            "huawei.com/Ascend910",
            "huawei.com/Ascend910B2",
            "huawei.com/Ascend910B2-memory",
            "huawei.com/Ascend910B2-core",
            1,
        ),
        (
            "ascend",
            "Ascend910B3",
            "huawei.com/Ascend910",
            "huawei.com/Ascend910B3",
            "huawei.com/Ascend910B3-memory",
            "huawei.com/Ascend910B3-core",
            1,
        ),
        (
            "ascend",
            "910B4",
            "huawei.com/Ascend910",
            "huawei.com/Ascend910B4",
            "huawei.com/Ascend910B4-memory",
            "huawei.com/Ascend910B4-core",
            1,
        ),
        (
            "ascend",
            "310P3",
            "huawei.com/Ascend310P",
            "huawei.com/Ascend310P",
            "huawei.com/Ascend310P-memory",
            "huawei.com/Ascend310P-core",
            1,
        ),
        (
            "ascend",
            "Ascend910",
            "huawei.com/Ascend910",
            "huawei.com/Ascend910C",
            "huawei.com/Ascend910C-memory",
            "huawei.com/Ascend910C-core",
            1,
        ),
    ],
)
def test_names_per_model(
    vendor: str, model: str, plugin: str, count: str, memory: str, core: str, unit_mib: int
) -> None:
    found = resource_names(vendor, model)
    assert found.vendor_plugin[0] == plugin
    assert found.hami == HamiResources(count=count, memory=memory, core=core, memory_unit_mib=unit_mib)


def test_hygon_keeps_both_hami_spellings() -> None:
    found = resource_names("hygon", "Z100L")
    assert found.model == "Z100"
    assert set(found.vendor_plugin) == {"hygon.com/dcu", "hygon.com/hcu"}
    assert found.hami is not None and found.hami.count == "hygon.com/hcunum"
    assert [(h.count, h.memory, h.core) for h in found.hami_alternatives] == [
        ("hygon.com/dcunum", "hygon.com/dcumem", "hygon.com/dcucores")
    ]


def test_ascend_bins_without_hami_names() -> None:
    # HAMi names Ascend chips per bin; it has none for 910B1/910B2C, and a bare "910B" says no bin.
    for name in ("910B2C", "910B1", "Ascend 910B"):
        found = resource_names("ascend", name)
        assert found.model == "Ascend 910B" and found.hami is None
        assert found.vendor_plugin == ("huawei.com/Ascend910",)
    assert resource_names("huawei", "910B2").hami is not None  # the old vendor name still finds it


def test_cambricon_memory_is_a_percentage() -> None:
    found = resource_names("cambricon", "MLU370-X8")
    assert found.vendor_plugin == ("cambricon.com/mlu", "cambricon.com/mlu370")
    assert found.hami is not None and found.hami.memory_percent and found.hami.memory_unit_mib is None
    assert found.hami.memory_units(4800, device_mib=24000) == 20
    assert found.hami.memory_units(24001, device_mib=24000) == 100
    with pytest.raises(ValueError, match="percent of the device"):
        found.hami.memory_units(4800)
    assert resource_names("cambricon", "MLU590").vendor_plugin[1] == "cambricon.com/mlu590"


def test_memory_units_round_up() -> None:
    assert resource_names("moorethreads", "MTT S4000").hami.memory_units(8192) == 16  # type: ignore[union-attr]
    assert resource_names("iluvatar", "BI-V150").hami.memory_units(1000) == 4  # type: ignore[union-attr]
    assert resource_names("metax", "C500").hami.memory_units(1025) == 2  # type: ignore[union-attr]
    whole = resource_names("kunlunxin", "R200").hami
    assert whole == HamiResources(count="kunlunxin.com/xpu")
    with pytest.raises(ValueError, match="no memory resource"):
        whole.memory_units(1)


def test_kunlunxin_whole_cards_and_vxpu() -> None:
    p800 = resource_names("kunlunxin", "P800 OAM")
    assert p800.hami == HamiResources(count="kunlunxin.com/xpu")
    assert p800.hami_alternatives == (
        HamiResources(count="kunlunxin.com/vxpu", memory="kunlunxin.com/vxpu-memory", memory_unit_mib=1),
    )
    assert resource_names("kunlunxin", "R200").hami_alternatives == ()


def test_iluvatar_and_metax_alternatives() -> None:
    assert resource_names("iluvatar", "BI-V150").vendor_plugin == ("iluvatar.com/gpu", "iluvatar.ai/gpu")
    assert resource_names("iluvatar", "some future part").hami is None  # HAMi names chips one by one
    assert resource_names("metax", "MXC550").hami_alternatives == (HamiResources(count="metax-tech.com/gpu"),)


def test_unknown_models_get_the_vendor_defaults() -> None:
    found = resource_names("enflame", "S60G")
    assert found.model == "S60G" and found.vendor_plugin[0] == "enflame.com/gcu"


def test_unknown_vendor() -> None:
    with pytest.raises(LookupError, match="no Kubernetes resource names for vendor 'intel'"):
        resource_names("intel", "Max 1550")


# --- bad files -------------------------------------------------------------------------------


def default(vendor: str = "enflame", **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "vendor": vendor,
        "vendor_plugin": ["enflame.com/gcu"],
        "hami": None,
        "sources": {"vendor_plugin": "a", "hami": "b"},
    }
    e.update(over)
    return e


def problems(tmp_path: Path, *entries: dict[str, Any], **top: Any) -> str:
    path = tmp_path / "k8s.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "entries": list(entries), **top}, sort_keys=False))
    with pytest.raises(K8sResourcesError) as info:
        K8sResourceTable.load(path, DeviceCatalog.load())
    return str(info.value)


def test_minimal_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "k8s.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "entries": [default()]}))
    table = K8sResourceTable.load(path, DeviceCatalog.load())
    assert table.vendors == ("enflame",)
    assert table.lookup("enflame", "L300").vendor_plugin == ("enflame.com/gcu",)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([default(vendor_plugin=["enflame gcu"])], "'enflame gcu' is not a Kubernetes resource name"),
        ([default(vendor_plugin=[])], "vendor_plugin"),
        ([default(vendor="Enflame")], "vendor: must be one of"),
        ([default(), default()], "a second default entry for enflame"),
        ([default(sources={"vendor_plugin": "a"})], "hami: has no source"),
        ([default(sources={"vendor_plugin": "a", "hami": "b", "speed": "c"})], "sources.speed: not a field"),
        (
            [{k: v for k, v in default().items() if k != "hami"}],
            "hami: the vendor's default entry writes it out",
        ),
        (
            [default(), {"vendor": "enflame", "models": ["S70"], "hami": None, "sources": {"hami": "x"}}],
            "'S70' is not a enflame model name in the catalog",
        ),
        ([default(), {"vendor": "enflame", "models": ["S60"], "sources": {}}], "overrides nothing"),
        (
            [
                default(),
                {
                    "vendor": "enflame",
                    "models": ["S60"],
                    "names": ["S60G"],
                    "hami": None,
                    "sources": {"hami": "x"},
                },
            ],
            "either catalog models or tool spellings, not both",
        ),
        (
            [{"vendor": "enflame", "names": ["S60G"], "hami": None, "sources": {"hami": "x"}}],
            "enflame: entries override a vendor with no default entry",
        ),
        ([default(hami={"count": "a.com/x", "memory": "a.com/m"})], "needs exactly one unit"),
        (
            [
                default(
                    hami={
                        "count": "a.com/x",
                        "memory": "a.com/m",
                        "memory_unit_mib": 1,
                        "memory_percent": True,
                    }
                )
            ],
            "needs exactly one unit",
        ),
        (
            [default(hami={"count": "a.com/x", "memory_unit_mib": 256})],
            "a memory unit without a memory resource",
        ),
        ([default(hami={"count": "a.com/x", "cores": "a.com/c"})], "hami.cores: unknown field"),
    ],
)
def test_bad_entries(tmp_path: Path, entries: list[dict[str, Any]], expected: str) -> None:
    assert expected in problems(tmp_path, *entries)


def test_bad_top_level(tmp_path: Path) -> None:
    assert "version: must be 1 (got 2)" in problems(tmp_path, default(), version=2)
    assert "extra: unknown top-level key" in problems(tmp_path, default(), extra=1)
    path = tmp_path / "bad.yaml"
    path.write_text("- 1\n")
    with pytest.raises(K8sResourcesError, match="must be a mapping"):
        K8sResourceTable.load(path, DeviceCatalog.load())
    with pytest.raises(K8sResourcesError, match="cannot read"):
        K8sResourceTable.load(tmp_path / "missing.yaml", DeviceCatalog.load())
