"""The trace-driven simulator: the placement engine and queues under a virtual clock."""
