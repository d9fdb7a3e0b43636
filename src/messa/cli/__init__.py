"""The ``messa`` command-line interface (entry point :func:`messa.cli.app.main`).

Reference: ``docs/cli.md``. Commands live in :mod:`messa.cli.commands`;
exit codes in :mod:`messa.cli.exitcodes`; all printing in :mod:`messa.cli.output`.
"""
