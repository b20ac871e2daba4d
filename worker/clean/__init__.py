"""Site-level cleaning: pure rules that judge each line (``rules``) and the per-site memory in Redis they
learn from (``memory``)."""
