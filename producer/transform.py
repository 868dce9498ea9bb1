"""Transform stage: one raw randomuser.me JSON record -> a validated `User`, or a reason it is not one.

The API's JSON is untrusted input. `transform()` never raises for any JSON
value: it returns a `User` or a `Rejected(reason)`, and the caller publishes
the first and dead-letters the second. Login secrets (password, salt, hashes)
are read past, never copied (the source already dropped them: producer.source).
Text longer than the bounds, or dates outside them (producer.bounds), are
rejected with a reason naming the field and the limit.

`User`, `Rejected` and the mapping between a User and the Avro record live in
producer.user (re-exported here).

Use:
    from producer.transform import transform, user_to_avro, Rejected
    result = transform(raw_json_dict, ingested_at=datetime.now(timezone.utc))
    if isinstance(result, Rejected):
        print(result.reason)           # names the field, e.g. "location.coordinates.latitude: ..."
    else:
        record = user_to_avro(result)  # the dict AvroSerializer writes
"""

from __future__ import annotations

import math
import operator
import re
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable

from producer.bounds import DEFAULT_BOUNDS, Bounds
from producer.user import (  # noqa: F401  (re-exported: the stage's callers use them)
    USER_FIELDS, Rejected, TransformResult, User, avro_fields, avro_to_user, user_from_fields, user_to_avro)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class _Invalid(Exception):
    """Internal signal: the record is invalid; carries the reason. Never escapes `transform()`."""


def describe_value(value: Any) -> str:
    """A short rendering of a bad value for a dead-letter reason: the only way a reason shows a value,
    so producer.protect can withhold protected values from reasons by rendering them the same way."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=None)
def _keys(path: str) -> tuple[str, ...]:
    """'location.street.name' -> its keys, split once per path (this runs for every field of every record)."""
    return tuple(path.split("."))


def _get(record: Any, path: str) -> Any:
    """Walk a dotted path through nested objects; name the first missing piece."""
    node = record
    keys = _keys(path)
    for depth, key in enumerate(keys):
        if not isinstance(node, dict):
            where = ".".join(keys[:depth]) or "record"
            raise _Invalid(f"{where}: expected an object, got {type(node).__name__} {describe_value(node)}")
        try:
            node = node[key]
        except KeyError:
            raise _Invalid(f"{'.'.join(keys[: depth + 1])}: missing") from None
    return node


def _text(value: Any, path: str, bounds: Bounds, *, allow_empty: bool = True) -> str:
    """A string Avro can encode (UTF-8 clean: JSON may carry lone surrogates, which Avro rejects), within bounds."""
    if not isinstance(value, str):
        raise _Invalid(f"{path}: expected a string, got {type(value).__name__} {describe_value(value)}")
    if not allow_empty and not value.strip():
        raise _Invalid(f"{path}: empty")
    if len(value) > bounds.max_string_length:
        raise _Invalid(f"{path}: {bounds.text_problem(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{path}: not valid UTF-8 text (lone surrogate)") from None
    return value


def _str_field(record: Any, path: str, bounds: Bounds) -> str:
    return _text(_get(record, path), path, bounds)


def _required_str(record: Any, path: str, bounds: Bounds) -> str:
    return _text(_get(record, path), path, bounds, allow_empty=False)


def _uuid(record: Any, path: str, bounds: Bounds) -> str:
    """The natural key must be a real UUID: it is the Kafka key and the Cassandra primary key."""
    raw = _str_field(record, path, bounds)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _Invalid(f"{path}: not a UUID: {describe_value(raw)}") from None


def _int32(record: Any, path: str, bounds: Bounds) -> int:
    """Avro `int` is 32-bit; bool is an int in Python but never a street number."""
    value = _get(record, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{path}: expected an integer, got {type(value).__name__} {describe_value(value)}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise _Invalid(f"{path}: {value} does not fit a 32-bit int")
    return value


def _int_or_text(value: Any, path: str, bounds: Bounds, *, allow_empty: bool) -> str:
    """Accept a string or an integer (never bool) and return text."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid(f"{path}: expected a string or an integer, got {type(value).__name__} {describe_value(value)}")
    if isinstance(value, int):
        try:
            value = str(value)
        except ValueError:  # more digits than Python will print
            raise _Invalid(f"{path}: integer too large") from None
    return _text(value, path, bounds, allow_empty=allow_empty)


def _postcode(record: Any, path: str, bounds: Bounds) -> str:
    """Int for most nationalities, string for GB, CA, NL...: always text downstream."""
    return _int_or_text(_get(record, path), path, bounds, allow_empty=False)


