"""The control plane's /metrics: live state read at scrape time.

`render_metrics(cp)` is called by the HTTP app (scheduler/web) on the control plane's own
event loop, so it reads `cp` without locks; it must stay fast (10,000 nodes × 8 devices in
well under a second; benchmarks/dashboard.py measures it): plain loops over memory, one
store query (the new rows of the `failures` table), and the text written by exposition.py.

Labels are bounded: node names (one series per node, on its current state), queue names, device
vendor/model, and the fixed classes of classes.py and reliability/{interruptions,gpu_time,report}.py. Per-job
series exist only for running jobs. Per-device series come from each agent's own exporter
(agents/metrics.py), except devices whose health is not HEALTHY: few, and the control
plane's HealthBook is the authority on health. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from scheduler.jobstate import JobState
from scheduler.metrics.classes import NODE_STATES, node_state, pending_reason
from scheduler.metrics.exposition import Family, as_metrics, encode
from scheduler.metrics.interruptions import InterruptionCounters
from scheduler.metrics.runtime import ControlPlaneStats
from scheduler.model import NodeRecord
from scheduler.reliability.gpu_time import demand_of
from scheduler.reliability.health_state import Health

if TYPE_CHECKING:
    from scheduler.server.controlplane import ControlPlane
    from scheduler.server.nodes import NodeRuntime

_HEALTH_LABEL = {h: h.value.lower() for h in Health}
_RUNNING = (JobState.RUNNING, JobState.CHECKPOINTING)
_WAITING = (JobState.PENDING, JobState.RECOVERING)


@dataclass
class _NodeText:
    """A node's series text, kept between scrapes (10,000 nodes: formatting is the cost)."""

    record: NodeRecord
    age_prefix: str
    info_line: str
    models: tuple[tuple[tuple[str, str], int], ...]  # devices per (vendor, model)
    state: str = ""
    state_line: str = ""


@dataclass
class _FleetText:
    """The per-node blocks of the last scrape, reused while nothing they show has changed:
    which nodes there are and their records (info, device counts), and their states."""

    nodes: int = -1  # how many there were; a node that registers (again) makes new text
    info: str = ""
    models: Counter[tuple[str, str]] = field(default_factory=Counter)  # devices per (vendor, model)
    states: tuple[str, ...] = ()
    state_block: str = ""


