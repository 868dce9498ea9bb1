"""The stand-in's users: one randomuser.me v1.4 result per call, a pure function of seed, page and size.

`generate` is the replay guarantee (same seed + page + results + nat = the
same users, byte for byte: ages are computed against a fixed reference date),
and `malformed` corrupts a deterministic fraction of them the ways a real
upstream has been seen to (missing fields, wrong types, unparseable values),
for the producer's dead-letter tests. The HTTP side is standin/randomuser.py.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import datetime, timezone
from typing import Any

from standin.nationalities import (
    ADJECTIVES,
    ANIMALS,
    FRENCH_TITLES,
    NATIONALITIES,
    PASSWORDS,
    SALT_CHARS,
    TIMEZONES,
    UPPER,
)

# Ages are computed against this instant, not "now", so a seed replays byte for byte.
REFERENCE_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
_REFERENCE_MS = int(REFERENCE_DATE.timestamp() * 1000)
_MS_PER_YEAR = 365.2425 * 24 * 3600 * 1000
_DOB_RANGE_MS = (int(datetime(1945, 1, 1, tzinfo=timezone.utc).timestamp() * 1000),
                 int(datetime(2006, 12, 31, tzinfo=timezone.utc).timestamp() * 1000))
_REGISTERED_RANGE_MS = (int(datetime(2002, 1, 1, tzinfo=timezone.utc).timestamp() * 1000),
                        int(datetime(2024, 12, 1, tzinfo=timezone.utc).timestamp() * 1000))
FIELDS = ("gender", "name", "location", "email", "login", "dob", "registered",
          "phone", "cell", "id", "picture", "nat")


def _fill(rng: random.Random, pattern: str) -> str:
    """Expand a format: '#' becomes a digit, '@' an upper-case letter (ids, phones, postcodes)."""
    return "".join(
        str(rng.randrange(10)) if ch == "#" else rng.choice(UPPER) if ch == "@" else ch for ch in pattern
    )


def _iso_millis(ms: int) -> str:
    """randomuser.me's timestamp format: ISO 8601, milliseconds, 'Z'."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _dated(rng: random.Random, lo_hi: tuple[int, int]) -> dict[str, Any]:
    """A {"date", "age"} pair; age in whole years before REFERENCE_DATE."""
    ms = rng.randrange(*lo_hi)
    return {"date": _iso_millis(ms), "age": int((_REFERENCE_MS - ms) // _MS_PER_YEAR)}


def make_user(rng: random.Random, nat: str) -> dict[str, Any]:
    """One user of nationality `nat`, shaped exactly like a randomuser.me v1.4 result."""
    data = NATIONALITIES[nat]
    gender = "male" if rng.random() < 0.5 else "female"
    first, first_latin = rng.choice(data[gender])
    last, last_latin = rng.choice(data["last"])
    if nat in FRENCH_TITLES:
        title = "Monsieur" if gender == "male" else rng.choice(("Madame", "Mademoiselle"))
    else:
        title = "Mr" if gender == "male" else rng.choice(("Ms", "Miss", "Mrs", "Madame"))
    city, state = rng.choice(data["places"])
    postcode_spec = data["postcode"]
    postcode: int | str = rng.randint(*postcode_spec) if isinstance(postcode_spec, tuple) else _fill(rng, postcode_spec)
    offset, description = rng.choice(TIMEZONES)
    id_spec = data["id"]
    national_id = {"name": "", "value": None} if id_spec is None else {"name": id_spec[0], "value": _fill(rng, id_spec[1])}
    password = rng.choice(PASSWORDS) if rng.random() < 0.8 else f"{rng.choice(PASSWORDS)}{rng.randint(1, 999)}"
    salt = "".join(rng.choice(SALT_CHARS) for _ in range(8))
    salted = (password + salt).encode()
    picture_no = rng.randrange(100)
    folder = "men" if gender == "male" else "women"
    return {
        "gender": gender,
        "name": {"title": title, "first": first, "last": last},
        "location": {
            "street": {"number": rng.randint(1, 9999), "name": rng.choice(data["streets"])},
            "city": city,
            "state": state,
            "country": data["country"],
            "postcode": postcode,
            "coordinates": {"latitude": f"{rng.uniform(-90, 90):.4f}", "longitude": f"{rng.uniform(-180, 180):.4f}"},
            "timezone": {"offset": offset, "description": description},
        },
        "email": f"{first_latin}.{last_latin}@example.com".lower().replace(" ", ""),
        "login": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "username": f"{rng.choice(ADJECTIVES)}{rng.choice(ANIMALS)}{rng.randint(100, 999)}",
            "password": password,
            "salt": salt,
            "md5": hashlib.md5(salted).hexdigest(),
            "sha1": hashlib.sha1(salted).hexdigest(),
            "sha256": hashlib.sha256(salted).hexdigest(),
        },
        "dob": _dated(rng, _DOB_RANGE_MS),
        "registered": _dated(rng, _REGISTERED_RANGE_MS),
        "phone": _fill(rng, data["phone"]),
        "cell": _fill(rng, data["cell"]),
        "id": national_id,
        "picture": {
            "large": f"https://randomuser.me/api/portraits/{folder}/{picture_no}.jpg",
            "medium": f"https://randomuser.me/api/portraits/med/{folder}/{picture_no}.jpg",
            "thumbnail": f"https://randomuser.me/api/portraits/thumb/{folder}/{picture_no}.jpg",
        },
        "nat": nat,
    }


# Each corruption is something a real upstream has been seen to do: drop a
# field, change a type, send an unparseable value. The producer must route all
# of them to the dead-letter topic, never crash and never publish them.
def _drop(path: tuple[str, ...]):
    def corrupt(user: dict[str, Any], rng: random.Random) -> None:
        node = user
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return corrupt


def _set(path: tuple[str, ...], value: Any):
    def corrupt(user: dict[str, Any], rng: random.Random) -> None:
        node = user
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return corrupt


CORRUPTIONS = (
    _drop(("login",)),
    _drop(("email",)),
    _drop(("location", "coordinates")),
    _drop(("dob", "date")),
    _set(("location", "coordinates", "latitude"), "not-a-number"),
    _set(("location", "coordinates", "longitude"), "512.5"),
    _set(("dob", "date"), "20th of July"),
    _set(("location", "street", "number"), "12b"),
    _set(("name",), None),
    _set(("email",), 42),
    _set(("login", "uuid"), "not-a-uuid"),
    _set(("location", "postcode"), None),
    _set(("registered",), "2010-01-01"),
)


def generate(seed: str, page: int, results: int, nats: tuple[str, ...], malformed: float = 0.0) -> list[dict]:
    """The users of one page: a pure function of its arguments (that is the replay guarantee)."""
    rng = random.Random(f"{seed}|{page}|{results}|{','.join(nats)}")
    users = [make_user(rng, rng.choice(nats)) for _ in range(results)]
    if malformed > 0:
        # A separate stream, so the corruption rate does not change the users themselves.
        bad_rng = random.Random(f"{seed}|{page}|{results}|{','.join(nats)}|malformed")
        for user in users:
            if bad_rng.random() < malformed:
                bad_rng.choice(CORRUPTIONS)(user, bad_rng)
    return users
