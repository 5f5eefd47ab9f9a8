"""Corral control plane."""
