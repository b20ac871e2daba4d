"""Shared plumbing every stage uses: settings, Redis key names and connections, logs, URLs, run bookkeeping."""