def _millis(moment: datetime) -> datetime:
    """Avro timestamp-millis keeps milliseconds; truncate now so a User survives the Avro round trip unchanged."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _coordinate(record: Any, path: str, limit: float) -> float:
    """The source sends coordinates as strings; accept numbers too; reject NaN and out-of-range."""
    value = _get(record, path)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"{path}: expected a number or numeric string, got {type(value).__name__} {describe_value(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _Invalid(f"{path}: not a number: {describe_value(value)}") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise _Invalid(f"{path}: {describe_value(value)} is outside [-{limit:g}, {limit:g}]")
    return number


def _latitude(record: Any, path: str, bounds: Bounds) -> float:
    return _coordinate(record, path, 90.0)


def _longitude(record: Any, path: str, bounds: Bounds) -> float:
    return _coordinate(record, path, 180.0)


def _timestamp(record: Any, path: str, bounds: Bounds) -> datetime:
    """ISO 8601 ('...Z' or an offset) -> an aware UTC datetime within bounds; a naive one would be guessed, so refuse it."""
    raw = _str_field(record, path, bounds)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _Invalid(f"{path}: not an ISO 8601 date-time: {describe_value(raw)}") from None
    if parsed.tzinfo is None:
        raise _Invalid(f"{path}: no time zone in {describe_value(raw)}")
    try:
        moment = _millis(parsed.astimezone(timezone.utc))
    except OverflowError:
        raise _Invalid(f"{path}: {describe_value(raw)} is out of range") from None
    outside = bounds.date_problem(moment)
    if outside:
        raise _Invalid(f"{path}: {outside}")
    return moment


def _national_id_name(record: Any, path: str, bounds: Bounds) -> str:
    """id.name may be empty or null (IR, NZ, TR, UA): both mean "none", not an error."""
    name = _get(record, path)
    return "" if name is None else _text(name, path, bounds)


def _national_id_value(record: Any, path: str, bounds: Bounds) -> str | None:
    """id.value is null for nationalities without one (IR, NZ, TR, UA): kept as None."""
    value = _get(record, path)
    return None if value is None else _int_or_text(value, path, bounds, allow_empty=True)


# The whole mapping, in the order fields are checked (the first bad one is the reason):
# User field <- its path in the API's JSON, and how that value is read.
FIELDS: tuple[tuple[str, str, Callable[[Any, str, Bounds], Any]], ...] = (
    ("national_id_name", "id.name", _national_id_name),
    ("national_id_value", "id.value", _national_id_value),
    ("id", "login.uuid", _uuid),
    ("username", "login.username", _required_str),
    ("gender", "gender", _str_field),
    ("title", "name.title", _str_field),
    ("first_name", "name.first", _str_field),
    ("last_name", "name.last", _str_field),
    ("email", "email", _required_str),
    ("phone", "phone", _str_field),
    ("cell", "cell", _str_field),
    ("date_of_birth", "dob.date", _timestamp),
    ("registered_at", "registered.date", _timestamp),
    ("street_number", "location.street.number", _int32),
    ("street_name", "location.street.name", _str_field),
    ("city", "location.city", _str_field),
    ("state", "location.state", _str_field),
    ("country", "location.country", _str_field),
    ("postcode", "location.postcode", _postcode),
    ("latitude", "location.coordinates.latitude", _latitude),
    ("longitude", "location.coordinates.longitude", _longitude),
    ("timezone_offset", "location.timezone.offset", _str_field),
    ("timezone_description", "location.timezone.description", _str_field),
    ("picture_large", "picture.large", _str_field),
    ("picture_medium", "picture.medium", _str_field),
    ("picture_thumbnail", "picture.thumbnail", _str_field),
    ("nationality", "nat", _required_str),
)
SOURCE_PATHS = {name: path for name, path, _ in FIELDS}  # User field -> dotted path in the API's JSON


def _build(raw: Any, ingested_at: datetime, bounds: Bounds) -> User:
    """The mapping itself; raises `_Invalid` naming the first bad field."""
    if not isinstance(raw, dict):
        raise _Invalid(f"record: expected an object, got {type(raw).__name__} {describe_value(raw)}")
    return User(**{name: read(raw, path, bounds) for name, path, read in FIELDS}, ingested_at=ingested_at)


# --- The fast path -------------------------------------------------------------
# transform() runs once per user in the producer's hot loop, where the careful
# path above (a path walk and two or three calls per field, ~130 Python calls a
# record) cost as much as Avro serialization and produce() together. So a record
# is first read by `_fast_build`: straight-line code that accepts only what the
# careful path accepts and builds the same User. Whenever it is not sure (a
# missing key, any type but exactly dict/str/int/float, a bound crossed, a UUID
# not in canonical form, ...) it gives up with None and the careful path decides
# and names the reason. tests/producer/test_transform_fast.py holds the two paths
# to the same answers on generated and damaged records.

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STR_ONLY, _DICT_ONLY = {str}, {dict}


def _fast_moment(text: str, bounds: Bounds) -> datetime | None:
    """`_timestamp` for a string already checked as text; None where it would not accept it."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        return None
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond % 1000:  # the API sends milliseconds: most dates need no truncation
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment if bounds.min_date <= moment <= bounds.max_date else None


