"""Entry points above the stages: the ``ingest`` command, the WebSub callback server, dead-letter replay and
the evaluation."""
