"""Which vendor a node has, and `corral agent inventory` (live, simulated and --parse)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.backends.base import BackendError
from agents.backends.detect import NoDeviceBackend, detect_backend
from agents.backends.vendors.backend import VendorBackend
from agents.backends.vendors.registry import detect_vendors, open_reader, pci_vendor_ids
from tests.agents.vendors.helpers import FIXTURES, install_fake_tool
from tests.harness import REPO


def pci_device(root: Path, slot: str, vendor: int, pci_class: int) -> None:
    dev = root / slot
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(f"0x{vendor:04x}\n")
    (dev / "class").write_text(f"0x{pci_class:06x}\n")


def test_pci_ids_count_only_accelerator_classes(tmp_path: Path) -> None:
    pci_device(tmp_path, "0000:c1:00.0", 0x19E5, 0x120000)  # an Ascend NPU: processing accelerator
    pci_device(tmp_path, "0000:3d:00.0", 0x19E5, 0x020000)  # a Huawei NIC: same vendor, not a device
    pci_device(tmp_path, "0000:13:00.0", 0xCABC, 0x120000)
    pci_device(tmp_path, "0000:05:00.0", 0x1A03, 0x030000)  # the BMC's VGA: display, counted
    assert pci_vendor_ids(tmp_path) == {0x19E5, 0xCABC, 0x1A03}
    assert pci_vendor_ids(tmp_path / "missing") == set()


def test_vendors_are_found_by_pci_id(tool_path: Path) -> None:
    assert detect_vendors(pci_ids={0x19E5}) == ["ascend"]
    assert detect_vendors(pci_ids={0xCABC, 0x1E36}) == ["cambricon", "enflame"]
    assert detect_vendors(pci_ids={0x10DE}) == []  # NVIDIA is NVML's


def test_a_tool_alone_counts_only_where_its_name_is_the_vendors_own(tool_path: Path) -> None:
    install_fake_tool(tool_path, "xpu-smi", {"*": "Intel(R) XPU Management Interface\n"})
    # Intel's xpu-smi on a machine whose PCI devices are Intel's: not Kunlunxin.
    assert detect_vendors(pci_ids={0x8086}) == []
    # No sysfs to ask (a container): the shared name still proves nothing.
    assert detect_vendors(pci_ids=set()) == []
    install_fake_tool(tool_path, "npu-smi", {"*": ""})
    assert detect_vendors(pci_ids=set()) == ["ascend"]
    # With a Kunlunxin PCI device the same name is Kunlunxin's.
    assert "kunlunxin" in detect_vendors(pci_ids={0x1D22})


def test_open_reader_explains_what_is_missing(tool_path: Path) -> None:
    with pytest.raises(BackendError, match=r"ascend: none of npu-smi is installed; library: cannot load"):
        open_reader("ascend")
    with pytest.raises(BackendError, match="cannot load"):
        open_reader("cambricon", "library")
    with pytest.raises(BackendError, match="unknown vendor 'intel'"):
        open_reader("intel")


def test_backend_by_name_reads_the_tool(tool_path: Path) -> None:
    table = (FIXTURES / "hygon" / "hy-smi_dtk24.04.1_k100ai.txt").read_text()
    install_fake_tool(tool_path, "hy-smi", {"": table, "*": table})
    backend = detect_backend(None, backend="hygon", via="cli")
    assert isinstance(backend, VendorBackend)
    devices = backend.inventory()
    assert len(devices) == 4 and {d.vendor for d in devices} == {"hygon"}
    assert devices[0].visibility_env == "HIP_VISIBLE_DEVICES" and devices[0].source == "cli"
    assert [round(t.power_w) for t in backend.sample()] == [118, 120, 116, 138]
    with pytest.raises(NoDeviceBackend, match="--backend-via must be one of auto, library, cli"):
        detect_backend(None, backend="hygon", via="smoke-signals")


# -- corral agent inventory -----------------------------------------------------------------

SUMMARY_TABLES = {
    "ascend": "npu-smi-25.5.2-910b2c.txt",
    "cambricon": "cnmon_v5.10.22_mlu370-x8.txt",
    "hygon": "hy-smi_dtk24.04.1_k100ai.txt",
    "moorethreads": "mthreads-gmi_2.4.1_s5000.txt",
    "iluvatar": "ixsmi_4.1.0_bi-v150.txt",
    "metax": "mx-smi_2.2.4_c500.txt",
    "kunlunxin": "xpu_smi_5.0.21.26_p800_oam.txt",
    "enflame": "efsmi_1.2.0.301_s60.txt",
    "amd": "amd-smi_26.2.1_mi355x_x2.txt",
    "nvidia": "nvidia-smi_535.154.05_a100.txt",
}
REQUIRED = (
    "vendor",
    "model",
    "index",
    "memory_total_mib",
    "power_w",
    "power_limit_w",
    "temperature_c",
    "healthy",
)


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler.cli", *args],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.mark.parametrize("vendor", sorted(SUMMARY_TABLES))
def test_parse_a_saved_summary_table(vendor: str) -> None:
    done = corral(
        "agent", "inventory", "--parse", vendor, str(FIXTURES / vendor / SUMMARY_TABLES[vendor]), "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    devices = json.loads(done.stdout)["devices"]
    assert devices
    for d in devices:
        assert set(REQUIRED) <= set(d) and d["vendor"] == vendor
        if vendor == "hygon":  # hy-smi's table shows VRAM% only; the total comes from --json
            assert d["memory_total_mib"] is None
        else:
            assert isinstance(d["memory_total_mib"], int) and d["memory_total_mib"] > 0


def test_parse_fields_of_the_ascend_capture() -> None:
    done = corral(
        "agent",
        "inventory",
        "--parse",
        "ascend",
        str(FIXTURES / "ascend" / SUMMARY_TABLES["ascend"]),
        "-o",
        "json",
    )
    first = json.loads(done.stdout)["devices"][0]
    assert (first["model"], first["index"], first["memory_total_mib"]) == ("Ascend 910B", 0, 65536)
    assert (first["power_w"], first["power_limit_w"], first["temperature_c"], first["healthy"]) == (
        93.9,
        None,
        41.0,
        True,
    )


def test_parse_refuses_a_file_of_another_tool_with_exit_2(tmp_path: Path) -> None:
    cnmon = FIXTURES / "cambricon" / SUMMARY_TABLES["cambricon"]
    done = corral("agent", "inventory", "--parse", "ascend", str(cnmon))
    assert done.returncode == 2
    assert "is not a summary table of npu-smi (ascend)" in done.stderr and "npu-smi >" in done.stderr
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"\x00\xff not a table \xfe\n")
    assert corral("agent", "inventory", "--parse", "metax", str(garbage)).returncode == 2
    unknown = corral("agent", "inventory", "--parse", "intel", str(cnmon))
    assert (
        unknown.returncode == 2
        and "unknown vendor 'intel'" in unknown.stderr
        and "kunlunxin" in unknown.stderr
    )
    missing = corral("agent", "inventory", "--parse", "ascend", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_inventory_of_a_simulated_node_speaking_npu_smi() -> None:
    done = corral("agent", "inventory", "--simulate", "ascend-910b-8", "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "recorded-ascend" and report["source"].startswith("npu-smi 25.5.2")
    assert [d["index"] for d in report["devices"]] == list(range(8))
    assert {d["model"] for d in report["devices"]} == {"Ascend 910B"}
    table = corral("agent", "inventory", "--simulate", "mlu370-x8-4")
    assert table.returncode == 0 and "MLU370-X8" in table.stdout and "mlu-card-6" in table.stdout


def test_inventory_without_devices_is_exit_2(tool_path: Path) -> None:
    done = corral("agent", "inventory", "--backend", "enflame", "--backend-via", "cli")
    assert done.returncode == 2 and "none of efsmi is installed" in done.stderr
