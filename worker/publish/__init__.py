"""The publish stage: the article message and its schema, routing to streams, dead letters, reading streams."""
