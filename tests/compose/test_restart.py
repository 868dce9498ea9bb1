"""The streaming job's container comes back after a crash, as stack/supervisor.py does on the embedded stack."""

from __future__ import annotations

# Policies under which Docker starts a container again after it exits non-zero or is killed.
RESTARTS_AFTER_A_CRASH = ("on-failure", "unless-stopped", "always")


def test_the_spark_job_is_restarted_after_a_crash(services):
    policy = str(services["spark-stream"].get("restart", "no"))
    assert policy.split(":")[0] in RESTARTS_AFTER_A_CRASH, (
        f"spark-stream has `restart: {policy}`: a crashed job would stay down until someone starts it"
    )
    if policy.startswith("on-failure:"):
        # Docker never resets this count while the container exists: outages would use it up for good.
        assert False, f"spark-stream: `{policy}` caps restarts for the container's whole life; use on-failure or unless-stopped"


def test_the_spark_job_has_no_swarm_only_restart_policy(services):
    """`deploy.restart_policy` is for Swarm; `docker compose up` reads `restart:`, so one place decides."""
    assert "restart_policy" not in (services["spark-stream"].get("deploy") or {})
