"""The web console (``qscan web``, docs/web.md): an interface like the CLI, over the same code.

Server-rendered pages (Starlette, Jinja2 with autoescape), one module per area (``auth``,
``audit``, ``message``...), each exporting its ``ROUTES``; ``routes.py`` gathers them into the one
list the app serves and the navigation the layout draws. Pages read and write only through
``compliance`` (the functions the CLI commands call) and ``qscan.wiring`` (the log, the stored
copies), never with SQL of their own.

This package's ``__init__`` and ``settings`` import nothing of the ``[web]`` extra: loading a
config reads ``WebSettings`` without Starlette installed.
"""
