"""The web monitor: the pipeline's health, throughput, freshness, lag, dead letters, schemas and DAG runs in a browser.

    python -m ops.monitor                  # serves MONITOR_URL (default http://127.0.0.1:8050); `make up` starts it

    history       a sample every MONITOR_SAMPLE_SECONDS, kept in memory and in <STACK_HOME>/monitor/history.json
    freshness     how long the oldest record not yet written has waited
    dead_letters  the newest dead letters, decoded (Avro by schema id, JSON, or hex); a tally by stage and reason
    schemas       subjects, versions, a field-by-field diff with the BACKWARD verdict
    metrics       /metrics for Prometheus
    app           the FastAPI app: the page, its JSON endpoints, /metrics, /healthz
"""
