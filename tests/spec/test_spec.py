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
    TOPOLOGY_PACKS,
    AcceleratorSpec,
    JobSpec,
    ResourcesSpec,
    SpecError,
    SpecProblem,
    TopologySpec,
    load_spec_file,
    parse_cpu,
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
    assert (spec.resources, spec.topology, spec.device_milli, spec.cpu_milli, spec.memory_bytes) == (
        None,
        None,
        1000,
        0,
        0,
    )


def test_full_spec() -> None:
    spec = parse_spec_yaml(
        """
name: llama-7b-ft
command: python -m torch.distributed.run 'my script.py'
args: [--lr, "0.1"]
workers: 4
devices_per_worker: 8
accelerator:
  vendors: [NVIDIA, nvidia, ascend]
  models: [H100-SXM5-80GB, Ascend-910B]
  min_memory: 40GiB
  min_tflops: 400
resources: {cpu: 16, memory: 256GiB}
topology: {pack: island, required: true}
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
        vendors=["nvidia", "ascend"],
        models=["H100-SXM5-80GB", "Ascend-910B"],
        min_memory=40 * 2**30,
        min_tflops=400.0,
    )
    assert spec.resources == ResourcesSpec(cpu=16, memory=256 * 2**30)
    assert spec.topology == TopologySpec(pack="island", required=True)
    assert (spec.cpu_milli, spec.memory_bytes) == (16000, 256 * 2**30)
    assert (spec.total_devices, spec.device_milli, spec.total_device_milli) == (32, 1000, 32000)
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


@pytest.mark.parametrize(
    ("given", "expected"),
    [(4, 4000), (2.5, 2500), (0.001, 1), ("500m", 500), ("2", 2000), ("1.5", 1500), (" 250m ", 250),
     (0, 0), (10**6, 10**9), ("999999.999", 999999999)],
)  # fmt: skip
def test_cpu_amounts(given: object, expected: int) -> None:
    assert parse_cpu(given) == expected


@pytest.mark.parametrize(
    ("given", "stored", "milli", "whole", "total"),
    [
        (0, 0, 1000, 0, 0),
        (1, 1, 1000, 1, 3),
        (8.0, 8, 1000, 8, 24),
        (64, 64, 1000, 64, 192),
        (0.25, 0.25, 250, 1, 3),
        (0.001, 0.001, 1, 1, 3),
        (0.999, 0.999, 999, 1, 3),
        (0.5, 0.5, 500, 1, 3),
    ],
)
def test_devices_per_worker_whole_or_a_share(
    given: float, stored: float, milli: int, whole: int, total: int
) -> None:
    spec = parse_spec(base(workers=3, devices_per_worker=given))
    assert spec.devices_per_worker == stored
    assert isinstance(spec.devices_per_worker, float) == spec.shares_a_device == (milli < 1000)
    assert (spec.device_milli, spec.whole_devices_per_worker, spec.total_devices) == (milli, whole, total)
    assert spec.total_device_milli == total * milli


def test_quarter_devices_from_yaml() -> None:
    spec = parse_spec_yaml("name: a\ncommand: x\nworkers: 4\ndevices_per_worker: 0.25\n")
    assert (spec.devices_per_worker, spec.device_milli, spec.total_devices, spec.total_device_milli) == (
        0.25,
        250,
        4,
        1000,
    )


@pytest.mark.parametrize("pack", TOPOLOGY_PACKS)
def test_every_topology_pack(pack: str) -> None:
    spec = parse_spec(base(devices_per_worker=2, topology={"pack": pack.upper()}))
    if pack == "none":
        assert spec.topology is None
    else:
        assert spec.topology == TopologySpec(pack=pack)


def test_empty_resources_and_topology_are_none() -> None:
    assert parse_spec(base(resources={})).resources is None
    assert parse_spec(base(resources={"cpu": 0, "memory": "0GiB"})).resources is None
    assert parse_spec(base(resources=None, topology=None)).topology is None
    assert parse_spec(base(topology={"pack": "none", "required": False})).topology is None
    assert parse_spec(base(topology={"pack": ""})).topology is None
    spec = parse_spec(base(resources={"memory": "512Mi"}, topology={"pack": "node", "required": True}))
    assert (spec.cpu_milli, spec.memory_bytes) == (0, 512 * 2**20)
    assert spec.topology == TopologySpec(pack="node", required=True)  # CPU-only gangs may pack too


def test_min_tflops_zero_is_no_minimum() -> None:
    assert parse_spec(base(devices_per_worker=1, accelerator={"min_tflops": 0})).accelerator is None
    spec = parse_spec(base(devices_per_worker=1, accelerator={"min_tflops": 98.5}))
    assert spec.accelerator == AcceleratorSpec(min_tflops=98.5)


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


NOT_WHOLE = "must be a whole number of devices or a share below 1"
BAD_SHARE = "a share of a device must be between 0.001 and 0.999 with at most 3 decimals"
PACKS = "allowed: island, node, rack, block, none"
POSITIVE_TFLOPS = "must be a positive number of TFLOPS per device"
ISLAND = {"pack": "island"}


def on_device(**accelerator: object) -> dict[str, object]:
    return {"devices_per_worker": 1, "accelerator": accelerator}


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
        ({"devices_per_worker": -0.5}, "devices_per_worker", "must be ≥ 0 (got -0.5)"),
        ({"devices_per_worker": 64.5}, "devices_per_worker", f"{NOT_WHOLE} (got 64.5)"),
        ({"devices_per_worker": 65.0}, "devices_per_worker", "must be ≤ 64 (got 65)"),
        ({"devices_per_worker": 1.5}, "devices_per_worker", f"{NOT_WHOLE} (got 1.5)"),
        ({"devices_per_worker": "0.5"}, "devices_per_worker", f"{NOT_WHOLE} (got '0.5')"),
        ({"devices_per_worker": True}, "devices_per_worker", f"{NOT_WHOLE} (got true)"),
        ({"devices_per_worker": float("nan")}, "devices_per_worker", f"{NOT_WHOLE} (got nan)"),
        ({"devices_per_worker": 0.0001}, "devices_per_worker", f"{BAD_SHARE} (got 0.0001)"),
        ({"devices_per_worker": 0.2505}, "devices_per_worker", f"{BAD_SHARE} (got 0.2505)"),
        ({"devices_per_worker": 0.9999}, "devices_per_worker", f"{BAD_SHARE} (got 0.9999)"),
        ({"resources": {"cpu": "lots"}}, "resources.cpu", "cores like 4, 2.5 or '500m' (got 'lots')"),
        ({"resources": {"cpu": -1}}, "resources.cpu", "must be between 0 and 1000000 cores (got -1)"),
        ({"resources": {"cpu": 1000001}}, "resources.cpu", "between 0 and 1000000 cores (got 1000001)"),
        ({"resources": {"cpu": 0.0005}}, "resources.cpu", "whole number of milli-cores: at most 3 decimals"),
        ({"resources": {"cpu": "1.5m"}}, "resources.cpu", "at most 3 decimals (got '1.5m')"),
        ({"resources": {"cpu": True}}, "resources.cpu", "must be a number of cores"),
        ({"resources": {"memory": "lots"}}, "resources.memory", "must be a size like '40GiB'"),
        ({"resources": {"gpus": 1}}, "resources.gpus", "unknown field; allowed: cpu, memory"),
        ({"resources": {"mem": "1GiB"}}, "resources.mem", "unknown field (did you mean 'memory'?)"),
        ({"resources": 4}, "resources", "must be a mapping of fields (got 4)"),
        ({"topology": {"pack": "racks"}}, "topology.pack", f"level 'racks' (did you mean 'rack'?); {PACKS}"),
        ({"topology": {"pack": "datacenter"}}, "topology.pack", f"unknown level 'datacenter'; {PACKS}"),
        ({"topology": {"pack": 3}}, "topology.pack", "must be a string (got 3; quote it in YAML)"),
        ({"topology": {"required": True}}, "topology.required", "nothing to require with pack none"),
        ({"topology": {"pack": "none", "required": True}}, "topology.required", "nothing to require"),
        ({"topology": {"pack": "node", "required": "yes"}}, "topology.required", "true or false (got 'yes')"),
        ({"topology": {"pack": "node", "require": True}}, "topology.require", "did you mean 'required'?"),
        ({"topology": "node"}, "topology", "must be a mapping of fields (got 'node')"),
        ({"topology": ISLAND}, "topology.pack", "takes devices_per_worker ≥ 2 (got 0)"),
        ({"topology": ISLAND, "devices_per_worker": 1}, "topology.pack", "devices_per_worker ≥ 2 (got 1)"),
        ({"topology": ISLAND, "devices_per_worker": 0.5}, "topology.pack", "≥ 2 (got 0.5)"),
        (on_device(min_tflops=-1), "accelerator.min_tflops", f"{POSITIVE_TFLOPS} (got -1)"),
        (on_device(min_tflops=float("inf")), "accelerator.min_tflops", f"{POSITIVE_TFLOPS} (got inf)"),
        (on_device(min_tflops="100"), "accelerator.min_tflops", "TFLOPS per device, like 100 (got '100')"),
        ({"accelerator": {"min_tflops": 100}}, "accelerator", "only applies to workers with devices"),
        (on_device(min_tflop=100), "accelerator.min_tflop", "unknown field (did you mean 'min_tflops'?)"),
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
)  # fmt: skip
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
    found = problems(base(devices_per_worker=1, accelerator={"vendors": ["nvidia", "npu", "intel"]}))
    assert set(found) == {"accelerator.vendors[1]", "accelerator.vendors[2]"}
    assert "did you mean 'ascend'?" in found["accelerator.vendors[1]"]
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
        "resources": {"cpu": "many", "memory": -1},
        "topology": {"pack": "nodes", "required": "always"},
    }
    found = problems(bad)
    assert set(found) == {
        "name", "command", "workers", "devices_per_worker", "accelerator.vendors[1]",
        "accelerator.min_memory", "accelerator.colour", "priority", "env.RANK", "env.bad-key",
        "checkpoint_dir", "max_restarts", "gpus", "resources.cpu", "resources.memory",
        "topology.pack", "topology.required",
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
        accelerator={"vendors": ["ascend"], "models": ["Ascend-910B"], "min_memory": "64GB"},
        queue="q1",
        priority=7,
        env={"A": "1", "B": ""},
        checkpoint_dir="/ckpt",
        working_dir="/work",
        max_restarts=3,
    ),
    base(devices_per_worker=1, accelerator={"models": ["H100-SXM5-80GB"]}),
    base(workers=8, devices_per_worker=0.25, accelerator={"vendors": ["nvidia"], "min_tflops": 100}),
    base(devices_per_worker=0.001),
    base(devices_per_worker=0.999),
    base(devices_per_worker=0.1, topology={"pack": "node", "required": True}),
    base(devices_per_worker=8, topology={"pack": "island", "required": True}),
    base(workers=16, devices_per_worker=8, topology={"pack": "rack"}),
    base(workers=2, topology={"pack": "block", "required": True}),
    base(resources={"cpu": "500m"}),
    base(resources={"memory": "16GiB"}),
    base(resources={"cpu": 2.5, "memory": 17179869184}, devices_per_worker=0.5),
    base(resources={"cpu": "999999999m", "memory": 2**64 - 1}),
    base(resources={"cpu": 0.001}),
    base(devices_per_worker=1, accelerator={"min_tflops": 0.1, "min_memory": "1B"}),
]


@pytest.mark.parametrize("data", ROUND_TRIP)
def test_round_trip(data: dict[str, object]) -> None:
    spec = parse_spec(data)
    msg = spec_to_proto(spec)
    wire = job_pb2.JobSpec.FromString(msg.SerializeToString())
    assert spec_from_proto(wire) == spec
    assert spec_to_proto(spec_from_proto(wire)) == msg


@pytest.mark.parametrize("data", ROUND_TRIP)
def test_validating_a_dump_again_changes_nothing(data: dict[str, object]) -> None:
    spec = parse_spec(data)
    assert parse_spec(spec.model_dump()) == spec


def test_proto_zero_values_mean_defaults() -> None:
    spec = spec_from_proto(job_pb2.JobSpec(name="a", command=["x"]))
    assert spec == JobSpec(name="a", command=["x"])
    assert (spec.workers, spec.queue) == (1, "default")
    assert not spec_to_proto(spec).HasField("accelerator")


def test_proto_of_a_share_and_resources() -> None:
    spec = parse_spec(base(workers=4, devices_per_worker=0.25, resources={"cpu": "1500m", "memory": "1GiB"}))
    msg = spec_to_proto(spec)
    assert (msg.workers, msg.devices_per_worker, msg.device_milli) == (4, 1, 250)
    assert (msg.cpu_milli, msg.memory_bytes) == (1500, 2**30)
    assert not msg.HasField("topology")
    whole = spec_to_proto(parse_spec(base(devices_per_worker=2, topology={"pack": "island"})))
    assert (whole.devices_per_worker, whole.device_milli) == (2, 0)
    assert (whole.topology.pack, whole.topology.required) == ("island", False)


def test_proto_whole_device_milli_reads_as_whole_devices() -> None:
    spec = spec_from_proto(job_pb2.JobSpec(name="a", command=["x"], devices_per_worker=4, device_milli=1000))
    assert (spec.devices_per_worker, spec.device_milli) == (4, 1000)
    assert spec_to_proto(spec).device_milli == 0


def test_proto_empty_topology_is_none() -> None:
    msg = job_pb2.JobSpec(name="a", command=["x"], topology=job_pb2.TopologyPreference())
    assert spec_from_proto(msg).topology is None
    msg.topology.pack = "none"
    assert spec_from_proto(msg).topology is None


def _proto(**fields: Any) -> Any:
    topology = fields.pop("topology", None)
    accelerator = fields.pop("accelerator", None)
    msg = job_pb2.JobSpec(name="a", command=["x"], **fields)
    if topology is not None:
        msg.topology.CopyFrom(job_pb2.TopologyPreference(**topology))
    if accelerator is not None:
        msg.accelerator.CopyFrom(job_pb2.AcceleratorConstraint(**accelerator))
    return msg


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"devices_per_worker": 1, "device_milli": 1500}, "device_milli",
         "must be 0 or 1000 for whole devices, or 1..999 for a share of one device (got 1500)"),
        ({"devices_per_worker": 2, "device_milli": 250}, "device_milli",
         "a share of a device (250) is of one device: needs devices_per_worker 1 (got 2)"),
        ({"devices_per_worker": 0, "device_milli": 250}, "device_milli",
         "needs devices_per_worker 1 (got 0)"),
        ({"devices_per_worker": 1, "accelerator": {"min_tflops": -5.0}}, "accelerator.min_tflops",
         "must be a positive number of TFLOPS per device (got -5.0)"),
        ({"devices_per_worker": 1, "accelerator": {"min_tflops": float("nan")}}, "accelerator.min_tflops",
         "must be a positive number of TFLOPS per device (got nan)"),
        ({"topology": {"pack": "racks"}}, "topology.pack", "unknown level 'racks' (did you mean 'rack'?)"),
        ({"topology": {"pack": "none", "required": True}}, "topology.required", "nothing to require"),
        ({"devices_per_worker": 1, "device_milli": 500, "topology": {"pack": "island"}}, "topology.pack",
         "takes devices_per_worker ≥ 2 (got 0.5)"),
        ({"devices_per_worker": 65}, "devices_per_worker", "must be ≤ 64 (got 65)"),
        ({"cpu_milli": 10**9 + 1}, "cpu_milli", "must be between 0 and 1000000 cores (got '1000000001m')"),
    ],
)  # fmt: skip
def test_bad_proto_field(fields: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_proto(_proto(**fields))
    found = {p.path: p.message for p in info.value.problems}
    assert list(found) == [path]
    assert message in found[path]


def test_bad_proto_lists_message_and_spec_problems_together() -> None:
    msg = _proto(workers=5000, devices_per_worker=3, device_milli=250, topology={"pack": "racks"})
    with pytest.raises(SpecError) as info:
        spec_from_proto(msg)
    assert [p.path for p in info.value.problems] == ["workers", "topology.pack", "device_milli"]


def test_proto_gets_the_same_errors() -> None:
    msg = job_pb2.JobSpec(
        command=["python"], workers=5000, devices_per_worker=0, env={"RANK": "1"}, checkpoint_dir="rel"
    )
    msg.accelerator.vendors.append("npu")
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


def test_earlier_vendor_names_still_read_as_the_current_ones() -> None:
    spec = parse_spec(base(devices_per_worker=1, accelerator={"vendors": ["huawei", "mthreads"]}))
    assert list(spec.accelerator.vendors) == ["ascend", "moorethreads"]
