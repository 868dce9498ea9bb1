"""Field-level protection (opt-in): chosen fields are tokenized or encrypted before they leave the producer.

PROTECTED_FIELDS lists `User` fields (e.g. `email,phone,cell,national_id_value`;
any text field but `id`, which is the Kafka key and the Cassandra primary key).
Each value is replaced, in the published record *and* in any dead letter or
dead-letter reason, by one of:

- `tokenize` (default): `tok:v1:<hex>`, HMAC-SHA256 of the value under the key.
  Deterministic, so equal values give equal tokens (joins, counts, dedup still
  work) but the value cannot be recovered; without the key a token cannot even
  be checked against a guess.
- `encrypt`: `enc:v1:<base64url>`, AES-SIV (RFC 5297, deterministic AEAD) with the
  field name as associated data. Reversible with the key (`decrypt` below);
  deterministic, so equal values of one field give equal ciphertexts (the same
  trade-off as tokens: joinable, and a replay writes identical bytes).

Values stay strings, so the Avro schema and the Cassandra table are unchanged.
Tokenize and encrypt keys are derived with HKDF from one master key: 32 random
bytes, base64, in FIELD_PROTECTION_KEY or in the file FIELD_PROTECTION_KEY_FILE
(outside the repository; make one with `new-key`). A field list without a key
is an error before anything is fetched.

Usage:
    python -m producer.protect new-key ~/.config/userstream/field.key     # writes a fresh key (mode 0600)
    FIELD_PROTECTION_KEY_FILE=~/.config/userstream/field.key \\
        python -m producer.protect decrypt --id 7a0eed16-9430-4d68-901f-c0d4c1c3bf00
                                        # reads the user's row from Cassandra, prints its fields decrypted (JSON)
    python -m producer.protect decrypt --field email --value enc:v1:...   # one value (e.g. from a dead letter)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import REPO_ROOT, Settings, load_settings
from producer.transform import SOURCE_PATHS, User, describe_value

TOKEN_PREFIX = "tok:v1:"
CIPHER_PREFIX = "enc:v1:"
KEY_BYTES = 32
PROTECTABLE = tuple(f.name for f in dataclasses.fields(User)
                    if f.name in SOURCE_PATHS and f.name != "id" and f.type in ("str", "str | None"))


class ProtectionError(ValueError):
    """Protection is misconfigured (fields, key) or a value cannot be revealed; the message says what to do."""


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), altchars=b"-_" if ("-" in text or "_" in text) else None, validate=True)
    except (binascii.Error, ValueError):
        raise ProtectionError(f"{where} is not base64; make a key with `python -m producer.protect new-key PATH`") from None
    if len(key) < KEY_BYTES:
        raise ProtectionError(f"{where} holds {len(key)} bytes; a key needs at least {KEY_BYTES} "
                              "(`python -m producer.protect new-key PATH` makes one)")
    return key


def _outside_repository(path: Path, settings: Settings) -> Path:
    """Keys never live in the repository (the git-ignored stack home excepted, for the dev stack)."""
    resolved = path.expanduser().resolve()
    if resolved.is_relative_to(REPO_ROOT) and not resolved.is_relative_to(Path(settings.stack_home).resolve()):
        raise ProtectionError(f"{path} is inside the repository ({REPO_ROOT}); keep protection keys outside it")
    return resolved


def load_key(settings: Settings) -> bytes:
    """The master key from FIELD_PROTECTION_KEY or FIELD_PROTECTION_KEY_FILE (exactly one of them)."""
    if settings.field_protection_key and settings.field_protection_key_file:
        raise ProtectionError("both FIELD_PROTECTION_KEY and FIELD_PROTECTION_KEY_FILE are set; set only one")
    if settings.field_protection_key:
        return _decode_key(settings.field_protection_key.get_secret_value(), "FIELD_PROTECTION_KEY")
    if settings.field_protection_key_file:
        path = _outside_repository(Path(settings.field_protection_key_file), settings)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtectionError(f"cannot read FIELD_PROTECTION_KEY_FILE={path}: {exc}") from exc
        return _decode_key(text, f"FIELD_PROTECTION_KEY_FILE={path}")
    raise ProtectionError(
        "no field protection key: set FIELD_PROTECTION_KEY_FILE to a key file made with "
        "`python -m producer.protect new-key PATH` (or FIELD_PROTECTION_KEY to its base64 text); "
        "keys never go in the repository")


def parse_fields(text: str) -> tuple[str, ...]:
    """'email, phone' -> ('email', 'phone'); an unknown or unprotectable field is an error listing the choices."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    wrong = [name for name in names if name not in PROTECTABLE]
    if wrong:
        raise ProtectionError(f"PROTECTED_FIELDS: cannot protect {', '.join(wrong)}; "
                              f"choose among {', '.join(PROTECTABLE)} (`id` is the key and stays clear)")
    return names


