"""Placement: which devices on which nodes a gang of workers gets. Pure functions of a
cluster snapshot (`ClusterState`) and a request; see engine.py for the steps."""

from scheduler.placement.cluster import Allocation, ClusterState, DeviceState, NodeState
from scheduler.placement.engine import PlacementDecision, WorkerSlot, place
from scheduler.placement.policies import DEFAULT_POLICY, POLICIES, Policy, make_policy
from scheduler.placement.request import PlacementRequest, Topology, TopologyLevel, WorkerShape

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "Allocation",
    "ClusterState",
    "DeviceState",
    "NodeState",
    "PlacementDecision",
    "PlacementRequest",
    "Policy",
    "Topology",
    "TopologyLevel",
    "WorkerShape",
    "WorkerSlot",
    "make_policy",
    "place",
]
