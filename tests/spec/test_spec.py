"""The job spec: good and bad specs, every problem listed, YAML locations, proto round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from corral.v1 import job_pb2

from scheduler.spec import (
    IMAGE_RESERVED_MESSAGE,
    KNOWN_VENDORS,
    AcceleratorSpec,
    JobSpec,
    SpecError,
    SpecProblem,
    load_spec_file,
    parse_memory,
    parse_spec,
    parse_spec_yaml,
    spec_from_proto,
    spec_to_proto,
    validate_for_local_launcher,
)

REPO = Path(__file__).resolve().parents[2]


def problems(data: object, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "test", **kwargs)
    return {p.path: p.message for p in info.value.problems}


def yaml_problems(text: str) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec_yaml(text, "test.yaml")
    return {p.path: p.message for p in info.value.problems}


def base(**fields: object) -> dict[str, object]:
    return {"name": "train", "command": ["python", "train.py"], **fields}


# ----------------------------------------------------------------------------- good specs


def test_minimal_spec_takes_defaults() -> None:
    spec = parse_spec({"name": "a", "command": "python train.py"})
    assert spec.command == ["python", "train.py"]
    assert (spec.workers, spec.devices_per_worker, spec.queue, spec.priority) == (1, 0, "default", 0)
    assert (spec.args, spec.env, spec.image, spec.accelerator) == ([], {}, None, None)
    assert (spec.checkpoint_dir, spec.working_dir, spec.max_restarts) == (None, None, 0)


def test_full_spec() -> None:
    spec = parse_spec_yaml(
        """
name: llama-7b-ft
command: python -m torch.distributed.run 'my script.py'
args: [--lr, "0.1"]
workers: 4
devices_per_worker: 8
accelerator:
  vendors: [NVIDIA, nvidia, huawei]
  models: [H100-SXM5-80GB, Ascend-910B]
  min_memory: 40GiB
