"""The shared core every stage uses: settings, the registry client, subjects, topics, the dead-letter format, the Cassandra schema.

Below both halves of the pipeline (producer/ and spark/) and the operator tools (ops/); imports nothing of theirs.
"""
