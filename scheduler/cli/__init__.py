"""The `corral` command-line interface (typer + rich). Entry point: `scheduler.cli.main:main`.

Exit codes are listed in `scheduler.cli.errors`."""