def _version() -> str:
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class ControlPlaneCollector(Collector):
    """Every control-plane family; `families()` for the fast writer, `collect()` for a
    prometheus_client registry."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.version = _version()
        self.counters = InterruptionCounters(started_at=cp.started_at)
        self._texts: dict[str, _NodeText] = {}
        self._fleet = _FleetText()
        self._device_lines: dict[tuple[str, int, str], str] = {}

    def collect(self) -> Iterator[Metric]:
        yield from as_metrics(self.families())

    def families(self) -> list[Family | Metric]:
        cp = self.cp
        now = cp.clock()
        out: list[Family | Metric] = [*self._build(), *self._nodes(now)]
        out += [*self._jobs(now), *self._queues(), *self._reliability(now), *self._power(now)]
        stats = getattr(cp, "stats", None)
        if isinstance(stats, ControlPlaneStats):
            out += stats.collect()
        return out

    # --- the process ----------------------------------------------------------------------

    def _build(self) -> list[Family]:
        info = Family("corral_build_info", "gauge", "The control plane's version (1).", ("version",))
        info.add([self.version], 1)
        start = Family(
            "corral_controlplane_start_time_seconds", "gauge", "When this control plane started (Unix time)."
        )
        start.add([], self.cp.started_at)
        return [info, start]

    # --- nodes ----------------------------------------------------------------------------

    def _nodes(self, now: float) -> list[Family]:
        """Every per-node family and the device counts, in one pass over the nodes: at
        10,000 nodes each pass costs more in reaching the nodes' objects than in the work."""
        cp = self.cp
        grace = cp.liveness.grace_s
        book = cp.health
        marked = {node for node, _ in book.devices}
        marked.update(book.nodes)
        states = Family(
            "corral_node_state",
            "gauge",
            "The node's state: one series per node, on its current state (value 1): lost (silent "
            "past the grace period), disconnected, quarantined (lemon), unhealthy, draining, "
            "cordoned, suspect, ready.",
            ("node", "state"),
        )
        ages = Family(
            "corral_agent_heartbeat_age_seconds",
            "gauge",
            "Seconds since the control plane last heard from the node's agent.",
            ("node",),
        )
        info = Family(
            "corral_node_info",
            "gauge",
            "A node the control plane knows (1), with its rack label, backend and agent version.",
            ("node", "rack", "backend", "agent_version", "simulated"),
        )
        counts: Counter[str] = Counter()
        connected = 0
        remade = len(cp.nodes) != self._fleet.nodes  # nodes left
        node_states: list[str] = []
        state_lines: list[str] = []
        age_lines: list[str] = []
        checked: list[NodeRuntime] = []
        for rt in cp.nodes:
            r = rt.record
            text = self._texts.get(r.name)
            if text is None or text.record is not r:
                text = self._text_of(r, ages, info)
                remade = True
            age = now - rt.last_heard
            age = age if age > 0.0 else 0.0
            record = book.nodes.get(r.name)
            state = node_state(
                connected=rt.session is not None,
                lost=rt.session is None and age > grace,
                health=record.state.value if record is not None else "HEALTHY",
                draining=r.draining,
                cordoned=r.cordoned,
            )
            if state != text.state:
                text.state = state
                text.state_line = states.line([r.name, state], 1)
            counts[state] += 1
            connected += rt.session is not None
            node_states.append(state)
            state_lines.append(text.state_line)
            # Milliseconds are plenty for a heartbeat, and keep the text short.
            age_lines.append(f"{text.age_prefix}{age:.3f}\n")
            if r.name in marked:
                checked.append(rt)
        fleet = self._fleet
        if remade:
            fleet.nodes = len(cp.nodes)
            fleet.info = "".join(self._texts[rt.record.name].info_line for rt in cp.nodes)
            fleet.models = Counter()
            for rt in cp.nodes:
                for kind, n in self._texts[rt.record.name].models:
                    fleet.models[kind] += n
            fleet.states = ()
            if len(self._texts) > 2 * len(cp.nodes):  # nodes were forgotten: drop their text
                live = {rt.record.name for rt in cp.nodes}
                self._texts = {name: t for name, t in self._texts.items() if name in live}
        if tuple(node_states) != fleet.states:
            fleet.states = tuple(node_states)
            fleet.state_block = "".join(state_lines)
        states.add_text(fleet.state_block)
        ages.add_text("".join(age_lines))
        info.add_text(fleet.info)
        by_state = Family("corral_nodes", "gauge", "Nodes by state (see corral_node_state).", ("state",))
        for s in NODE_STATES:
            by_state.add([s], counts[s])
        streams = Family(
            "corral_agent_streams", "gauge", "Agents holding a registered stream to the control plane."
        )
        streams.add([], connected)
        lemons = Family(
            "corral_lemon_nodes", "gauge", "Nodes quarantined as lemons (repeated hardware failures)."
        )
        lemons.add([], len(cp.lemons))
        spares = Family("corral_hot_spares", "gauge", "Idle nodes held back as hot spares.")
        spares.add([], len(cp.spares))
        return [states, ages, info, by_state, streams, lemons, spares, *self._devices(checked)]

    def _text_of(self, r: NodeRecord, ages: Family, info: Family) -> _NodeText:
        """The node's series text kept between scrapes; remade when the agent registers again
        (a new record: labels, backend, version or devices may have changed)."""
        simulated = "true" if r.simulated else "false"
        text = self._texts[r.name] = _NodeText(
            record=r,
            age_prefix=ages.prefix([r.name]),
            info_line=info.line([r.name, r.labels.get("rack", ""), r.backend, r.agent_version, simulated], 1),
            models=tuple(Counter((d.vendor, d.model) for d in r.devices).items()),
        )
        return text

    # --- devices --------------------------------------------------------------------------

    def _devices(self, checked: list[NodeRuntime]) -> list[Family]:
        """Device counts by model and health, and a series per device that is not healthy.
        Only `checked` nodes (those the HealthBook has a record for, of the node or one of its
        devices) are walked device by device: every other device is healthy, counted from
        the fleet's totals per model."""
        book = self.cp.health
        marked_devices = book.devices
        per_model: Counter[tuple[str, str, str]] = Counter()
        for (vendor, model), n in self._fleet.models.items():
            per_model[(vendor, model, "healthy")] += n
        unhealthy = Family(
            "corral_device_health",
            "gauge",
            "Devices whose health is not HEALTHY (1), with that state: suspect, unhealthy or "
            "quarantined. A node's state applies to its devices. Healthy devices have no series.",
            ("node", "device", "vendor", "model", "state"),
        )
        # Series text of the devices that were not healthy at the last scrape, by (node,
        # device, state): most still are. Only this scrape's are kept for the next.
        kept = self._device_lines
        lines: dict[tuple[str, int, str], str] = {}
        for rt in sorted(checked, key=lambda rt: rt.record.name):
            r = rt.record
            name = r.name
            node_record = book.nodes.get(name)
            node_bad = node_record is not None and node_record.state is not Health.HEALTHY
            for d in r.devices:
                if node_bad:
                    state = book.device_health(name, d.index)
                else:
                    own = marked_devices.get((name, d.index))
                    state = own.state if own is not None else Health.HEALTHY
                label = _HEALTH_LABEL[state]
                if label != "healthy":
                    per_model[(d.vendor, d.model, "healthy")] -= 1
                    per_model[(d.vendor, d.model, label)] += 1
                    key = (name, d.index, label)
                    line = kept.get(key)
                    if line is None:
                        line = unhealthy.line([name, str(d.index), d.vendor, d.model, label], 1)
                    lines[key] = line
                    unhealthy.add_text(line)
        self._device_lines = lines
        devices = Family(
            "corral_devices",
            "gauge",
            "Devices the control plane knows, by vendor, model and health.",
            ("vendor", "model", "health"),
        )
        for (vendor, model, label), n in sorted(per_model.items()):
            devices.add([vendor, model, label], n)
        return [unhealthy, devices]

    # --- jobs and the scheduler ---------------------------------------------------------

    def _jobs(self, now: float) -> list[Family]:
        cp = self.cp
        checkpoints = cp.ft.checkpoints
        by_state: Counter[tuple[str, str]] = Counter()
        pending: Counter[tuple[str, str]] = Counter()
        pending_devices: dict[str, float] = {}
        oldest: dict[str, float] = {}
        age = Family(
            "corral_job_checkpoint_age_seconds",
            "gauge",
            "Running jobs only: seconds since the attempt's last complete checkpoint (or since it "
            "started running, before its first): the work a failure now would lose.",
            ("job_id", "queue"),
        )
        for job in cp.jobs.values():
            state = job.state
            if state.terminal:
                continue
            by_state[(job.queue, state.value.lower())] += 1
            if state in _WAITING:
                reason = "recovering" if state is JobState.RECOVERING else pending_reason(job.reason)
                pending[(job.queue, reason)] += 1
                pending_devices[job.queue] = pending_devices.get(job.queue, 0.0) + demand_of(job.spec).devices
                oldest[job.queue] = min(oldest.get(job.queue, now), job.created_at)
            elif state in _RUNNING and job.attempts:
                since = checkpoints.last_checkpoint_at(job, job.attempts[-1])
                age.add([job.id, job.queue], max(0.0, now - since))
        jobs = Family(
            "corral_jobs", "gauge", "Jobs not yet finished, by queue and state.", ("queue", "state")
        )
        for (queue, state_label), n in sorted(by_state.items()):
            jobs.add([queue, state_label], n)
        gangs = Family(
            "corral_scheduler_pending_gangs",
            "gauge",
            "Gangs waiting to be placed, by queue and why (a bounded class of the job's reason).",
            ("queue", "reason"),
        )
        for (queue, reason), n in sorted(pending.items()):
            gangs.add([queue, reason], n)
        devices = Family(
            "corral_scheduler_pending_devices", "gauge", "Devices the waiting gangs ask for.", ("queue",)
        )
        wait = Family(
            "corral_scheduler_oldest_pending_seconds",
            "gauge",
            "Seconds since the longest-waiting gang of the queue was submitted.",
            ("queue",),
        )
        for queue in sorted(pending_devices):
            devices.add([queue], pending_devices[queue])
            wait.add([queue], max(0.0, now - oldest[queue]))
        return [age, jobs, gangs, devices, wait]

    def _queues(self) -> list[Family]:
        cp = self.cp
        used: dict[tuple[str, str, str], float] = {}
        # Unfinished jobs' live attempts, not cp.workers: that holds every worker ever placed.
        for job in cp.jobs.values():
            if job.state.terminal:
                continue
            fraction = 0.0
            for attempt in job.attempts:
                if attempt.outcome:
                    continue
                for w in attempt.workers:
                    rt = cp.nodes.get(w.node_name) if w.phase.holds_devices else None
                    if rt is None:
                        continue
                    if not fraction:
                        fraction = demand_of(job.spec).share
                    # A worker's devices are one node's: count them by that node's models.
                    for (vendor, model), held in self._held_by_model(rt, w.device_indices):
                        key = (job.queue, vendor, model)
                        used[key] = used.get(key, 0.0) + fraction * held
        family = Family(
            "corral_queue_devices",
            "gauge",
            "Devices per queue: kind=used (held by its running gangs, by device model) and "
            "kind=quota (each quota entry's nominal; model \"\" covers all the vendor's models).",
            ("queue", "vendor", "model", "kind"),
        )
        for (queue, vendor, model), n in sorted(used.items()):
            family.add([queue, vendor, model, "used"], n)
        weights = Family(
            "corral_queue_weight",
            "gauge",
            'Each configured queue\'s fair-share weight, with its cohort ("" for none).',
            ("queue", "cohort"),
        )
        for name in cp.queues.names:
            spec = cp.queues.get(name)
            if spec is None:
                continue
            weights.add([name, spec.cohort or ""], spec.weight)
            for quota in spec.quotas:
                family.add([name, quota.vendor, quota.model or "", "quota"], quota.nominal)
        return [family, weights]

    def _held_by_model(self, rt: NodeRuntime, indices: list[int]) -> list[tuple[tuple[str, str], int]]:
        """How many of `indices` the node has, per (vendor, model): one model per node is the
        rule, counted without reading each device."""
        text = self._texts.get(rt.record.name)
        by_index = rt.devices_by_index
        if text is not None and text.record is rt.record and len(text.models) == 1:
            return [(text.models[0][0], sum(1 for i in indices if i in by_index))]
        held: Counter[tuple[str, str]] = Counter()
        for index in indices:
            d = by_index.get(index)
            if d is not None:
                held[(d.vendor, d.model)] += 1
        return list(held.items())

    # --- reliability ----------------------------------------------------------------------

    def _reliability(self, now: float) -> list[Family | Metric]:
        from scheduler.server.reliability import fleet_gpu_seconds

        cp = self.cp
        self.counters.read_failures(cp.store.engine)
        self.counters.scan_jobs(cp.jobs.values())
        gpu = Family(
            "corral_gpu_seconds",
            "counter",
            "Device-seconds by what they went to: productive (work kept), recompute_lost, "
            "restart_lost, queued (asked for, waiting) and idle (offered, not held), since the "
            "store began. ETTR = productive / (productive + recompute_lost + restart_lost + queued).",
            ("state",),
        )
        for state, seconds in fleet_gpu_seconds(cp, now).as_dict().items():
            gpu.add([state], seconds)
        return [*self.counters.collect(), gpu]

    # --- power ----------------------------------------------------------------------------

    def _power(self, now: float) -> list[Family]:
        cp = self.cp
        if cp.power is None:
            return []
        _, report = cp.power.recent_report(cp, now)
        labels = ("kind", "domain")
        budget = Family(
            "corral_power_budget_watts",
            "gauge",
            "Power budget per rack and zone: budget=configured, or effective (after thermal derating).",
            (*labels, "budget"),
        )
        draw = Family("corral_power_draw_watts", "gauge", "Measured draw per rack and zone.", labels)
        capped = Family(
            "corral_power_devices_capped",
            "gauge",
            "Devices under a Corral power cap, per rack and zone.",
            labels,
        )
        over = Family(
            "corral_power_over_budget_seconds",
            "gauge",
            "Seconds the domain has been over its budget (0: within it).",
            labels,
        )
        for d in report.domains:
            budget.add([d.kind, d.name, "configured"], d.budget_w)
            budget.add([d.kind, d.name, "effective"], d.effective_budget_w)
            draw.add([d.kind, d.name], d.draw_w)
            capped.add([d.kind, d.name], d.devices_capped)
            over.add([d.kind, d.name], d.over_budget_s)
        site = Family("corral_power_site_draw_watts", "gauge", "Measured draw of the whole site.")
        site.add([], report.site_draw_w)
        return [budget, draw, capped, over, site]


_collectors: weakref.WeakKeyDictionary[ControlPlane, ControlPlaneCollector] = weakref.WeakKeyDictionary()


def collector_of(cp: ControlPlane) -> ControlPlaneCollector:
    """The control plane's collector: one per control plane, as its counters live in it."""
    collector = _collectors.get(cp)
    if collector is None:
        collector = _collectors[cp] = ControlPlaneCollector(cp)
    return collector


def render_metrics(cp: ControlPlane) -> tuple[bytes, str]:
    """The exposition text for one scrape, and its content type. Call it on the control
    plane's event loop: it reads live state without locks."""
    return encode(collector_of(cp).families()), CONTENT_TYPE_LATEST
