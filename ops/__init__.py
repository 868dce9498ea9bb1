"""Operator tools over the running pipeline: the demo (the main command), the status view, the Airflow client."""