def _fast_coordinate(value: Any, limit: float) -> float | None:
    """`_coordinate` for the exact types JSON gives; NaN fails the range test, so it is None too."""
    kind = type(value)
    if kind is not str and kind is not float and kind is not int:
        return None
    number = float(value)
    return number if -limit <= number <= limit else None


# The text the careful path checks as text (date strings included, before they are parsed).
_FAST_TEXT_FIELDS = ("national_id_name", "id", "username", "gender", "title", "first_name", "last_name", "email",
                     "phone", "cell", "date_of_birth", "registered_at", "street_name", "city", "state", "country",
                     "postcode", "timezone_offset", "timezone_description", "picture_large", "picture_medium",
                     "picture_thumbnail", "nationality")
_fast_texts = operator.itemgetter(*_FAST_TEXT_FIELDS)


def _fast_build(raw: Any, ingested_at: datetime, bounds: Bounds) -> User | None:
    """The User the careful path would build from `raw`, or None to let the careful path decide."""
    try:
        ident, login, name, location, picture = raw["id"], raw["login"], raw["name"], raw["location"], raw["picture"]
        street, coordinates, zone = location["street"], location["coordinates"], location["timezone"]
        if type(raw) is not dict or {*map(type, (ident, login, name, location, picture, street, coordinates, zone,
                                                   raw["dob"], raw["registered"]))} != _DICT_ONLY:
            return None
        id_name, id_value, postcode = ident["name"], ident["value"], location["postcode"]
        values = {
            "id": login["uuid"], "username": login["username"], "gender": raw["gender"], "title": name["title"],
            "first_name": name["first"], "last_name": name["last"], "email": raw["email"], "phone": raw["phone"],
            "cell": raw["cell"], "date_of_birth": raw["dob"]["date"], "registered_at": raw["registered"]["date"],
            "street_number": street["number"], "street_name": street["name"], "city": location["city"],
            "state": location["state"], "country": location["country"],
            "postcode": str(postcode) if type(postcode) is int else postcode,
            "latitude": coordinates["latitude"], "longitude": coordinates["longitude"],
            "timezone_offset": zone["offset"], "timezone_description": zone["description"],
            "national_id_name": "" if id_name is None else id_name,
            "national_id_value": str(id_value) if type(id_value) is int else id_value,
            "picture_large": picture["large"], "picture_medium": picture["medium"],
            "picture_thumbnail": picture["thumbnail"], "nationality": raw["nat"], "ingested_at": ingested_at,
        }
        texts = _fast_texts(values)
        if values["national_id_value"] is not None:
            texts += (values["national_id_value"],)
        if {*map(type, texts)} != _STR_ONLY:
            return None
        joined = "".join(texts)
        # No field is longer than all of them together, so the per-field lengths matter only past the limit.
        if len(joined) > bounds.max_string_length and max(map(len, texts)) > bounds.max_string_length:
            return None
        joined.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError (a ValueError)
        number = values["street_number"]
        if not (values["username"].strip() and values["email"].strip() and values["nationality"].strip()
                and values["postcode"].strip() and type(number) is int and INT32_MIN <= number <= INT32_MAX
                and _CANONICAL_UUID.fullmatch(values["id"])):  # then str(uuid.UUID(id)) == id, as the careful path
            return None
        values["date_of_birth"] = _fast_moment(values["date_of_birth"], bounds)
        values["registered_at"] = _fast_moment(values["registered_at"], bounds)
        values["latitude"] = _fast_coordinate(values["latitude"], 90.0)
        values["longitude"] = _fast_coordinate(values["longitude"], 180.0)
        if None in (values["date_of_birth"], values["registered_at"], values["latitude"], values["longitude"]):
            return None
        return user_from_fields(values)
    except (KeyError, TypeError, ValueError, OverflowError):  # anything off: the careful path names it
        return None


@lru_cache(maxsize=4)
def _utc_millis(ingested_at: datetime) -> datetime:
    """`ingested_at` in UTC to the millisecond; cached because a whole page shares one timestamp."""
    if ingested_at.tzinfo is None:
        # A programming error in the caller, not bad data: fail loudly.
        raise ValueError("ingested_at must be timezone-aware (use datetime.now(timezone.utc))")
    return _millis(ingested_at.astimezone(timezone.utc))


def transform(raw: Any, ingested_at: datetime, bounds: Bounds = DEFAULT_BOUNDS) -> TransformResult:
    """Map one API record to a `User`, or say why not. Never raises for JSON input.

    `ingested_at` is passed in (not read from the clock here) so a batch shares
    one timestamp and tests are deterministic; it must be timezone-aware.
    `bounds` caps text lengths and date ranges (see producer.bounds).
    """
    ingested_at = _utc_millis(ingested_at)
    user = _fast_build(raw, ingested_at, bounds)
    if user is not None:
        return user
    try:
        return _build(raw, ingested_at, bounds)
    except _Invalid as invalid:
        return Rejected(str(invalid))
    except RecursionError:
        return Rejected("record: nested too deeply to inspect")
