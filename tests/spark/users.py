"""Test users and their Avro encodings, built here so the Spark tests do not depend on producer/.

Names in several scripts, a null national id every third user, millisecond
timestamps: the things that break a pipeline quietly.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import struct
import uuid
from pathlib import Path

import fastavro

from core.settings import REPO_ROOT

SCHEMA_PATH: Path = REPO_ROOT / "schemas" / "user.avsc"
V1: dict = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

NAMES = [
    ("Mrs", "Анна", "Иванова", "RU"),
    ("Ms", "مهسا", "رضایی", "IR"),
    ("Mr", "José", "Núñez", "ES"),
    ("Ms", "美咲", "佐藤", "JP"),
    ("Mademoiselle", "Zoë", "O'Brien-Łukasiewicz", "CH"),
    ("Mr", "Ἀλέξανδρος", "Παπαδόπουλος", "GR"),
]
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


def v2_schema(field: str = "favourite_colour", default: str = "unknown") -> dict:
    """v1 plus one optional string field with a default: a BACKWARD-compatible evolution."""
    schema = copy.deepcopy(V1)
    schema["fields"].append({"name": field, "type": "string", "default": default, "doc": "Added in v2 (test)."})
    return schema


def make_user(i: int, run: str = "") -> dict:
    """The i-th test user; `run` makes ids unique per test."""
    title, first, last, nat = NAMES[i % len(NAMES)]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"userstream-test/{run}/{i}")),
        "username": f"{first.lower()}{i}",
        "gender": "female" if i % 2 else "male",
        "title": title,
        "first_name": first,
        "last_name": last,
        "email": f"user{i}@example.com",
        "phone": f"(0{i % 10}) 555-{i:04d}",
        "cell": f"+98 912 {i:07d}",
        "date_of_birth": EPOCH - dt.timedelta(days=9000 + i, milliseconds=i * 7),
        "registered_at": EPOCH + dt.timedelta(hours=i, milliseconds=123),
        "street_number": 1 + i,
        "street_name": f"{last} street",
        "city": f"{first}-stadt",
        "state": "Ostrobothnia",
        "country": nat,
        "postcode": f"AB{i} 1CD" if i % 2 else str(10000 + i),
        "latitude": -89.5 + (i % 179),
        "longitude": 179.25 - (i % 359),
        "timezone_offset": "+9:30",
        "timezone_description": "Adelaide, Darwin",
        "national_id_name": "" if i % 3 == 0 else "SSN",
        "national_id_value": None if i % 3 == 0 else f"{i:03d}-45-6789",
        "picture_large": f"https://example.com/l/{i}.jpg",
        "picture_medium": f"https://example.com/m/{i}.jpg",
        "picture_thumbnail": f"https://example.com/t/{i}.jpg",
        "nationality": nat,
        "ingested_at": EPOCH + dt.timedelta(days=2000, milliseconds=i),
    }


def avro_bytes(schema: dict, record: dict) -> bytes:
    """Schemaless Avro binary (what follows the 5-byte header)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


def framed(schema_id: int, payload: bytes, magic: int = 0) -> bytes:
    """Confluent wire format by hand, for poison records the real serializer would never write."""
    return bytes([magic]) + struct.pack(">I", schema_id) + payload
