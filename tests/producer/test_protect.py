"""Field protection without services: tokens are deterministic and keyed, ciphertexts decrypt exactly,
configuration mistakes are clear errors, and dead letters and reasons keep protected values hidden."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import stat
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import REPO_ROOT, Settings
from producer.pipeline import run
from producer.protect import (
    CIPHER_PREFIX,
    PROTECTABLE,
    TOKEN_PREFIX,
    FieldProtector,
    ProtectionError,
    main,
    new_key,
    protect_result,
)
from producer.transform import Rejected, User, transform
from tests.ports import closed_port
from tests.producer.test_transform import IR, US, mutated

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)
KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()
FIELDS = "email,phone,cell,national_id_value"


def protector(mode: str = "encrypt", key: str = KEY, fields: str = FIELDS) -> FieldProtector:
    made = FieldProtector.from_settings(Settings(protected_fields=fields, field_protection_mode=mode,
                                                 field_protection_key=key))
    assert made is not None
    return made


def test_tokens_are_deterministic_keyed_hmac_sha256():
    token = protector("tokenize").tokenize("jennie.nichols@example.com")
    assert token == protector("tokenize").tokenize("jennie.nichols@example.com")  # joinable
    assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 64
    assert protector("tokenize", OTHER_KEY).tokenize("jennie.nichols@example.com") != token  # keyed
    assert protector("tokenize").tokenize("jennie.nichols@example.co") != token
    # Exactly HMAC-SHA256 under the HKDF-derived tokenize key: reproducible by anyone holding the key.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"userstream/field-protection/tokenize/v1").derive(base64.b64decode(KEY))
    assert token == TOKEN_PREFIX + hmac.new(derived, b"jennie.nichols@example.com", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("value", ["jennie.nichols@example.com", "(272) 790-0888", "", "محمدطاها", "Соломія 👩"])
def test_encryption_recovers_the_value_exactly(value):
    guard = protector()
    sealed = guard.encrypt("email", value)
    assert sealed.startswith(CIPHER_PREFIX) and value.encode() not in sealed.encode() or value == ""
    assert guard.reveal("email", sealed) == value
    assert guard.encrypt("email", value) == sealed  # deterministic (AES-SIV): replays write identical bytes


def test_a_ciphertext_opens_only_with_its_key_and_its_field():
    sealed = protector().encrypt("phone", "(272) 790-0888")
    with pytest.raises(ProtectionError, match="cannot decrypt cell: wrong key, or the value was not written for"):
        protector().reveal("cell", sealed)  # moved to another column
    with pytest.raises(ProtectionError, match="cannot decrypt phone: wrong key"):
        protector(key=OTHER_KEY).reveal("phone", sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(ProtectionError, match="cannot decrypt"):
        protector().reveal("phone", tampered)
    with pytest.raises(ProtectionError, match="is a token .* cannot be decrypted"):
        protector().reveal("phone", protector("tokenize").tokenize("x"))


def test_protecting_a_user_changes_only_the_protected_fields():
    guard = protector()
    user = transform(US, NOW)
    protected = guard.protect_user(user)
    for name in ("email", "phone", "cell", "national_id_value"):
        assert getattr(protected, name).startswith(CIPHER_PREFIX)
        assert guard.reveal(name, getattr(protected, name)) == getattr(user, name)
    assert protected.first_name == user.first_name and protected.id == user.id
    iranian = guard.protect_user(transform(IR, NOW))
    assert iranian.national_id_value is None  # null stays null


def test_dead_letters_carry_protected_values_even_when_malformed():
    guard = protector()
    raw = mutated(mutated(US, "email", 42), "id", "405-88-3636")  # email of the wrong type, id not an object
    original = copy.deepcopy(raw)
    cleaned = guard.protect_raw(raw)
    assert raw == original  # not changed in place
    assert guard.reveal("email", cleaned["email"]) == "42"
    assert guard.reveal("national_id_value", cleaned["id"]) == "405-88-3636"  # the node that broke the path
    assert guard.reveal("phone", cleaned["phone"]) == US["phone"]
    text = json.dumps(cleaned)
    assert not any(secret in text for secret in ("405-88-3636", US["phone"], US["cell"]))
    assert guard.protect_raw(mutated(US, "email", delete=True)).get("email") is None


@pytest.mark.parametrize("raw,path", [
    (mutated(US, "email", 4242424242), "email"),
    (mutated(US, "id", "405-88-3636"), "id"),
    (mutated(US, "id.value", {"ssn": "405-88-3636"}), "id.value"),
    (mutated(US, "phone", ["(272) 790-0888"]), "phone"),
])
def test_reasons_never_quote_a_protected_value(raw, path):
    result = transform(raw, NOW)
    assert isinstance(result, Rejected)
    _, scrubbed = protect_result(protector(), raw, result)
    assert scrubbed.reason.startswith(f"{path}: ") and "<protected>" in scrubbed.reason, scrubbed.reason
    assert not any(value in scrubbed.reason for value in ("4242424242", "405-88-3636", "(272) 790-0888"))


def test_unprotected_reasons_are_left_alone():
    raw = mutated(US, "location.coordinates.latitude", "512.5")
    result = transform(raw, NOW)
    assert protect_result(protector(), raw, result)[1] == result
    assert protect_result(None, raw, result) == (raw, result)


@pytest.mark.parametrize("update,match", [
    ({"protected_fields": FIELDS}, r"no field protection key: set FIELD_PROTECTION_KEY_FILE .* never go in the repository"),
    ({"protected_fields": "email", "field_protection_key": "not base64!"}, r"FIELD_PROTECTION_KEY is not base64"),
    ({"protected_fields": "email", "field_protection_key": base64.b64encode(b"short").decode()},
     r"holds 5 bytes; a key needs at least 32"),
    ({"protected_fields": "email", "field_protection_key": KEY, "field_protection_key_file": "/tmp/k"},
     r"both FIELD_PROTECTION_KEY and FIELD_PROTECTION_KEY_FILE are set"),
    ({"protected_fields": "email,id", "field_protection_key": KEY}, r"cannot protect id; choose among username, "),
    ({"protected_fields": "e-mail", "field_protection_key": KEY}, r"cannot protect e-mail"),
    ({"protected_fields": "email", "field_protection_key_file": str(REPO_ROOT / "field.key")},
     r"field.key is inside the repository"),
    ({"protected_fields": "email", "field_protection_key_file": "/nonexistent/field.key"},
     r"cannot read FIELD_PROTECTION_KEY_FILE=/nonexistent/field.key"),
])
def test_configuration_mistakes_are_clear_errors(update, match):
    with pytest.raises(ProtectionError, match=match):
        FieldProtector.from_settings(Settings(**update))


def test_protection_is_off_without_fields():
    assert FieldProtector.from_settings(Settings()) is None
    assert "id" not in PROTECTABLE and {"email", "phone", "cell", "national_id_value"} <= set(PROTECTABLE)


def test_a_missing_key_stops_the_run_before_anything_is_fetched():
    settings = Settings(protected_fields=FIELDS, datasource_url=f"http://127.0.0.1:{closed_port()}/api/",
                        schema_registry_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProtectionError, match="no field protection key"):
        run(settings, users=5, batch_size=5, seed="no-key")


def test_new_key_file_is_private_never_overwritten_and_usable(tmp_path, capsys):
    path = tmp_path / "keys" / "field.key"
    assert main(["new-key", str(path)], settings=Settings()) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() not in capsys.readouterr().out  # the key itself is never printed
    with pytest.raises(ProtectionError, match="exists; a key is never overwritten"):
        new_key(path, Settings())
    guard = FieldProtector.from_settings(Settings(protected_fields="email", field_protection_key_file=str(path)))
    assert guard.reveal("email", guard.encrypt("email", "a@b.c")) == "a@b.c"
    assert main(["new-key", str(REPO_ROOT / "field.key")], settings=Settings()) == 1
    assert not (REPO_ROOT / "field.key").exists()


def test_decrypt_one_value_from_the_command_line(tmp_path, capsys):
    sealed = protector().encrypt("email", "jennie.nichols@example.com")
    assert main(["decrypt", "--field", "email", "--value", sealed], settings=Settings(field_protection_key=KEY)) == 0
    assert json.loads(capsys.readouterr().out) == {"email": "jennie.nichols@example.com"}
    assert main(["decrypt", "--field", "phone", "--value", sealed], settings=Settings(field_protection_key=KEY)) == 1
    assert "cannot decrypt phone" in capsys.readouterr().err
    assert main(["decrypt", "--field", "email", "--value", sealed], settings=Settings()) == 1
    assert "no field protection key" in capsys.readouterr().err


def test_user_type_is_unchanged_so_the_schema_is():
    protected = protector().protect_user(transform(US, NOW))
    assert isinstance(protected, User) and all(isinstance(getattr(protected, f), str)
                                               for f in ("email", "phone", "cell", "national_id_value"))
