"""The control plane's HTTP side: the operator dashboard, /metrics and Prometheus discovery.

FastAPI on the control plane's own asyncio loop (serve.py), so handlers read the in-memory
state without locks. Views (views/) only render; what they show is gathered by plain
functions in queries/ that return dataclasses.
"""
