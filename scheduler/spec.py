"""The job spec: what a user submits, validated field by field.

A spec arrives either as YAML (`corral submit job.yaml` -> `load_spec_file`) or as a
`corral.v1.JobSpec` message (every `JobService/Submit` -> `spec_from_proto`). Both go through
the same pydantic model, so the CLI and the server give the same errors, and every problem in
a spec is reported at once as a `SpecError` whose lines read `workers: must be ≥ 1 (got -3)`.

YAML fields (defaults in brackets):
  name                 required; lowercase letters, digits and '-', 1-63 characters
  command              required; a list of strings, or one string split like a shell (shlex)
  args                 [[]] list of strings (or one string, split), appended to command
  image                [none] reserved for the Kubernetes launcher (see validate_for_local_launcher)
  workers              [1] gang size, 1..4096
  devices_per_worker   [0] 0..64 whole devices; 0 means a CPU-only worker. Or a share of one
                       device, 0.001..0.999 with at most 3 decimals (0.25: a quarter of a device,
                       shared with other work, like Alibaba's gpu_milli 250)
  accelerator          [none] {vendors: [...], models: [...], min_memory: "40GiB" | "80GB" | bytes,
                       min_tflops: 100 (dense bf16, else fp16, TFLOPS per device, from the catalog)};
                       only allowed when devices_per_worker > 0
  resources            [none] per worker: {cpu: 4 | 2.5 | "500m" (cores, at most 3 decimals,
                       ≤ 1000000), memory: "16GiB" | bytes}; both optional, 0 means none reserved
  topology             [none] {pack: island | node | rack | block | none, required: false}: pack
                       the gang into as few of these domains as possible; `required`: wait rather
                       than spread. island (each worker's devices on one intra-node fabric island)
                       needs devices_per_worker ≥ 2; required needs a pack other than none
  queue                ["default"] same rules as name
  priority             [0] -1000..1000
  env                  [{}] string -> string; names like [A-Za-z_][A-Za-z0-9_]*; the variables the
                       platform sets (RANK, MASTER_ADDR, CORRAL_*, *_VISIBLE_DEVICES ...) are refused
  checkpoint_dir       [none] absolute path
  working_dir          [none] absolute path (the CLI fills in the submitting directory)
  max_restarts         [0] 0..100 restarts after failures the job is blamed for (or that nobody
                       can blame yet); hardware failures do not spend them
  checkpoint_interval  [none] "auto" (Young/Daly from the failure rate the cluster observes for
                       this gang size and device model, and the job's measured checkpoint cost) or
                       a duration: 90, "90s", "30m", "2h" (1 s..30 d): how often the control plane
                       asks the job to checkpoint (SIGUSR1 + the SDK's channel)
  hang_timeout         [none] a duration (10 s..7 d): no progress report (agents.sdk.report_progress)
                       for this long after the first one is a hang, and the gang is restarted

Proto mapping (`spec_to_proto` / `spec_from_proto`). proto3 scalars cannot tell "unset" from
zero, so a zero or empty value in the message means "not given" and takes the YAML default:
  name "" / command [] -> missing (an error: both are required)
  workers 0 -> 1;  queue "" -> "default"
  image "", checkpoint_dir "", working_dir "" -> none
  accelerator: unset message -> none; min_memory_bytes 0 / min_tflops 0 -> no minimum
  devices_per_worker + device_milli: whole devices are devices_per_worker N, device_milli 0
    (1000 is read as whole too); a share 0.25 is devices_per_worker 1, device_milli 250
  resources.cpu <-> cpu_milli, resources.memory <-> memory_bytes; both 0 -> no resources
  topology <-> topology {pack, required}: unset message or pack "" -> none
  devices_per_worker, priority, max_restarts: 0 is their default, so nothing is lost.
  checkpoint_interval <-> checkpoint_interval_s (seconds) or checkpoint_interval_auto; hang_timeout
    <-> hang_timeout_s; 0 / false: none
Problems found only in a message (device_milli 1500; a share with devices_per_worker 2) are
reported at the message's field paths (`device_milli`, `cpu_milli`, `memory_bytes`).
Every valid spec survives spec_from_proto(spec_to_proto(spec)) == spec.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, TypeGuard

import yaml
from corral.v1 import job_pb2
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

KNOWN_VENDORS: tuple[str, ...] = (
    "nvidia", "amd", "ascend", "cambricon", "hygon",
    "moorethreads", "iluvatar", "metax", "kunlunxin", "enflame",
)  # fmt: skip
# Earlier names of a vendor, read as the current one so that stored specs stay valid.
VENDOR_ALIASES: dict[str, str] = {"huawei": "ascend", "mthreads": "moorethreads"}
# What people write instead of the vendor name, and what they mean.
_VENDOR_HINTS: dict[str, str] = {
    "npu": "ascend", "cuda": "nvidia", "rocm": "amd", "mlu": "cambricon", "dcu": "hygon",
    "moore-threads": "moorethreads", "musa": "moorethreads",
    "corex": "iluvatar", "maca": "metax", "kunlun": "kunlunxin", "xpu": "kunlunxin",
    "gcu": "enflame", "tops": "enflame",
}  # fmt: skip
RESERVED_ENV: frozenset[str] = frozenset({
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES",
})  # fmt: skip
IMAGE_RESERVED_MESSAGE = (
    "reserved for the Kubernetes launcher, which this control plane does not run yet; "
    "remove it to run `command` directly on the node"
)
MAX_WORKERS = 4096
MAX_DEVICES_PER_WORKER = 64
MAX_CPU_CORES = 1_000_000  # per worker; keeps milli-cores exact as a float of cores
WHOLE_DEVICE_MILLI = 1000  # milli-devices in one device
TOPOLOGY_PACKS: tuple[str, ...] = ("island", "node", "rack", "block", "none")
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MEMORY_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B?|B)?\s*", re.IGNORECASE)
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_CPU_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(m?)\s*")
_UNIT_POWER = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
_UINT64_MAX = 2**64 - 1


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where (`accelerator.vendors[1]`; "" for the whole
    document) and what was expected against what was got."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """A spec with problems; `problems` lists every one, `str()` gives one per line."""

    def __init__(self, problems: list[SpecProblem], source: str = "job spec") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


def _show(value: object) -> str:
    """A value as the user wrote it, in YAML-ish terms, kept short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, Mapping):
        text = "a mapping" if value else "an empty mapping"
    elif isinstance(value, list | tuple):
        text = repr(list(value)) if len(value) <= 4 else f"a list of {len(value)} items"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(message: str, at: str = "") -> PydanticCustomError:
    """An error for the field being validated, or for its sub-field `at` (for checks that a
    field validator of the enclosing model makes, e.g. `topology` against the devices)."""
    return PydanticCustomError("corral", message, {"at": at} if at else None)


