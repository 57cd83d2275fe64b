"""The ``authz`` command line (click)."""

from authz.cli.main import main

__all__ = ["main"]
