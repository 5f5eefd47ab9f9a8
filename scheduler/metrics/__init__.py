"""Prometheus metrics: what the control plane exports (`controlplane.py`) and how Prometheus
finds the agents' own exporters (`discovery.py`)."""
