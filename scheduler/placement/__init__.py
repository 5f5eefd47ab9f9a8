"""Placement: which devices on which nodes a gang of workers gets. Pure functions."""

from scheduler.placement.first_fit import first_fit
from scheduler.placement.types import NodeCapacity, PlacementDecision, PlacementRequest, WorkerSlot

__all__ = ["NodeCapacity", "PlacementDecision", "PlacementRequest", "WorkerSlot", "first_fit"]
