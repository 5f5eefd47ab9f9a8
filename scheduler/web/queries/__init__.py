"""What each dashboard page shows, gathered as dataclasses by plain functions of the control
plane (and its store, always with a LIMIT): testable without HTTP."""