queue: research-a
priority: -1000
env: {NCCL_DEBUG: INFO, _X1: ""}
checkpoint_dir: /ckpt/llama
working_dir: /home/me/proj
max_restarts: 100
"""
    )
    assert spec.command == ["python", "-m", "torch.distributed.run", "my script.py"]
    assert spec.argv == [*spec.command, "--lr", "0.1"]
    assert spec.accelerator == AcceleratorSpec(
        vendors=["nvidia", "huawei"], models=["H100-SXM5-80GB", "Ascend-910B"], min_memory=40 * 2**30
    )
    assert spec.total_devices == 32
    assert spec.env == {"NCCL_DEBUG": "INFO", "_X1": ""}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("40GiB", 40 * 2**30),
        ("80GB", 80 * 10**9),
        ("80 gb", 80 * 10**9),
        ("512Mi", 512 * 2**20),
        ("1.5TiB", int(1.5 * 2**40)),
        ("2048", 2048),
        ("100B", 100),
        (17179869184, 17179869184),
    ],
)
def test_memory_sizes(given: object, expected: int) -> None:
    assert parse_memory(given) == expected


@pytest.mark.parametrize("name", ["a", "a1", "1a", "my-job-2", "x" * 63])
def test_good_names(name: str) -> None:
    assert parse_spec(base(name=name)).name == name


@pytest.mark.parametrize("vendor", KNOWN_VENDORS)
def test_every_known_vendor(vendor: str) -> None:
    spec = parse_spec(base(devices_per_worker=1, accelerator={"vendors": [vendor]}))
    assert spec.accelerator is not None and spec.accelerator.vendors == [vendor]


def test_nulls_mean_empty() -> None:
    spec = parse_spec_yaml("name: a\ncommand: [x]\nargs:\nenv:\naccelerator:\nimage:\ncheckpoint_dir:\n")
    assert (spec.args, spec.env, spec.accelerator, spec.image, spec.checkpoint_dir) == (
        [],
        {},
        None,
        None,
        None,
    )


def test_empty_accelerator_is_no_constraint_even_on_cpu_jobs() -> None:
    assert parse_spec(base(accelerator={})).accelerator is None
    assert parse_spec(base(accelerator={"min_memory": 0})).accelerator is None


# ----------------------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"workers": -3}, "workers", "must be ≥ 1 (got -3)"),
        ({"workers": 0}, "workers", "must be ≥ 1 (got 0)"),
        ({"workers": 4097}, "workers", "must be ≤ 4096 (got 4097)"),
        ({"workers": "two"}, "workers", "must be an integer (got 'two')"),
        ({"workers": 2.5}, "workers", "must be an integer (got 2.5)"),
        ({"workers": True}, "workers", "must be an integer (got true)"),
        ({"devices_per_worker": 65}, "devices_per_worker", "must be ≤ 64 (got 65)"),
        ({"devices_per_worker": -1}, "devices_per_worker", "must be ≥ 0 (got -1)"),
        ({"priority": 1001}, "priority", "must be ≤ 1000 (got 1001)"),
        ({"priority": -1001}, "priority", "must be ≥ -1000 (got -1001)"),
        ({"max_restarts": 101}, "max_restarts", "must be ≤ 100 (got 101)"),
        ({"name": "x" * 64}, "name", "must be at most 63 characters (got 64)"),
        ({"name": 5}, "name", "must be a string (got 5; quote it in YAML)"),
        ({"command": []}, "command", "must name the program to run"),
        ({"command": ""}, "command", "must name the program to run"),
        ({"command": "python 'unclosed"}, "command", "cannot split into words: No closing quotation"),
        ({"command": ["python", 3]}, "command[1]", "must be a string (got 3; quote it in YAML)"),
        ({"command": {"a": 1}}, "command", "must be a list of strings or one string"),
        ({"args": [None]}, "args[0]", "must be a string (got null)"),
        ({"env": {"A": 4}}, "env.A", "must be a string (got 4; quote it in YAML)"),
        ({"env": {"1A": "x"}}, "env.1A", "not a valid variable name"),
        ({"env": ["A=b"]}, "env", "must be a mapping of fields (got ['A=b'])"),
        ({"checkpoint_dir": "ckpt"}, "checkpoint_dir", "must be an absolute path (got 'ckpt')"),
        ({"working_dir": "./x"}, "working_dir", "must be an absolute path (got './x')"),
        ({"queue": "Fast Lane"}, "queue", "try 'fast-lane'"),
        ({"accelerator": "nvidia"}, "accelerator", "must be a mapping of fields (got 'nvidia')"),
        ({"workerz": 2}, "workerz", "unknown field (did you mean 'workers'?)"),
    ],
)
def test_bad_field(fields: dict[str, object], path: str, message: str) -> None:
    found = problems(base(**fields))
    assert list(found) == [path]
    assert message in found[path]
    assert "type=" not in found[path] and "Input should" not in found[path]


@pytest.mark.parametrize(
    "key",
    ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
     "CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES", "CORRAL_JOB_ID", "CORRAL_ANYTHING"],
)  # fmt: skip
def test_reserved_env(key: str) -> None:
    found = problems(base(env={key: "1"}))
    assert "set by the platform" in found[f"env.{key}"]


def test_unknown_vendor_names_the_allowed_ones() -> None:
    found = problems(base(devices_per_worker=1, accelerator={"vendors": ["nvidia", "ascend", "intel"]}))
    assert set(found) == {"accelerator.vendors[1]", "accelerator.vendors[2]"}
    assert "did you mean 'huawei'?" in found["accelerator.vendors[1]"]
    for vendor in KNOWN_VENDORS:
        assert vendor in found["accelerator.vendors[2]"]


def test_accelerator_needs_devices() -> None:
    found = problems(base(accelerator={"vendors": ["nvidia"]}))
    assert "devices_per_worker" in found["accelerator"]
    assert parse_spec(base(devices_per_worker=1, accelerator={"vendors": ["nvidia"]})).accelerator


def test_name_is_required_and_top_level_must_be_a_mapping() -> None:
    assert problems({"command": "x"}) == {"name": "required"}
    assert "got an empty document" in problems(None)[""]
    assert "got ['a']" in problems(["a"])[""]


def test_every_problem_is_listed() -> None:
    bad = {
        "name": "Bad_Name",
        "command": [],
        "workers": -3,
        "devices_per_worker": "two",
        "accelerator": {"vendors": ["nvidia", "amdd"], "min_memory": "lots", "colour": "red"},
        "priority": 5000,
        "env": {"RANK": "0", "bad-key": "x"},
        "checkpoint_dir": "relative",
        "max_restarts": -1,
        "gpus": 8,
    }
    found = problems(bad)
    assert set(found) == {
        "name", "command", "workers", "devices_per_worker", "accelerator.vendors[1]",
        "accelerator.min_memory", "accelerator.colour", "priority", "env.RANK", "env.bad-key",
        "checkpoint_dir", "max_restarts", "gpus",
    }  # fmt: skip
    assert "did you mean 'amd'?" in found["accelerator.vendors[1]"]


def test_str_renders_one_problem_per_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(base(workers=-3, priority=5000), "job.yaml")
    assert str(info.value).splitlines() == [
        "workers: must be ≥ 1 (got -3)",
        "priority: must be ≤ 1000 (got 5000)",
    ]
    assert info.value.source == "job.yaml"
    assert str(SpecProblem("", "whole thing")) == "whole thing"


# ----------------------------------------------------------------------------- YAML


def test_yaml_syntax_error_has_line_and_column() -> None:
    found = yaml_problems("name: a\ncommand: [python, train.py\nworkers: 2\n")
    (message,) = found.values()
    assert message.startswith("YAML syntax error at line 3, column")


def test_yaml_bad_indentation_location() -> None:
    (message,) = yaml_problems("name: a\n  command: x\n").values()
    assert "line 2, column 10" in message


def test_yaml_duplicate_keys_are_reported_with_the_other_problems() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_yaml("name: a\ncommand: x\nworkers: 2\nworkers: -1\npriority: 2000\n")
    assert [str(p) for p in info.value.problems] == [
        "workers: given twice (lines 3 and 4); keep one",
        "workers: must be ≥ 1 (got -1)",
        "priority: must be ≤ 1000 (got 2000)",
    ]
    with pytest.raises(SpecError) as info:
        parse_spec_yaml("name: a\ncommand: x\nworkers: 2\nworkers: 3\n")
    assert [str(p) for p in info.value.problems] == ["workers: given twice (lines 3 and 4); keep one"]


def test_yaml_multiple_documents() -> None:
    (message,) = yaml_problems("name: a\n---\nname: b\n").values()
    assert "one YAML document (got 2" in message


def test_load_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: a\ncommand: python train.py\n")
    assert load_spec_file(path).name == "a"
    with pytest.raises(SpecError) as info:
        load_spec_file(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value)


# ----------------------------------------------------------------------------- image / launcher


def test_image_is_accepted_by_the_model_but_not_the_local_launcher() -> None:
    spec = parse_spec(base(image="pytorch/pytorch:2.5"))
    assert spec.image == "pytorch/pytorch:2.5"
    with pytest.raises(SpecError) as info:
        validate_for_local_launcher(spec)
    assert str(info.value) == f"image: {IMAGE_RESERVED_MESSAGE}"
    assert IMAGE_RESERVED_MESSAGE.startswith("reserved for the Kubernetes launcher, which this control plane")
    found = problems(base(image="x", workers=0), local_launcher=True)
    assert set(found) == {"image", "workers"}
    assert validate_for_local_launcher(parse_spec(base())) == parse_spec(base())


# ----------------------------------------------------------------------------- proto


ROUND_TRIP = [
    base(),
    base(workers=4096, devices_per_worker=64, priority=-1000, max_restarts=100),
    base(
        name="full",
        command="python -c 'print(1)'",
        args=["--a", ""],
        image="img:1",
        devices_per_worker=2,
        accelerator={"vendors": ["huawei"], "models": ["Ascend-910B"], "min_memory": "64GB"},
        queue="q1",
        priority=7,
        env={"A": "1", "B": ""},
        checkpoint_dir="/ckpt",
        working_dir="/work",
        max_restarts=3,
    ),
    base(devices_per_worker=1, accelerator={"models": ["H100-SXM5-80GB"]}),
]


@pytest.mark.parametrize("data", ROUND_TRIP)
def test_round_trip(data: dict[str, object]) -> None:
    spec = parse_spec(data)
    msg = spec_to_proto(spec)
    wire = job_pb2.JobSpec.FromString(msg.SerializeToString())
    assert spec_from_proto(wire) == spec
    assert spec_to_proto(spec_from_proto(wire)) == msg


def test_proto_zero_values_mean_defaults() -> None:
    spec = spec_from_proto(job_pb2.JobSpec(name="a", command=["x"]))
    assert spec == JobSpec(name="a", command=["x"])
    assert (spec.workers, spec.queue) == (1, "default")
    assert not spec_to_proto(spec).HasField("accelerator")


def test_proto_gets_the_same_errors() -> None:
    msg = job_pb2.JobSpec(
        command=["python"], workers=5000, devices_per_worker=0, env={"RANK": "1"}, checkpoint_dir="rel"
    )
    msg.accelerator.vendors.append("ascend")
    with pytest.raises(SpecError) as info:
        spec_from_proto(msg)
    found = {p.path: p.message for p in info.value.problems}
    assert set(found) == {"name", "workers", "accelerator.vendors[0]", "env.RANK", "checkpoint_dir"}
    assert found["workers"] == "must be ≤ 4096 (got 5000)"


def test_proto_image_with_local_launcher() -> None:
    msg = job_pb2.JobSpec(name="a", command=["x"], image="img")
    assert spec_from_proto(msg).image == "img"
    with pytest.raises(SpecError, match="reserved for the Kubernetes launcher"):
        spec_from_proto(msg, local_launcher=True)


# ----------------------------------------------------------------------------- the shipped examples


@pytest.mark.parametrize("name", ["job.yaml", "job-ddp.yaml", "job-ascend.yaml"])
def test_example_specs_are_valid(name: str) -> None:
    spec = load_spec_file(REPO / "examples" / name, local_launcher=True)
    assert spec.devices_per_worker >= 1


def test_bad_example_names_every_mistake() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_file(REPO / "examples" / "bad-job.yaml")
    paths = [p.path for p in info.value.problems]
    assert len(paths) >= 5 and len(set(paths)) == len(paths)
    assert yaml.safe_load((REPO / "examples" / "bad-job.yaml").read_text())  # it is valid YAML
