"""Fault tolerance, pure: failure signals and their severity, device and node health, blame,
lemon nodes, and the checkpoint interval. The live control plane and the simulator call the
same functions."""
