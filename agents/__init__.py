"""Corral node agent."""
