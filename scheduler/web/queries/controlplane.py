"""What the Control plane view shows: version, uptime, store, agent heartbeat lag, telemetry
ingest lag, agent versions, streams, and RPC error rates and store latency from `cp.stats`
(scheduler/metrics/runtime.py) where the server keeps it.

Everything is in memory but the schema version, read from Alembic's table once per store.
"""

from __future__ import annotations

import heapq
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from scheduler import __version__
from scheduler.metrics.histogram import WindowSummary
from scheduler.server.controlplane import ControlPlane
from scheduler.server.ingest import LagSummary
from scheduler.server.nodes import NodeRuntime
from scheduler.store import Store
from scheduler.web.queries.queues import Percentiles

WORST_SHOWN = 10
UNKNOWN_VERSION = "(not reported)"


@dataclass(frozen=True)
class LagBucket:
    label: str
    low_s: float
    high_s: float | None  # None: no upper end
    level: str  # "ok", "warn", "bad": the colour, with the label as text
    agents: int = 0


@dataclass(frozen=True)
class AgentLag:
    node: str
    lag_s: float
    version: str
    address: str


@dataclass(frozen=True)
class HeartbeatLag:
    """How long since each connected agent's stream last carried anything. Agents send
    telemetry every interval, so a healthy lag stays under about one interval."""

    connected: int
    disconnected: int
    percentiles: Percentiles
    buckets: tuple[LagBucket, ...]
    worst: tuple[AgentLag, ...]  # most lagging first
    interval_s: float
    timeout_s: float  # a stream silent this long is closed


@dataclass(frozen=True)
class VersionRow:
    version: str
    agents: int
    matches_server: bool


