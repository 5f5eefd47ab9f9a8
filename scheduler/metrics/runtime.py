"""How the control plane itself is doing: gRPC calls, scheduling passes and store latency.

`ControlPlaneStats` is made once per control plane (`cp.stats`). It counts every gRPC call the
server finishes, by service, method and status code, with a duration histogram per method
(`RpcMetricsInterceptor`, given to `grpc.aio.server(interceptors=[...])`); times every
scheduling pass over pending gangs (`scheduling_pass`, called by ControlPlane.schedule); and
times every SQL statement through SQLAlchemy's cursor events. Prometheus reads them through
`collect()`; the dashboard's control-plane view reads `rpc_totals()` and `store_latency()`.

Names follow go-grpc-prometheus (`grpc_server_started_total`, `grpc_server_handled_total`,
`grpc_server_handling_seconds`, codes spelt as Go spells them), so existing gRPC dashboards
and alerts work unchanged. A stream counts as handled when it ends, and its duration is the
stream's whole life.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Engine, event

from scheduler.metrics.histogram import Histogram, HistogramSnapshot, WindowSummary

# Labels are bounded: methods are the services' own, codes gRPC's 17, ops these five.
STORE_OPS = ("select", "insert", "update", "delete", "other")
# A scheduling pass that placed at least one gang, or none (kube-scheduler's result label).
PASS_RESULTS = ("placed", "none")
# kube-scheduler's scheduling_attempt_duration_seconds buckets: 1 ms × 2^0..14.
PASS_BUCKETS_S: tuple[float, ...] = tuple(0.001 * 2**i for i in range(15))
_CLOCK_KEY = "corral_statement_started"


@dataclass(frozen=True)
class RpcTotal:
    service: str
    method: str
    code: str
    count: int
    seconds: float


@dataclass(frozen=True)
class RpcKey:
    service: str
    method: str
    kind: str  # go-grpc-prometheus's grpc_type: unary, client_stream, server_stream, bidi_stream


def split_method(full: str) -> tuple[str, str]:
    """'/corral.v1.JobService/Submit' → ('corral.v1.JobService', 'Submit')."""
    service, _, method = full.lstrip("/").rpartition("/")
    return (service or "unknown"), (method or "unknown")


def statement_op(statement: str) -> str:
    """The statement's verb, one of STORE_OPS."""
    verb = statement.lstrip()[:6].lower()
    return verb if verb in STORE_OPS else "other"


class ControlPlaneStats:
    """Counters shared by the gRPC interceptor, the store's events and the scrapes."""

    def __init__(self, engine: Engine | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._started: dict[RpcKey, int] = {}
        self._handled: dict[tuple[RpcKey, str], list[float]] = {}  # → [count, seconds]
        self._rpc_seconds: dict[RpcKey, Histogram] = {}
        self._store: dict[str, Histogram] = {op: Histogram() for op in STORE_OPS}
        self._store_all = Histogram()
        self._passes = {r: Histogram(PASS_BUCKETS_S, max_recent=1) for r in PASS_RESULTS}
        if engine is not None:
            self.watch_engine(engine)

    # --- gRPC -----------------------------------------------------------------------------

    def rpc_started(self, key: RpcKey) -> None:
        with self._lock:
            self._started[key] = self._started.get(key, 0) + 1

    def rpc_handled(self, key: RpcKey, code: str, seconds: float) -> None:
        with self._lock:
            totals = self._handled.get((key, code))
            if totals is None:
                totals = self._handled[(key, code)] = [0, 0.0]
            totals[0] += 1
            totals[1] += seconds
            histogram = self._rpc_seconds.get(key)
            if histogram is None:
                histogram = self._rpc_seconds[key] = Histogram(max_recent=1)
        histogram.observe(seconds, self.clock())

    def rpc_totals(self) -> list[RpcTotal]:
        """Every (service, method, code) seen so far, most calls first."""
        with self._lock:
            rows = [
                RpcTotal(key.service, key.method, code, int(n), s)
                for (key, code), (n, s) in self._handled.items()
            ]
        return sorted(rows, key=lambda r: (-r.count, r.service, r.method, r.code))

    # --- scheduling -----------------------------------------------------------------------

    def scheduling_pass(self, seconds: float, placed: int) -> None:
        """One scheduling pass over pending gangs (ControlPlane.schedule), and how many it placed."""
        self._passes["placed" if placed else "none"].observe(seconds, self.clock())

    # --- the store ------------------------------------------------------------------------

    def watch_engine(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before_statement)
        event.listen(engine, "after_cursor_execute", self._after_statement)

    def _before_statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault(_CLOCK_KEY, []).append(time.perf_counter())

    def _after_statement(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = conn.info.get(_CLOCK_KEY)
        if not started:
            return
        elapsed = time.perf_counter() - started.pop()
        now = self.clock()
        self._store[statement_op(statement)].observe(elapsed, now)
        self._store_all.observe(elapsed, now)

    def store_latency(self) -> WindowSummary:
        """Count, p50, p95 and max statement time over the last few minutes."""
        return self._store_all.summary(self.clock())

    # --- Prometheus -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = dict(self._started)
            handled = {k: (int(v[0]), v[1]) for k, v in self._handled.items()}
            rpc_seconds = dict(self._rpc_seconds)
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        started_family = CounterMetricFamily(
            "grpc_server_started", "gRPC calls started on the control plane.", labels=labels
        )
        for key, n in sorted(started.items(), key=lambda kv: _order(kv[0])):
            started_family.add_metric([key.kind, key.service, key.method], n)
        yield started_family
        handled_family = CounterMetricFamily(
            "grpc_server_handled",
            "gRPC calls the control plane finished, by status code (streams count when they end).",
            labels=[*labels, "grpc_code"],
        )
        for (key, code), (n, _) in sorted(handled.items(), key=lambda kv: (*_order(kv[0][0]), kv[0][1])):
            handled_family.add_metric([key.kind, key.service, key.method, code], n)
        yield handled_family
        seconds_family = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Time from a gRPC call's start to its end on the control plane (a stream's whole life).",
            labels=labels,
        )
        for key, histogram in sorted(rpc_seconds.items(), key=lambda kv: _order(kv[0])):
            _add_histogram(seconds_family, [key.kind, key.service, key.method], histogram.snapshot())
        yield seconds_family
        store_family = HistogramMetricFamily(
            "corral_store_statement_duration_seconds",
            "Time the store took to execute one SQL statement, by statement kind.",
            labels=["op"],
        )
        for op in STORE_OPS:
            _add_histogram(store_family, [op], self._store[op].snapshot())
        yield store_family
        passes = HistogramMetricFamily(
            "corral_scheduler_pass_duration_seconds",
            "Time a scheduling pass over the pending gangs took, by whether it placed any.",
            labels=["result"],
        )
        for result in PASS_RESULTS:
            _add_histogram(passes, [result], self._passes[result].snapshot())
        yield passes