def _derive(master: bytes, purpose: str, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=f"userstream/field-protection/{purpose}/v1".encode()).derive(master)


def _unpadded_b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class FieldProtector:
    """Protects the configured fields of Users, raw records and reasons; reveals encrypted values."""

    def __init__(self, fields: tuple[str, ...], mode: str, master_key: bytes) -> None:
        if mode not in ("tokenize", "encrypt"):
            raise ProtectionError(f"FIELD_PROTECTION_MODE={mode!r}: use tokenize or encrypt")
        self.fields = fields
        self.mode = mode
        self._token_key = _derive(master_key, "tokenize", 32)
        self._cipher = AESSIV(_derive(master_key, "encrypt", 64))  # AES-256-SIV

    @classmethod
    def from_settings(cls, settings: Settings) -> FieldProtector | None:
        """The configured protector, or None when PROTECTED_FIELDS is empty; bad config raises ProtectionError."""
        fields = parse_fields(settings.protected_fields)
        if not fields:
            return None
        return cls(fields, settings.field_protection_mode, load_key(settings))

    # --- one value ---------------------------------------------------------
    def tokenize(self, value: str) -> str:
        return TOKEN_PREFIX + hmac.new(self._token_key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def encrypt(self, field: str, value: str) -> str:
        return CIPHER_PREFIX + _unpadded_b64(self._cipher.encrypt(value.encode("utf-8"), [field.encode()]))

    def protect_value(self, field: str, value: str) -> str:
        return self.tokenize(value) if self.mode == "tokenize" else self.encrypt(field, value)

    def reveal(self, field: str, value: str) -> str:
        """The clear text of an `enc:v1:` value of `field`; a token or a wrong key is a ProtectionError."""
        if value.startswith(TOKEN_PREFIX):
            raise ProtectionError(f"{field} is a token (tokenize mode): a keyed hash, it cannot be decrypted")
        if not value.startswith(CIPHER_PREFIX):
            raise ProtectionError(f"{field} is not an encrypted value (no {CIPHER_PREFIX} prefix)")
        body = value[len(CIPHER_PREFIX):]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._cipher.decrypt(data, [field.encode()]).decode("utf-8")
        except (binascii.Error, ValueError, InvalidTag):
            raise ProtectionError(f"cannot decrypt {field}: wrong key, or the value was not written for "
                                  f"field {field!r}") from None

    # --- records -----------------------------------------------------------
    def protect_user(self, user: User) -> User:
        """The user with each protected field replaced (None stays None: a missing id is not a secret)."""
        changes = {name: self.protect_value(name, getattr(user, name))
                   for name in self.fields if getattr(user, name) is not None}
        return dataclasses.replace(user, **changes)

    def protect_raw(self, raw: Any) -> Any:
        """A copy of an API record with each protected field's value protected, for dead letters.

        A value of the wrong type is protected as its JSON text; where the path is
        broken (`id` is a string, not an object), the node that breaks it is protected.
        """
        for name in self.fields:
            raw = self._protect_path(raw, SOURCE_PATHS[name].split("."), name)
        return raw

    def _protect_path(self, node: Any, keys: list[str], field: str) -> Any:
        if not keys or not isinstance(node, dict):
            if node is None:
                return None
            return self.protect_value(field, node if isinstance(node, str) else json.dumps(node, ensure_ascii=False))
        if keys[0] not in node:
            return node
        return {**node, keys[0]: self._protect_path(node[keys[0]], keys[1:], field)}

    def scrub_reason(self, reason: str, raw: Any) -> str:
        """A transform reason with any protected value withheld: reasons render values only with
        `describe_value`, so every node along a protected field's path is looked for in that form."""
        for name in self.fields:
            node = raw
            for key in [None, *SOURCE_PATHS[name].split(".")]:
                if key is not None:
                    if not isinstance(node, dict) or key not in node:
                        break
                    node = node[key]
                if node is not None:
                    reason = reason.replace(describe_value(node), "<protected>")
        return reason


def protect_result(protector: FieldProtector | None, raw: Any, result: Any) -> tuple[Any, Any]:
    """(raw, transform result) with protection applied to both; unchanged when protection is off."""
    if protector is None:
        return raw, result
    if isinstance(result, User):
        return protector.protect_raw(raw), protector.protect_user(result)
    return protector.protect_raw(raw), dataclasses.replace(result, reason=protector.scrub_reason(result.reason, raw))


# --- The command: new-key, decrypt -----------------------------------------------

def new_key(path: Path, settings: Settings) -> Path:
    """Write a fresh random key (base64) to `path` with mode 0600; never overwrite one."""
    path = _outside_repository(path, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ProtectionError(f"{path} exists; a key is never overwritten (data protected with it would be lost)") from None
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n")
    return path


def read_row(settings: Settings, user_id: str) -> dict[str, Any]:
    """The user's Cassandra row as a dict (column -> value); a missing row is a ProtectionError."""
    from core.cassandra_schema import connect, validate_identifier

    table = (f"{validate_identifier(settings.cassandra_keyspace, 'CASSANDRA_KEYSPACE')}."
             f"{validate_identifier(settings.cassandra_table, 'CASSANDRA_TABLE')}")
    with connect(settings) as session:
        row = session.execute(f"SELECT * FROM {table} WHERE id = %s", (uuid.UUID(user_id),)).one()
    if row is None:
        raise ProtectionError(f"no user with id {user_id} in {table}")
    return row._asdict()


def decrypt_row(protector: FieldProtector, row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """{id, field: clear text} for the encrypted fields of a row (`fields`, or every `enc:v1:` one)."""
    names = fields or tuple(name for name, value in row.items()
                            if isinstance(value, str) and value.startswith(CIPHER_PREFIX))
    return {"id": str(row["id"]), **{name: protector.reveal(name, row[name]) for name in names}}


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer.protect", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("new-key", help="write a fresh key file (mode 0600)")
    make.add_argument("path", type=Path)
    reveal = commands.add_parser("decrypt", help="print a user's encrypted fields in clear (needs the key)")
    which = reveal.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="the user's id (login.uuid): read the row from Cassandra")
    which.add_argument("--value", help="one enc:v1: value, e.g. from a dead letter (with --field)")
    reveal.add_argument("--field", help="the field the --value belongs to")
    reveal.add_argument("--fields", default="", help="comma list of fields to decrypt (default: every encrypted one)")
    args = parser.parse_args(argv)
    settings = settings or load_settings()
    try:
        if args.command == "new-key":
            print(f"wrote a new key to {new_key(args.path, settings)}; use it with FIELD_PROTECTION_KEY_FILE={args.path}")
            return 0
        protector = FieldProtector(parse_fields(args.fields), "encrypt", load_key(settings))
        if args.value is not None:
            if not args.field:
                parser.error("--value needs --field (the field name is part of the ciphertext)")
            print(json.dumps({args.field: protector.reveal(args.field, args.value)}, ensure_ascii=False))
        else:
            print(json.dumps(decrypt_row(protector, read_row(settings, args.id), protector.fields), ensure_ascii=False))
    except (ProtectionError, ValueError, RuntimeError) as exc:
        print(f"protect: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
