"""Power and cooling budgets, pure: per-model power → throughput curves, the nested rack and
zone budgets, the live capping controller and the offline optimum it is measured against.
The live control plane and the simulator (benchmarks/power.py) call the same code."""
