"""Prometheus metrics of the control plane (docs/metrics.md).

- controlplane.py: `render_metrics(cp)`, the control plane's /metrics, read from live state.
- runtime.py: `ControlPlaneStats` (gRPC calls, scheduling passes, store latency) and the
  gRPC server interceptor that feeds it.
- interruptions.py: interruption and recovery counters, advanced at each scrape.
- classes.py: bounded label values (node states, pending reasons).
- exposition.py: the fast text-format writer; histogram.py: bounded histograms.
- discovery.py: `scrape_targets(cp)`, Prometheus HTTP service discovery of the agents' own
  exporters (agents/metrics.py).
"""
