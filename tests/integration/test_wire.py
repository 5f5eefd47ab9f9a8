"""Wire-level behaviour: bad proto input, health checking, stale generated code."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from corral.v1 import agent_pb2, agent_pb2_grpc, common_pb2, job_pb2, job_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import REPO, Server


def test_health_service_reports_serving(server: Server) -> None:
    with grpc.insecure_channel(server.address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "corral.v1.AgentService", "corral.v1.JobService", "corral.v1.NodeService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def _connect(server: Server, *messages: agent_pb2.AgentMessage) -> grpc.RpcError:
    with grpc.insecure_channel(server.address) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            for _ in stub.Connect(iter(messages), timeout=5):
                pass
        return info.value


def test_agent_stream_refuses_bad_register_naming_fields(server: Server) -> None:
    err = _connect(server, agent_pb2.AgentMessage(telemetry=agent_pb2.Telemetry()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "register" in (err.details() or "")
    bad = agent_pb2.Register(
        node_name="",
        devices=[
            common_pb2.Device(index=0, vendor="nvidia", model="H100"),
            common_pb2.Device(index=0, vendor=""),
        ],
    )
    err = _connect(server, agent_pb2.AgentMessage(register=bad))
    details = err.details() or ""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    for field in (
        "register.node_name",
        "register.devices[1].index",
        "register.devices[1].vendor",
        "register.devices[1].model",
    ):
        assert field in details


def test_submit_validates_proto_specs_like_yaml_ones(server: Server) -> None:
    with grpc.insecure_channel(server.address) as ch:
        stub = job_pb2_grpc.JobServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Submit(
                job_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(name="Bad Name", devices_per_worker=999)),
                timeout=5,
            )
        details = info.value.details() or ""
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "name:" in details and "command:" in details and "devices_per_worker:" in details
        listed = stub.List(job_pb2.ListJobsRequest(), timeout=5)
        assert len(listed.jobs) == 0  # nothing half-accepted


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "proto/generate.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
