"""Cross-stage pieces of the pipeline: settings, dead-letter format, Cassandra schema, status, demo."""
