"""``python -m rsgen`` is the ``rsgen`` command."""

from rsgen.cli import run

run()
