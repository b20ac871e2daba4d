"""``python -m worker.cli``: the ``ingest`` command."""

from worker.cli.main import main

main()