@dataclass(frozen=True)
class RpcRow:
    """One gRPC method's calls since the server started; errors are calls that ended with any
    status but OK (a stream an agent drops ends CANCELLED, so read the codes too)."""

    method: str  # "JobService/Submit"
    calls: int
    errors: int
    error_codes: tuple[tuple[str, int], ...]  # most first

    @property
    def error_ratio(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class ControlPlanePage:
    version: str
    started_at: float
    uptime_s: float
    data_dir: str
    store_url: str  # password hidden
    store_backend: str
    schema_version: str
    policy: str
    nodes_total: int
    agent_streams: int
    jobs_total: int
    jobs_live: int
    heartbeat: HeartbeatLag
    ingest: LagSummary
    telemetry_total: int
    versions: tuple[VersionRow, ...]  # most agents first
    version_skew: int  # connected agents on a version other than the server's
    rpc: tuple[RpcRow, ...] | None  # None: this control plane does not count them
    store_latency: WindowSummary | None  # statement time over a recent window; None: not timed


def lag_buckets(interval_s: float, timeout_s: float) -> tuple[LagBucket, ...]:
    """Bands relative to the telemetry interval and the heartbeat timeout, so they mean the
    same on a cluster sending every 0.5 s as on one sending every second."""
    two = 2 * interval_s
    return (
        LagBucket(f"< {interval_s:g} s", 0.0, interval_s, "ok"),
        LagBucket(f"{interval_s:g}–{two:g} s", interval_s, two, "ok"),
        LagBucket(f"{two:g}–{timeout_s / 2:g} s", two, timeout_s / 2, "warn"),
        LagBucket(f"≥ {timeout_s / 2:g} s (half the timeout)", timeout_s / 2, None, "bad"),
    )


def heartbeat_lag(
    nodes: Iterable[NodeRuntime], now: float, interval_s: float, timeout_s: float
) -> HeartbeatLag:
    shape = lag_buckets(interval_s, timeout_s)
    counts = [0] * len(shape)
    lags: list[float] = []
    connected: list[tuple[float, NodeRuntime]] = []
    disconnected = 0
    for rt in nodes:
        if rt.session is None:
            disconnected += 1
            continue
        lag = max(0.0, now - rt.last_seen)
        lags.append(lag)
        connected.append((lag, rt))
        for i, b in enumerate(shape):
            if lag >= b.low_s and (b.high_s is None or lag < b.high_s):
                counts[i] += 1
                break
    # nlargest is stable: among equal lags the registry's order stays, refresh after refresh.
    worst = heapq.nlargest(WORST_SHOWN, connected, key=lambda pair: pair[0])
    return HeartbeatLag(
        connected=len(lags),
        disconnected=disconnected,
        percentiles=Percentiles.of(lags),
        buckets=tuple(LagBucket(b.label, b.low_s, b.high_s, b.level, counts[i]) for i, b in enumerate(shape)),
        worst=tuple(
            AgentLag(rt.record.name, lag, rt.record.agent_version or UNKNOWN_VERSION, rt.record.address)
            for lag, rt in worst
        ),
        interval_s=interval_s,
        timeout_s=timeout_s,
    )


def agent_versions(nodes: Iterable[NodeRuntime], server_version: str) -> list[VersionRow]:
    counts: dict[str, int] = {}
    for rt in nodes:
        if rt.session is not None:
            version = rt.record.agent_version or UNKNOWN_VERSION
            counts[version] = counts.get(version, 0) + 1
    return [
        VersionRow(v, n, v == server_version)
        for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def rpc_rows(stats: Any) -> tuple[RpcRow, ...] | None:
    """Per method from `cp.stats.rpc_totals()` (scheduler/metrics/runtime.py: one row per
    service, method and status code), most errors first. None without stats."""
    totals = getattr(stats, "rpc_totals", None)
    if not callable(totals):
        return None
    calls: dict[str, int] = {}
    codes: dict[str, dict[str, int]] = {}
    for t in totals():
        method = f"{str(t.service).rsplit('.', 1)[-1]}/{t.method}"
        calls[method] = calls.get(method, 0) + int(t.count)
        if t.code != "OK":
            per_code = codes.setdefault(method, {})
            per_code[str(t.code)] = per_code.get(str(t.code), 0) + int(t.count)
    rows = [
        RpcRow(
            method=method,
            calls=n,
            errors=sum(codes.get(method, {}).values()),
            error_codes=tuple(sorted(codes.get(method, {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        )
        for method, n in calls.items()
    ]
    rows.sort(key=lambda r: (-r.errors, -r.calls, r.method))
    return tuple(rows)


def store_latency(stats: Any) -> WindowSummary | None:
    """Statement time over the recent window from `cp.stats.store_latency()`; None without."""
    latency = getattr(stats, "store_latency", None)
    if not callable(latency):
        return None
    summary: WindowSummary = latency()
    return summary


# Migrations run only when the store opens, so its schema version is read once per store.
_schema_versions: weakref.WeakKeyDictionary[Store, str] = weakref.WeakKeyDictionary()


def schema_version(store: Store) -> str:
    version = _schema_versions.get(store)
    if version is None:
        version = _schema_versions[store] = store.schema_version() or "(none)"
    return version


def safe_store_url(url: str) -> tuple[str, str]:
    """(the URL with any password hidden, the backend's name)."""
    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True), parsed.get_backend_name()


def controlplane_page(
    cp: ControlPlane, *, agent_streams: int | None = None, now: float | None = None
) -> ControlPlanePage:
    """`agent_streams`: the agent servicer's count of open streams where the caller has it;
    otherwise the connected nodes (one stream each)."""
    now = cp.clock() if now is None else now
    nodes = list(cp.nodes)
    url, backend = safe_store_url(cp.store.url)
    heartbeat = heartbeat_lag(nodes, now, cp.telemetry_interval_s, cp.liveness.heartbeat_timeout_s)
    versions = agent_versions(nodes, __version__)
    stats = getattr(cp, "stats", None)
    return ControlPlanePage(
        version=__version__,
        started_at=cp.started_at,
        uptime_s=max(0.0, now - cp.started_at),
        data_dir=str(cp.data_dir),
        store_url=url,
        store_backend=backend,
        schema_version=schema_version(cp.store),
        policy=cp.policy_name,
        nodes_total=len(nodes),
        agent_streams=heartbeat.connected if agent_streams is None else agent_streams,
        jobs_total=len(cp.jobs),
        jobs_live=sum(1 for j in cp.jobs.values() if not j.state.terminal),
        heartbeat=heartbeat,
        ingest=cp.lag.summary(now),
        telemetry_total=cp.lag.total,
        versions=tuple(versions),
        version_skew=sum(v.agents for v in versions if not v.matches_server),
        rpc=rpc_rows(stats),
        store_latency=store_latency(stats),
    )
