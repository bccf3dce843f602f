"""The admin CLI: ``qscan [-c CONFIG] COMMAND``; the root group is in ``app``, each command group
in its own module (``db``, ``compliance``, ``quarantine``, ``dlp``, ``policy``, ``notify``, ``ops``).

``main`` is the ``qscan`` console entry point (``qscan.cli:main``) and ``python -m qscan``."""

from qscan.cli.app import cli, main

__all__ = ["cli", "main"]
