"""Command line: Typer + Rich. A client of the API, plus `validate`, `schema`, `plan` and `up`."""

from deploy_code.cli.app import app, main

__all__ = ["app", "main"]
