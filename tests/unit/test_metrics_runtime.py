"""gRPC call counts through a real grpc.aio server on loopback, store statement timing on a real
SQLite engine, the bounded histogram, and the fast text writer read back by prometheus_client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.core import CounterMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from scheduler.metrics.exposition import Family, encode, escape, number
from scheduler.metrics.histogram import Histogram, percentile
from scheduler.metrics.runtime import (
    ControlPlaneStats,
    RpcMetricsInterceptor,
    go_code_name,
    split_method,
    statement_op,
)


class Servicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    async def Check(self, request: Any, context: Any) -> Any:
        if request.service == "abort":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such service")
        if request.service == "raise":
            raise RuntimeError("a bug")
        if request.service == "set-code":
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for _ in range(3):
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def samples(stats: ControlPlaneStats) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(encode(stats.collect()).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


async def test_interceptor_counts_every_call_by_method_and_code() -> None:
    stats = ControlPlaneStats()
    server = grpc.aio.server(interceptors=[RpcMetricsInterceptor(stats)])
    health_pb2_grpc.add_HealthServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("ok", "ok", "abort", "raise", "set-code"):
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.Check(health_pb2.HealthCheckRequest(service=service))
            responses = [r async for r in stub.Watch(health_pb2.HealthCheckRequest())]
            assert len(responses) == 3
    finally:
        await server.stop(None)
    totals = {(t.method, t.code): t.count for t in stats.rpc_totals()}
    assert totals == {
        ("Check", "OK"): 2,
        ("Check", "NotFound"): 1,
        ("Check", "Unknown"): 1,
        ("Check", "InvalidArgument"): 1,
        ("Watch", "OK"): 1,
    }
    assert stats.rpc_totals()[0].service == "grpc.health.v1.Health"
    got = samples(stats)
    handled = {
        (labels["grpc_method"], labels["grpc_code"], labels["grpc_type"]): v
        for labels, v in got["grpc_server_handled_total"]
    }
    assert handled[("Check", "OK", "unary")] == 2
    assert handled[("Watch", "OK", "server_stream")] == 1
    started = {labels["grpc_method"]: v for labels, v in got["grpc_server_started_total"]}
    assert started == {"Check": 5, "Watch": 1}
    counts = {labels["grpc_method"]: v for labels, v in got["grpc_server_handling_seconds_count"]}
    assert counts == {"Check": 5, "Watch": 1}


def test_store_statements_are_timed_by_kind(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    stats = ControlPlaneStats(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.execute(text("SELECT x FROM t")).all()
        conn.execute(text("SELECT x FROM t")).all()
    latency = stats.store_latency()
    assert latency.count == 4
    assert 0 < latency.p50_s <= latency.p95_s <= latency.max_s
    got = samples(stats)
    counts = {labels["op"]: v for labels, v in got["corral_store_statement_duration_seconds_count"]}
    assert counts == {"select": 2, "insert": 1, "update": 0, "delete": 0, "other": 1}
    engine.dispose()


def test_scheduling_passes_are_timed_by_result() -> None:
    stats = ControlPlaneStats()
    stats.scheduling_pass(0.003, placed=2)
    stats.scheduling_pass(0.0005, placed=0)
    stats.scheduling_pass(0.0007, placed=0)
    got = samples(stats)
    counts = {labels["result"]: v for labels, v in got["corral_scheduler_pass_duration_seconds_count"]}
    assert counts == {"placed": 1, "none": 2}
    first_bucket = {
        labels["result"]: v
        for labels, v in got["corral_scheduler_pass_duration_seconds_bucket"]
        if labels["le"] == "0.001"
    }
    assert first_bucket == {"placed": 0, "none": 2}


def test_method_and_statement_names() -> None:
    assert split_method("/corral.v1.JobService/Submit") == ("corral.v1.JobService", "Submit")
    assert split_method("") == ("unknown", "unknown")
    assert statement_op("  UPDATE jobs SET x=1") == "update"
    assert statement_op("PRAGMA foreign_keys=ON") == "other"
    assert go_code_name("CANCELLED") == "Canceled"
    assert go_code_name("DEADLINE_EXCEEDED") == "DeadlineExceeded"
    assert go_code_name("OK") == "OK"


def test_histogram_buckets_are_cumulative_and_the_window_forgets() -> None:
    h = Histogram((0.1, 1.0), window_s=10.0, max_recent=100)
    for at, v in ((0.0, 0.05), (1.0, 0.5), (2.0, 5.0)):
        h.observe(v, at)
    snap = h.snapshot()
    assert snap.buckets == ((0.1, 1), (1.0, 2), (float("inf"), 3))
    assert snap.count == 3
    assert snap.sum_s == pytest.approx(5.55)
    assert h.summary(5.0).count == 3
    assert h.summary(5.0).max_s == 5.0
    later = h.summary(11.5)  # the first two fell out of the window; the buckets keep them
    assert (later.count, later.p50_s) == (1, 5.0)
    assert h.snapshot().count == 3
    with pytest.raises(ValueError, match="buckets"):
        Histogram((1.0, 0.1))
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) in (2.0, 3.0)


def test_the_fast_writer_matches_the_text_format() -> None:
    gauge = Family("corral_x", "gauge", "A gauge.\nSecond line.", ("node", "state"))
    gauge.add(["n\\0", 'say "hi"\n'], 1.5)
    gauge.add_text(gauge.line(["n1", "ready"], 1))
    counter = Family("corral_y", "counter", "A counter.", ("kind",))
    counter.add(["a"], 3)
    hist = Family("corral_z_seconds", "histogram", "A histogram.", ("phase",))
    h = Histogram((0.5,))
    h.observe(0.2, 0.0)
    hist.add_histogram(["detect"], h.snapshot())
    plain = CounterMetricFamily("corral_w", "From prometheus_client.", labels=["k"])
    plain.add_metric(["v"], 2)
    families = {
        f.name: f for f in text_string_to_metric_families(encode([gauge, counter, hist, plain]).decode())
    }
    assert next(s.labels for s in families["corral_x"].samples) == {"node": "n\\0", "state": 'say "hi"\n'}
    assert families["corral_x"].documentation == "A gauge.\nSecond line."
    assert families["corral_y"].type == "counter"
    assert families["corral_y"].samples[0].name == "corral_y_total"
    assert families["corral_y"].samples[0].value == 3
    buckets = {
        s.labels["le"]: s.value for s in families["corral_z_seconds"].samples if s.name.endswith("_bucket")
    }
    assert buckets == {"0.5": 1, "+Inf": 1}
    assert families["corral_w"].samples[0].value == 2
    assert (escape("plain"), number(True), number(2), number(float("inf")), number(0.25)) == (
        "plain",
        "1",
        "2",
        "+Inf",
        "0.25",
    )
    with pytest.raises(ValueError, match="labels"):
        Family("corral_bad", "gauge", "x", ("le",))
    with pytest.raises(ValueError, match="kind"):
        Family("corral_bad", "summary", "x")
