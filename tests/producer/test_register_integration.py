"""`python -m producer.register` against the real Schema Registry (Apicurio ccompat on the embedded stack).

Each test registers under its own topic's subject (`test-<hex>-value`), deleted afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from core.settings import REPO_ROOT, Settings
from producer import register
from producer.registry import SCHEMAS_DIR, make_client
from tests.ports import closed_port

pytestmark = pytest.mark.integration
USER_AVSC = SCHEMAS_DIR / "user.avsc"


def write_schema(tmp_path, name: str, change) -> str:
    schema = json.loads(USER_AVSC.read_text())
    change(schema["fields"])
    path = tmp_path / name
    path.write_text(json.dumps(schema, indent=2))
    return str(path)


def field(fields, name):
    return next(f for f in fields if f["name"] == name)


def run_main(capsys, settings: Settings, *argv: str) -> tuple[int, str, str]:
    code = register.main(["--topic", settings.users_topic, *argv], settings=settings)
    out, err = capsys.readouterr()
    return code, out, err


def parse(out: str) -> tuple[str, int, int]:
    match = re.search(r"^(registered|already registered): subject=(\S+) id=(\d+) version=(\d+)", out, re.M)
    assert match, out
    return match.group(1), int(match.group(3)), int(match.group(4))


def test_registers_then_reports_already_registered(stack_settings, capsys):
    code, out, err = run_main(capsys, stack_settings)
    assert code == 0, err
    status, schema_id, version = parse(out)
    assert (status, version) == ("registered", 1)
    subject = f"{stack_settings.users_topic}-value"
    assert f"subject={subject}" in out

    code, out, err = run_main(capsys, stack_settings)
    assert code == 0, err
    assert parse(out) == ("already registered", schema_id, 1)

    client = make_client(stack_settings)
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert json.loads(latest.schema.schema_str)["name"] == "User"
    assert client.get_compatibility(subject) == "BACKWARD"  # set on the subject, not just global


def test_dry_run_changes_nothing(stack_settings, capsys):
    code, out, err = run_main(capsys, stack_settings, "--dry-run")
    assert code == 0, err
    assert out.startswith(f"would register: subject={stack_settings.users_topic}-value")
    assert f"{stack_settings.users_topic}-value" not in make_client(stack_settings).get_subjects()


def test_incompatible_change_is_refused_naming_the_fields(stack_settings, capsys, tmp_path):
    assert run_main(capsys, stack_settings)[0] == 0

    def breaking(fields):
        fields.append({"name": "loyalty_tier", "type": "string"})  # required, no default
        field(fields, "street_number")["type"] = "string"  # int -> string is no promotion

    bad = write_schema(tmp_path, "bad.avsc", breaking)
    code, out, err = run_main(capsys, stack_settings, "--schema", bad)
    assert code == 1
    assert "not BACKWARD-compatible" in err and "not registered" in err
    assert "field 'loyalty_tier' is new and has no default" in err
    assert "field 'street_number' changed type from int to string" in err
    assert make_client(stack_settings).get_versions(f"{stack_settings.users_topic}-value") == [1]

    # The dry run refuses it too.
    assert run_main(capsys, stack_settings, "--schema", bad, "--dry-run")[0] == 1


def test_compatible_evolution_gets_a_new_version(stack_settings, capsys, tmp_path):
    assert run_main(capsys, stack_settings)[0] == 0
    good = write_schema(tmp_path, "v2.avsc", lambda fields: fields.append(
        {"name": "nickname", "type": ["null", "string"], "default": None, "doc": "optional"}))
    code, out, err = run_main(capsys, stack_settings, "--schema", good)
    assert code == 0, err
    status, v2_id, version = parse(out)
    assert (status, version) == ("registered", 2)
    # v1 is still known as v1 (idempotent, not re-registered as v3).
    code, out, _ = run_main(capsys, stack_settings)
    assert parse(out)[0::2] == ("already registered", 1)


def test_full_compatibility_refuses_what_backward_allows(stack_settings, capsys, tmp_path):
    assert run_main(capsys, stack_settings, "--compatibility", "full")[0] == 0
    subject = f"{stack_settings.users_topic}-value"
    assert make_client(stack_settings).get_compatibility(subject) == "FULL"
    dropped = write_schema(tmp_path, "dropped.avsc", lambda fields: fields.remove(field(fields, "cell")))
    code, _, err = run_main(capsys, stack_settings, "--compatibility", "FULL", "--schema", dropped)
    assert code == 1
    assert "field 'cell' was removed but has no default" in err


def test_topic_record_strategy_and_subject_override(stack_settings, capsys):
    code, out, err = run_main(capsys, stack_settings, "--strategy", "topic_record")
    assert code == 0, err
    assert f"subject={stack_settings.users_topic}-io.userstream.User " in out
    code, out, err = run_main(capsys, stack_settings, "--subject", f"{stack_settings.users_topic}-custom")
    assert code == 0, err
    assert f"subject={stack_settings.users_topic}-custom " in out


def test_record_strategy_uses_the_record_full_name(stack_settings, capsys, tmp_path):
    # A record name of our own, so this never touches the shared io.userstream.User subject.
    namespace = stack_settings.users_topic.replace("-", "_")
    schema = json.loads(USER_AVSC.read_text())
    schema["namespace"] = namespace
    path = tmp_path / "own.avsc"
    path.write_text(json.dumps(schema))
    code, out, err = run_main(capsys, stack_settings, "--strategy", "record", "--schema", str(path))
    assert code == 0, err
    assert f"subject={namespace}.User " in out
    client = make_client(stack_settings)
    client.delete_subject(f"{namespace}.User")
    client.delete_subject(f"{namespace}.User", permanent=True)


def test_registry_down_says_which_url_and_what_to_do(stack_settings, capsys):
    port = closed_port()
    down = stack_settings.model_copy(update={"schema_registry_url": f"http://127.0.0.1:{port}/apis/ccompat/v7"})
    code, out, err = run_main(capsys, down)
    assert code == 1 and out == ""
    assert f"cannot reach the Schema Registry at http://127.0.0.1:{port}/apis/ccompat/v7" in err
    assert "make up" in err


def test_cli_entry_point(stack_settings):
    """`python -m producer.register` (what `make register` runs) reads its settings from the environment."""
    env = {"PATH": "/usr/bin:/bin", "USERS_TOPIC": stack_settings.users_topic,
           "SCHEMA_REGISTRY_URL": stack_settings.schema_registry_url}
    first = subprocess.run([sys.executable, "-m", "producer.register"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-m", "producer.register"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert parse(second.stdout) == ("already registered", parse(first.stdout)[1], 1)
