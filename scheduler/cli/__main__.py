"""`python -m scheduler.cli ...` — what `corral up` uses to start its child processes."""

from scheduler.cli.main import main

main()