# ----------------------------------------------------------------------------- field rules


def _integer(lo: int, hi: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise _fail(f"must be an integer (got {_show(value)})")
        if value < lo:
            raise _fail(f"must be ≥ {lo} (got {value})")
        if value > hi:
            raise _fail(f"must be ≤ {hi} (got {value})")
        return value

    return check


def parse_duration(value: object) -> float:
    """Seconds from `90`, `"90s"`, `"30m"`, `"2h"`, `"1d"`."""
    if _is_number(value):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.fullmatch(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    else:
        raise _fail(f"must be a duration like 90, '90s', '30m' or '2h' (got {_show(value)})")
    if not math.isfinite(seconds):
        raise _fail(f"must be a finite duration (got {_show(value)})")
    return seconds


def _duration(lo: float, hi: float, *, auto: bool = False) -> Callable[[object], float | str | None]:
    """A duration in [lo, hi] seconds; null, 0 or "none" mean none; `auto` also allows "auto"."""

    def check(value: object) -> float | str | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        if auto and isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        seconds = parse_duration(value)
        if seconds == 0:
            return None
        if not lo <= seconds <= hi:
            also = ' or "auto"' if auto else ""
            raise _fail(f"must be between {lo:g} s and {hi / 86400:g} days{also} (got {_show(value)})")
        return seconds

    return check


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _devices(value: object) -> int | float:
    """Whole devices 0..64 (an int), or a share of one device in thousandths (a float)."""
    whole = f"must be a whole number of devices or a share below 1 (got {_show(value)})"
    if not _is_number(value):
        raise _fail(whole)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return _integer(0, MAX_DEVICES_PER_WORKER)(value)
    if not math.isfinite(value) or value > 1:
        raise _fail(whole)
    if value < 0:
        raise _fail(f"must be ≥ 0 (got {_show(value)})")
    milli = round(value * WHOLE_DEVICE_MILLI)
    if not 1 <= milli < WHOLE_DEVICE_MILLI or abs(value * WHOLE_DEVICE_MILLI - milli) > 1e-6:
        raise _fail(
            "a share of a device must be between 0.001 and 0.999 with at most 3 decimals "
            f"(got {_show(value)})"
        )
    return milli / WHOLE_DEVICE_MILLI


def parse_cpu(value: object) -> int:
    """CPU cores -> milli-cores: `4` -> 4000, `2.5` -> 2500, `"500m"` -> 500, `"1.5"` -> 1500."""
    if _is_number(value):
        milli: float = value * 1000
    elif isinstance(value, str) and (m := _CPU_RE.fullmatch(value)):
        number, unit = m.groups()
        milli = float(number) * (1 if unit else 1000)
    else:
        raise _fail(f"must be a number of cores like 4, 2.5 or '500m' (got {_show(value)})")
    if not math.isfinite(milli) or milli < 0 or milli > MAX_CPU_CORES * 1000:
        raise _fail(f"must be between 0 and {MAX_CPU_CORES} cores (got {_show(value)})")
    if abs(milli - round(milli)) > 1e-6:
        raise _fail(f"must be a whole number of milli-cores: at most 3 decimals (got {_show(value)})")
    return round(milli)


def _cpu_cores(value: object) -> float | None:
    """Cores, normalised to whole milli-cores; 0 or null: none reserved."""
    milli = None if value is None else parse_cpu(value)
    return milli / 1000 if milli else None


def _tflops(value: object) -> float | None:
    """A minimum in TFLOPS; 0 or null means no minimum."""
    if value is None:
        return None
    if not _is_number(value):
        raise _fail(f"must be a number of TFLOPS per device, like 100 (got {_show(value)})")
    if not math.isfinite(value) or value < 0:
        raise _fail(f"must be a positive number of TFLOPS per device (got {_show(value)})")
    return float(value) or None


def _boolean(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"must be true or false (got {_show(value)})")
    return value


def _pack(value: object) -> str:
    if value is None:
        return "none"
    text = _string(value).strip().lower() or "none"
    if text in TOPOLOGY_PACKS:
        return text
    close = difflib.get_close_matches(text, TOPOLOGY_PACKS, n=1)
    meant = f" (did you mean '{close[0]}'?)" if close else ""
    raise _fail(f"unknown level {_show(value)}{meant}; allowed: {', '.join(TOPOLOGY_PACKS)}")


def _string(value: object) -> str:
    if not isinstance(value, str):
        hint = "; quote it in YAML" if isinstance(value, int | float | bool) else ""
        raise _fail(f"must be a string (got {_show(value)}{hint})")
    return value


def dns_name(value: object) -> str:
    text = _string(value)
    if len(text) > 63:
        raise _fail(f"must be at most 63 characters (got {len(text)})")
    if not _NAME_RE.fullmatch(text):
        suggestion = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
        hint = f"; try '{suggestion}'" if suggestion and suggestion != text else ""
        raise _fail(
            "must be lowercase letters, digits and '-', starting and ending with a letter "
            f"or digit (got {_show(text)}{hint})"
        )
    return text


def _words(value: object) -> object:
    """A command given as one string is split like a shell would; null means none."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise _fail(f"cannot split into words: {exc} (got {_show(value)})") from None
    if not isinstance(value, list | tuple):
        raise _fail(f"must be a list of strings or one string (got {_show(value)})")
    return value


def _non_empty_command(value: list[str]) -> list[str]:
    if not value:
        raise _fail("must name the program to run, e.g. ['python', 'train.py'] (got nothing)")
    return value


def vendor_name(value: object) -> str:
    text = _string(value).strip().lower()
    text = VENDOR_ALIASES.get(text, text)
    if text in KNOWN_VENDORS:
        return text
    hint = _VENDOR_HINTS.get(text)
    if hint is None:
        close = difflib.get_close_matches(text, KNOWN_VENDORS, n=1)
        hint = close[0] if close else None
    meant = f" (did you mean '{hint}'?)" if hint else ""
    raise _fail(f"unknown vendor {_show(value)}{meant}; allowed: {', '.join(KNOWN_VENDORS)}")


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _model_name(value: object) -> str:
    text = _string(value).strip()
    if not text:
        raise _fail("must not be empty")
    return text


def parse_memory(value: object) -> int:
    """`"40GiB"` -> 42949672960, `"80GB"` -> 80000000000, `1024` -> 1024 (bytes)."""
    if isinstance(value, bool):
        raise _fail(f"must be a size like '40GiB', '80GB' or a number of bytes (got {_show(value)})")
    if isinstance(value, int):
        number: float = value
    elif isinstance(value, str) and (m := _MEMORY_RE.fullmatch(value)):
        unit = (m.group(2) or "").upper()
        base = 1024 if "I" in unit else 1000
        number = float(m.group(1)) * base ** _UNIT_POWER[unit.rstrip("B").rstrip("I")]
    else:
        raise _fail(f"must be a size like '40GiB', '80GB' or a number of bytes (got {_show(value)})")
    if number < 0 or not math.isfinite(number) or number > _UINT64_MAX:
        raise _fail(f"must be between 0 and 16EiB (got {_show(value)})")
    return round(number)


def _env_key(value: object) -> str:
    key = _string(value)
    if not _ENV_KEY_RE.fullmatch(key):
        raise _fail(f"not a valid variable name: must match [A-Za-z_][A-Za-z0-9_]* (got {_show(key)})")
    if key in RESERVED_ENV or key.startswith("CORRAL_") or key.endswith("_VISIBLE_DEVICES"):
        raise _fail(
            "set by the platform for every worker (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, "
            "MASTER_ADDR, MASTER_PORT, the device visibility variable such as CUDA_VISIBLE_DEVICES, "
            "and CORRAL_*); remove it"
        )
    return key


def _none_as_empty_mapping(value: object) -> object:
    return {} if value is None else value


def _abs_path(value: object) -> str | None:
    if value is None:
        return None
    text = _string(value)
    if text == "":
        return None
    if not PurePosixPath(text).is_absolute():
        raise _fail(f"must be an absolute path (got {_show(text)})")
    return text


def _optional_string(value: object) -> str | None:
    return None if value is None or value == "" else _string(value)


Name = Annotated[str, BeforeValidator(dns_name)]
Word = Annotated[str, BeforeValidator(_string)]
Words = Annotated[list[Word], BeforeValidator(_words)]
AbsPath = Annotated[str | None, BeforeValidator(_abs_path)]


class AcceleratorSpec(BaseModel):
    """Which devices a worker may run on. Empty lists place no constraint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vendors: Annotated[
        list[Annotated[str, BeforeValidator(vendor_name)]],
        BeforeValidator(lambda v: [] if v is None else v),
        AfterValidator(_dedupe),
    ] = Field(default_factory=list)
    models: Annotated[
        list[Annotated[str, BeforeValidator(_model_name)]],
        BeforeValidator(lambda v: [] if v is None else v),
        AfterValidator(_dedupe),
    ] = Field(default_factory=list)
    # bytes; None = no minimum
    min_memory: Annotated[
        int | None, BeforeValidator(lambda v: None if v is None else (parse_memory(v) or None))
    ] = None

    # dense TFLOPS per device; None = no minimum
    min_tflops: Annotated[float | None, BeforeValidator(_tflops)] = None

    def is_empty(self) -> bool:
        return not self.vendors and not self.models and self.min_memory is None and self.min_tflops is None


def _accelerator_needs_devices(value: AcceleratorSpec | None, info: Any) -> AcceleratorSpec | None:
    if value is None or value.is_empty():
        return None
    if info.data.get("devices_per_worker") == 0:
        raise _fail(
            "only applies to workers with devices: set devices_per_worker ≥ 1, or remove "
            "accelerator for a CPU-only job (devices_per_worker is 0)"
        )
    return value


class ResourcesSpec(BaseModel):
    """What each worker reserves on its node besides devices. None: nothing reserved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # cores (whole milli-cores: 2.5, 0.001); None = none reserved
    cpu: Annotated[float | None, BeforeValidator(_cpu_cores)] = None
    # bytes
    memory: Annotated[
        int | None, BeforeValidator(lambda v: None if v is None else (parse_memory(v) or None))
    ] = None

    def is_empty(self) -> bool:
        return self.cpu is None and self.memory is None


def _empty_resources_are_none(value: ResourcesSpec | None) -> ResourcesSpec | None:
    return None if value is None or value.is_empty() else value


def _required_needs_a_pack(value: bool, info: Any) -> bool:
    if value and info.data.get("pack") == "none":
        raise _fail(
            "nothing to require with pack none: set pack (island, node, rack or block), or drop required"
        )
    return value


class TopologySpec(BaseModel):
    """Where the gang's workers go relative to each other (see TOPOLOGY_PACKS)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pack: Annotated[str, BeforeValidator(_pack)] = "none"
    required: Annotated[bool, BeforeValidator(_boolean), AfterValidator(_required_needs_a_pack)] = False

    def is_empty(self) -> bool:
        return self.pack == "none" and not self.required


def _topology_fits_devices(value: TopologySpec | None, info: Any) -> TopologySpec | None:
    if value is None or value.is_empty():
        return None
    devices = info.data.get("devices_per_worker")
    if value.pack == "island" and devices is not None and not (isinstance(devices, int) and devices >= 2):
        raise _fail(
            "island packs each worker's devices onto one interconnect island (NVLink, HCCS, ...), "
            f"which takes devices_per_worker ≥ 2 (got {_show(devices)}); use pack node or rack, "
            "or drop topology",
            at="pack",
        )
    return value


class JobSpec(BaseModel):
    """A validated job spec. Field order matters: `accelerator` and `topology` are checked
    against `devices_per_worker`, which pydantic validates first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    command: Annotated[Words, AfterValidator(_non_empty_command)]
    args: Words = Field(default_factory=list)
    image: Annotated[str | None, BeforeValidator(_optional_string)] = None
    workers: Annotated[int, BeforeValidator(_integer(1, MAX_WORKERS))] = 1
    # an int: whole devices; a float in (0, 1): a share of one device, in thousandths
    devices_per_worker: Annotated[int | float, BeforeValidator(_devices)] = 0
    accelerator: Annotated[AcceleratorSpec | None, AfterValidator(_accelerator_needs_devices)] = None
    resources: Annotated[ResourcesSpec | None, AfterValidator(_empty_resources_are_none)] = None
    topology: Annotated[TopologySpec | None, AfterValidator(_topology_fits_devices)] = None
    queue: Name = "default"
    priority: Annotated[int, BeforeValidator(_integer(-1000, 1000))] = 0
    env: Annotated[
        dict[Annotated[str, BeforeValidator(_env_key)], Word], BeforeValidator(_none_as_empty_mapping)
    ] = Field(default_factory=dict)
    checkpoint_dir: AbsPath = None
    working_dir: AbsPath = None
    max_restarts: Annotated[int, BeforeValidator(_integer(0, 100))] = 0
    # seconds, "auto", or None
    checkpoint_interval: Annotated[
        float | str | None, BeforeValidator(_duration(1, 30 * 86400, auto=True))
    ] = None
    hang_timeout: Annotated[float | None, BeforeValidator(_duration(10, 7 * 86400))] = None

    @property
    def shares_a_device(self) -> bool:
        """Each worker gets a share (below 1) of one device, shared with other work."""
        return isinstance(self.devices_per_worker, float)

    @property
    def device_milli(self) -> int:
        """Thousandths of its device each worker gets: 1000 for whole devices (and for CPU-only
        workers), 1..999 for a share."""
        if self.shares_a_device:
            return round(self.devices_per_worker * WHOLE_DEVICE_MILLI)
        return WHOLE_DEVICE_MILLI

    @property
    def whole_devices_per_worker(self) -> int:
        """Devices each worker touches: a share counts as its one device."""
        return 1 if self.shares_a_device else int(self.devices_per_worker)

    @property
    def total_devices(self) -> int:
        """Devices the gang touches: workers × devices_per_worker, a share counting as its one
        (shared) device. `total_device_milli` says how much of them it uses."""
        return self.workers * self.whole_devices_per_worker

    @property
    def total_device_milli(self) -> int:
        """Thousandths of a device the gang uses in all: 4 workers × 0.25 -> 1000."""
        return self.total_devices * self.device_milli

    @property
    def cpu_milli(self) -> int:
        """Milli-cores reserved per worker; 0: none."""
        cores = self.resources.cpu if self.resources else None
        return round(cores * 1000) if cores else 0

    @property
    def memory_bytes(self) -> int:
        """Memory reserved per worker; 0: none."""
        return (self.resources.memory or 0) if self.resources else 0

    @property
    def argv(self) -> list[str]:
        """What each worker runs: command followed by args."""
        return [*self.command, *self.args]


# ----------------------------------------------------------------------------- pydantic -> words


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


_SUB_MODELS: dict[object, type[BaseModel]] = {
    "accelerator": AcceleratorSpec,
    "resources": ResourcesSpec,
    "topology": TopologySpec,
}


def _fields_of(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = _SUB_MODELS.get(loc[0], JobSpec) if len(loc) > 1 else JobSpec
    return list(model.model_fields)


def error_message(err: ErrorDetails) -> str:
    """One sentence for a pydantic error (not an unknown field), in this module's words;
    the queue config says its errors the same way."""
    kind, got = err["type"], err.get("input")
    if kind == "corral":
        return str(err["msg"])
    if kind == "missing":
        return "required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of fields (got {_show(got)})"
    if kind in ("list_type", "iterable_type"):
        return f"must be a list (got {_show(got)})"
    if kind in ("string_type", "str_type"):
        return f"must be a string (got {_show(got)})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer (got {_show(got)})"
    # A rule nobody wrote a sentence for yet: pydantic's words, without its codes.
    text = err["msg"]
    return f"{text[:1].lower()}{text[1:]} (got {_show(got)})"


def _problem(err: ErrorDetails) -> SpecProblem:
    loc = tuple(err["loc"])
    kind = err["type"]
    at = (err.get("ctx") or {}).get("at")
    if kind == "corral" and at:
        loc = (*loc, str(at))
    if kind == "extra_forbidden":
        field = str(loc[-1])
        fields = _fields_of(loc)
        close = difflib.get_close_matches(field, fields, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return SpecProblem(_path(loc), f"unknown field{hint}; allowed: {', '.join(fields)}")
    message = error_message(err)
    return SpecProblem(_path(loc), message)


# ----------------------------------------------------------------------------- entry points


def parse_spec(data: object, source: str = "job spec", *, local_launcher: bool = False) -> JobSpec:
    """Validate already-parsed data (a mapping, as from YAML or JSON). Raises SpecError listing
    every problem. `local_launcher=True` also applies validate_for_local_launcher's rules."""
    if not isinstance(data, Mapping):
        what = "an empty document" if data is None else _show(data)
        raise SpecError([SpecProblem("", f"a job spec must be a mapping of fields (got {what})")], source)
    problems: list[SpecProblem] = []
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors(include_url=False)]
    if local_launcher and data.get("image") not in (None, ""):
        problems.append(SpecProblem("image", IMAGE_RESERVED_MESSAGE))
    if problems or spec is None:
        raise SpecError(problems, source)
    return spec


def local_launcher_problems(spec: JobSpec) -> list[SpecProblem]:
    """What stops this spec running on the local (agent) launcher, the only one so far."""
    return [SpecProblem("image", IMAGE_RESERVED_MESSAGE)] if spec.image else []


def validate_for_local_launcher(spec: JobSpec, source: str = "job spec") -> JobSpec:
    problems = local_launcher_problems(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records keys given twice instead of silently keeping the last."""

    duplicates: list[SpecProblem]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in seen:
                self.duplicates.append(
                    SpecProblem(key, f"given twice (lines {seen[key]} and {line}); keep one")
                )
            elif isinstance(key, str):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_spec_yaml(text: str, source: str = "job spec", *, local_launcher: bool = False) -> JobSpec:
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents.append(loader.get_data())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{what} ({context})" if context else what
        raise SpecError([SpecProblem("", f"YAML syntax error at {where}{detail}")], source) from None
    finally:
        loader.dispose()
    if len(documents) > 1:
        raise SpecError(
            [SpecProblem("", f"expected one YAML document (got {len(documents)}, separated by '---')")],
            source,
        )
    data = documents[0] if documents else None
    try:
        spec = parse_spec(data, source, local_launcher=local_launcher)
    except SpecError as exc:
        raise SpecError([*loader.duplicates, *exc.problems], source) from None
    if loader.duplicates:
        raise SpecError(loader.duplicates, source)
    return spec


def load_spec_file(path: str | Path, *, local_launcher: bool = False) -> JobSpec:
    """Read and validate a YAML job spec file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([SpecProblem("", f"cannot read {path}: {exc.strerror or exc}")], str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError([SpecProblem("", f"not UTF-8 text: {exc.reason}")], str(path)) from None
    return parse_spec_yaml(text, str(path), local_launcher=local_launcher)


def spec_to_proto(spec: JobSpec) -> Any:
    """JobSpec -> corral.v1.JobSpec (none -> "" / unset; see the module docstring)."""
    msg = job_pb2.JobSpec(
        name=spec.name,
        command=spec.command,
        args=spec.args,
        image=spec.image or "",
        workers=spec.workers,
        devices_per_worker=spec.whole_devices_per_worker,
        device_milli=spec.device_milli if spec.shares_a_device else 0,
        cpu_milli=spec.cpu_milli,
        memory_bytes=spec.memory_bytes,
        queue=spec.queue,
        priority=spec.priority,
        env=spec.env,
        checkpoint_dir=spec.checkpoint_dir or "",
        max_restarts=spec.max_restarts,
        working_dir=spec.working_dir or "",
        checkpoint_interval_auto=spec.checkpoint_interval == "auto",
        checkpoint_interval_s=spec.checkpoint_interval
        if isinstance(spec.checkpoint_interval, float)
        else 0.0,
        hang_timeout_s=spec.hang_timeout or 0.0,
    )
    if spec.accelerator is not None:
        acc = spec.accelerator
        msg.accelerator.vendors.extend(acc.vendors)
        msg.accelerator.models.extend(acc.models)
        msg.accelerator.min_memory_bytes = acc.min_memory or 0
        msg.accelerator.min_tflops = acc.min_tflops or 0.0
    if spec.topology is not None:
        msg.topology.pack = spec.topology.pack
        msg.topology.required = spec.topology.required
    return msg


# Where a problem found in the YAML-shaped data sits in the message, when the names differ.
_PROTO_PATHS = {
    "resources.cpu": "cpu_milli",
    "resources.memory": "memory_bytes",
    "checkpoint_interval": "checkpoint_interval_s",
    "hang_timeout": "hang_timeout_s",
}


def _devices_from_proto(msg: Any, problems: list[SpecProblem]) -> object:
    milli, devices = msg.device_milli, msg.devices_per_worker
    if milli in (0, WHOLE_DEVICE_MILLI):
        return devices
    if milli > WHOLE_DEVICE_MILLI:
        problems.append(
            SpecProblem(
                "device_milli",
                f"must be 0 or {WHOLE_DEVICE_MILLI} for whole devices, or 1..{WHOLE_DEVICE_MILLI - 1} "
                f"for a share of one device (got {milli})",
            )
        )
    elif devices != 1:
        problems.append(
            SpecProblem(
                "device_milli",
                f"a share of a device ({milli}) is of one device: needs devices_per_worker 1 (got {devices})",
            )
        )
    else:
        return milli / WHOLE_DEVICE_MILLI
    return devices


def spec_from_proto(msg: Any, source: str = "JobSpec message", *, local_launcher: bool = False) -> JobSpec:
    """corral.v1.JobSpec -> validated JobSpec; zero/empty fields mean "not given"."""
    proto_problems: list[SpecProblem] = []
    data: dict[str, object] = {
        "devices_per_worker": _devices_from_proto(msg, proto_problems),
        "priority": msg.priority,
        "max_restarts": msg.max_restarts,
        "args": list(msg.args),
        "env": dict(msg.env),
    }
    for field in ("name", "image", "queue", "checkpoint_dir", "working_dir"):
        if getattr(msg, field):
            data[field] = getattr(msg, field)
    if msg.command:
        data["command"] = list(msg.command)
    if msg.workers:
        data["workers"] = msg.workers
    if msg.HasField("accelerator"):
        acc = msg.accelerator
        data["accelerator"] = {
            "vendors": list(acc.vendors),
            "models": list(acc.models),
            "min_memory": acc.min_memory_bytes or None,
            "min_tflops": acc.min_tflops or None,
        }
    if msg.cpu_milli or msg.memory_bytes:
        data["resources"] = {"cpu": f"{msg.cpu_milli}m", "memory": msg.memory_bytes}
    if msg.HasField("topology"):
        data["topology"] = {"pack": msg.topology.pack, "required": msg.topology.required}
    if msg.checkpoint_interval_auto and msg.checkpoint_interval_s:
        proto_problems.append(
            SpecProblem(
                "checkpoint_interval_s",
                f"set either checkpoint_interval_s ({msg.checkpoint_interval_s:g}) or "
                "checkpoint_interval_auto, not both",
            )
        )
    elif msg.checkpoint_interval_auto or msg.checkpoint_interval_s:
        data["checkpoint_interval"] = "auto" if msg.checkpoint_interval_auto else msg.checkpoint_interval_s
    if msg.hang_timeout_s:
        data["hang_timeout"] = msg.hang_timeout_s
    try:
        spec = parse_spec(data, source, local_launcher=local_launcher)
    except SpecError as exc:
        found = [SpecProblem(_PROTO_PATHS.get(p.path, p.path), p.message) for p in exc.problems]
        raise SpecError([*found, *proto_problems], source) from None
    if proto_problems:
        raise SpecError(proto_problems, source)
    return spec