def _order(key: RpcKey) -> tuple[str, str, str]:
    return (key.service, key.method, key.kind)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], snap: HistogramSnapshot) -> None:
    family.add_metric(labels, [(_bound(b), float(n)) for b, n in snap.buckets], snap.sum_s)


def _bound(upper: float) -> str:
    return "+Inf" if upper == float("inf") else repr(upper)


# --- the interceptor --------------------------------------------------------------------------


def go_code_name(python_name: str) -> str:
    """grpc's Python StatusCode name as Go's `codes.Code.String()` writes it, the form
    go-grpc-prometheus puts in `grpc_code` ("NOT_FOUND" → "NotFound")."""
    if python_name == "CANCELLED":
        return "Canceled"  # Go's spelling
    if python_name == "OK":
        return "OK"
    return "".join(word.capitalize() for word in python_name.split("_"))


def _code_name(code: Any) -> str:
    name = getattr(code, "name", None)
    return go_code_name(str(name)) if name else "OK"


def _failed_code(exc: BaseException, context: Any) -> str:
    """The status a call ended with when its handler raised: abort() set one; a cancelled
    call is Canceled; anything else reaches the client as Unknown."""
    if isinstance(exc, asyncio.CancelledError):
        return "Canceled"
    code = context.code()
    return _code_name(code) if code is not None else "Unknown"


def _kind(handler: Any) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every call the control plane's gRPC server handles."""

    def __init__(self, stats: ControlPlaneStats) -> None:
        self.stats = stats

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: gRPC answers UNIMPLEMENTED itself
            return None
        service, method = split_method(handler_call_details.method)
        key = RpcKey(service, method, _kind(handler))
        make = {
            "unary": grpc.unary_unary_rpc_method_handler,
            "client_stream": grpc.stream_unary_rpc_method_handler,
            "server_stream": grpc.unary_stream_rpc_method_handler,
            "bidi_stream": grpc.stream_stream_rpc_method_handler,
        }[key.kind]
        behaviour = (
            handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
        )
        return make(
            self._wrap(key, behaviour),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, key: RpcKey, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        """The same kind of callable as `behaviour` (gRPC picks how to drive a handler by
        whether it is an async generator function), timed and counted."""
        stats = self.stats

        if inspect.isasyncgenfunction(behaviour):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                stats.rpc_started(key)
                started, code = time.perf_counter(), "OK"
                try:
                    async for response in behaviour(request, context):
                        yield response
                except BaseException as exc:
                    code = _failed_code(exc, context)
                    raise
                finally:
                    if code == "OK":
                        code = _code_name(context.code())
                    stats.rpc_handled(key, code, time.perf_counter() - started)

            return streaming

        async def call(request: Any, context: Any) -> Any:
            stats.rpc_started(key)
            started, code = time.perf_counter(), "OK"
            try:
                result = behaviour(request, context)
                return (await result) if inspect.isawaitable(result) else result
            except BaseException as exc:
                code = _failed_code(exc, context)
                raise
            finally:
                if code == "OK":
                    code = _code_name(context.code())
                stats.rpc_handled(key, code, time.perf_counter() - started)

        return call
