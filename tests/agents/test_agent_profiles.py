"""Profile validation: the shipped profiles load, and bad ones name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.profiles import (
    ProfileError,
    builtin_profile,
    builtin_profile_names,
    load_profile,
    parse_profile,
    resolve_profile,
)


def h100() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(builtin_profile("h100-sxm-8").read_text())
    return data


def error_of(data: Any) -> str:
    with pytest.raises(ProfileError) as err:
        parse_profile(data)
    return str(err.value)


def test_builtin_profiles() -> None:
    assert builtin_profile_names() == ["ascend-910b-8", "h100-sxm-8", "mlu370-x8-4"]
    nvidia = load_profile(builtin_profile("h100-sxm-8"))
    ascend = load_profile(builtin_profile("ascend-910b-8"))
    mlu = load_profile(builtin_profile("mlu370-x8-4"))
    assert (nvidia.devices.count, nvidia.devices.memory_bytes) == (8, 80 * 1024**3)
    assert (nvidia.devices.power.min_w, nvidia.devices.power.max_w, nvidia.devices.power.default_w) == (
        200,
        700,
        700,
    )
    assert nvidia.devices.peers(0) == [1, 2, 3, 4, 5, 6, 7]
    assert ascend.devices.visibility == "ASCEND_RT_VISIBLE_DEVICES" and not ascend.devices.power.settable
    assert ascend.devices.peers(2) == [0, 1, 3] and ascend.devices.peers(5) == [4, 6, 7]
    assert (mlu.devices.vendor, mlu.devices.count, mlu.devices.memory_gib) == ("cambricon", 8, 24)
    assert (ascend.devices.recorded, mlu.devices.recorded) == (
        "npu-smi-25.5.2-910b2c-8.txt",
        "cnmon-v5.10.22-mlu370-x8-8.txt",
    )
    assert mlu.devices.visibility == "MLU_VISIBLE_DEVICES" and mlu.devices.power.settable


def test_bad_value_names_the_field() -> None:
    data = h100()
    data["devices"]["power"]["idle_w"] = -5
    assert "devices.power.idle_w: must be > 0 (got -5)" in error_of(data)


def test_extra_and_missing_fields() -> None:
    data = h100()
    data["devices"]["power"]["turbo"] = True
    del data["node"]["cpu_count"]
    text = error_of(data)
    assert "devices.power.turbo: unknown field" in text
    assert "node.cpu_count: required" in text


def test_cross_field_rules() -> None:
    data = h100()
    data["devices"]["power"]["default_w"] = 800
    assert "devices.power: default_w (800) must lie between min_w (200) and max_w (700)" in error_of(data)
    data = h100()
    data["devices"]["power"]["idle_w"] = 900
    assert "idle_w (900) must be below load_w (650)" in error_of(data)
    data = h100()
    data["devices"]["interconnect"]["islands"] = [[0, 1], [1, 8]]
    assert "devices: interconnect.islands: device 1 is in two islands" in error_of(data)
    data = h100()
    data["devices"]["interconnect"]["islands"] = [[0, 8]]
    assert "device 8 is outside 0-7" in error_of(data)
    data = h100()
    data["devices"]["vendor"] = "acme"
    del data["devices"]["visibility_env"]
    assert "visibility_env is required for vendor 'acme'" in error_of(data)
    data = h100()
    data["devices"]["thermal"]["shutdown_c"] = 80
    assert "shutdown_c (80) must be above slowdown_c (87)" in error_of(data)
    data["devices"]["thermal"]["shutdown_c"] = 95
    assert parse_profile(data).devices.thermal.shutdown_c == 95


def test_visibility_defaults_by_vendor() -> None:
    data = h100()
    del data["devices"]["visibility_env"]
    assert parse_profile(data).devices.visibility == "CUDA_VISIBLE_DEVICES"


def test_files_and_names(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("devices: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(bad_yaml)
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "missing.yaml")
    assert resolve_profile("mlu370-x8-4") == builtin_profile("mlu370-x8-4")
    assert resolve_profile(builtin_profile("h100-sxm-8")) == builtin_profile("h100-sxm-8")
    with pytest.raises(ProfileError, match="h100-sxm-8"):
        resolve_profile("gb200-72")
    with pytest.raises(ProfileError, match="does not exist"):
        resolve_profile(tmp_path / "nope" / "x.yaml")
