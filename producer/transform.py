"""Transform stage: one raw randomuser.me JSON record -> a validated `User`, or a reason it is not one.

The API's JSON is untrusted input. `transform()` never raises for any JSON
value: it returns a `User` or a `Rejected(reason)`, and the caller publishes
the first and dead-letters the second. Login secrets (password, salt, hashes)
are read past, never copied.

This module is also the only place the mapping between `User` and the Avro
record (`schemas/user.avsc`) lives: `user_to_avro()` and `avro_to_user()`.

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
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, Union

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class User:
    """One person, flattened exactly like the Avro record `io.userstream.User`."""

    id: str
    username: str
    gender: str
    title: str
    first_name: str
    last_name: str
    email: str
    phone: str
    cell: str
    date_of_birth: datetime
    registered_at: datetime
    street_number: int
    street_name: str
    city: str
    state: str
    country: str
    postcode: str
    latitude: float
    longitude: float
    timezone_offset: str
    timezone_description: str
    national_id_name: str
    national_id_value: str | None
    picture_large: str
    picture_medium: str
    picture_thumbnail: str
    nationality: str
    ingested_at: datetime


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot become a `User`; `reason` names the field and what was wrong."""

    reason: str


TransformResult = Union[User, Rejected]
USER_FIELDS = tuple(f.name for f in fields(User))


class _Invalid(Exception):
    """Internal signal: the record is invalid; carries the reason. Never escapes `transform()`."""


def _describe(value: Any) -> str:
    """A short, safe rendering of a bad value for a dead-letter reason."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(record: Any, path: str) -> Any:
    """Walk a dotted path through nested objects; name the first missing piece."""
    node = record
    walked = []
    for key in path.split("."):
        if not isinstance(node, dict):
            where = ".".join(walked) or "record"
            raise _Invalid(f"{where}: expected an object, got {type(node).__name__} {_describe(node)}")
        walked.append(key)
        if key not in node:
            raise _Invalid(f"{'.'.join(walked)}: missing")
        node = node[key]
    return node


def _text(value: Any, path: str, *, allow_empty: bool = True) -> str:
    """A string Avro can encode: UTF-8 clean (JSON may carry lone surrogates, which Avro rejects)."""
    if not isinstance(value, str):
        raise _Invalid(f"{path}: expected a string, got {type(value).__name__} {_describe(value)}")
    if not allow_empty and not value.strip():
        raise _Invalid(f"{path}: empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"{path}: not valid UTF-8 text (lone surrogate)") from None
    return value


def _str_field(record: Any, path: str, *, allow_empty: bool = True) -> str:
    return _text(_get(record, path), path, allow_empty=allow_empty)


def _uuid(record: Any, path: str) -> str:
    """The natural key must be a real UUID: it is the Kafka key and the Cassandra primary key."""
    raw = _str_field(record, path)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise _Invalid(f"{path}: not a UUID: {_describe(raw)}") from None


def _int32(record: Any, path: str) -> int:
    """Avro `int` is 32-bit; bool is an int in Python but never a street number."""
    value = _get(record, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{path}: expected an integer, got {type(value).__name__} {_describe(value)}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise _Invalid(f"{path}: {value} does not fit a 32-bit int")
    return value


def _int_or_text(value: Any, path: str, *, allow_empty: bool) -> str:
    """Accept a string or an integer (never bool) and return text."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Invalid(f"{path}: expected a string or an integer, got {type(value).__name__} {_describe(value)}")
    if isinstance(value, int):
        try:
            value = str(value)
        except ValueError:  # more digits than Python will print
            raise _Invalid(f"{path}: integer too large") from None
    return _text(value, path, allow_empty=allow_empty)


def _postcode(record: Any, path: str) -> str:
    """Int for most nationalities, string for GB, CA, NL...: always text downstream."""
    return _int_or_text(_get(record, path), path, allow_empty=False)


def _millis(moment: datetime) -> datetime:
    """Avro timestamp-millis keeps milliseconds; truncate now so a User survives the Avro round trip unchanged."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _coordinate(record: Any, path: str, limit: float) -> float:
    """The source sends coordinates as strings; accept numbers too; reject NaN and out-of-range."""
    value = _get(record, path)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid(f"{path}: expected a number or numeric string, got {type(value).__name__} {_describe(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _Invalid(f"{path}: not a number: {_describe(value)}") from None
    if not math.isfinite(number) or not -limit <= number <= limit:
        raise _Invalid(f"{path}: {_describe(value)} is outside [-{limit:g}, {limit:g}]")
    return number


def _timestamp(record: Any, path: str) -> datetime:
    """ISO 8601 ('...Z' or an offset) -> an aware UTC datetime; a naive one would be guessed, so refuse it."""
    raw = _str_field(record, path)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _Invalid(f"{path}: not an ISO 8601 date-time: {_describe(raw)}") from None
    if parsed.tzinfo is None:
        raise _Invalid(f"{path}: no time zone in {_describe(raw)}")
    try:
        return _millis(parsed.astimezone(timezone.utc))
    except OverflowError:
        raise _Invalid(f"{path}: {_describe(raw)} is out of range") from None


def _national_id(record: Any) -> tuple[str, str | None]:
    """id.name may be empty and id.value null (IR, NZ, TR, UA): both are legal, not errors."""
    name = _get(record, "id.name")
    name = "" if name is None else _text(name, "id.name")
    value = _get(record, "id.value")
    if value is None:
        return name, None
    return name, _int_or_text(value, "id.value", allow_empty=True)


def _build(raw: Any, ingested_at: datetime) -> User:
    """The mapping itself; raises `_Invalid` naming the first bad field."""
    if not isinstance(raw, dict):
        raise _Invalid(f"record: expected an object, got {type(raw).__name__} {_describe(raw)}")
    national_id_name, national_id_value = _national_id(raw)
    return User(
        id=_uuid(raw, "login.uuid"),
        username=_str_field(raw, "login.username", allow_empty=False),
        gender=_str_field(raw, "gender"),
        title=_str_field(raw, "name.title"),
        first_name=_str_field(raw, "name.first"),
        last_name=_str_field(raw, "name.last"),
        email=_str_field(raw, "email", allow_empty=False),
        phone=_str_field(raw, "phone"),
        cell=_str_field(raw, "cell"),
        date_of_birth=_timestamp(raw, "dob.date"),
        registered_at=_timestamp(raw, "registered.date"),
        street_number=_int32(raw, "location.street.number"),
        street_name=_str_field(raw, "location.street.name"),
        city=_str_field(raw, "location.city"),
        state=_str_field(raw, "location.state"),
        country=_str_field(raw, "location.country"),
        postcode=_postcode(raw, "location.postcode"),
        latitude=_coordinate(raw, "location.coordinates.latitude", 90.0),
        longitude=_coordinate(raw, "location.coordinates.longitude", 180.0),
        timezone_offset=_str_field(raw, "location.timezone.offset"),
        timezone_description=_str_field(raw, "location.timezone.description"),
        national_id_name=national_id_name,
        national_id_value=national_id_value,
        picture_large=_str_field(raw, "picture.large"),
        picture_medium=_str_field(raw, "picture.medium"),
        picture_thumbnail=_str_field(raw, "picture.thumbnail"),
        nationality=_str_field(raw, "nat", allow_empty=False),
        ingested_at=ingested_at,
    )


def transform(raw: Any, ingested_at: datetime) -> TransformResult:
    """Map one API record to a `User`, or say why not. Never raises for JSON input.

    `ingested_at` is passed in (not read from the clock here) so a batch shares
    one timestamp and tests are deterministic; it must be timezone-aware.
    """
    if ingested_at.tzinfo is None:
        # A programming error in the caller, not bad data: fail loudly.
        raise ValueError("ingested_at must be timezone-aware (use datetime.now(timezone.utc))")
    try:
        return _build(raw, _millis(ingested_at.astimezone(timezone.utc)))
    except _Invalid as invalid:
        return Rejected(str(invalid))
    except RecursionError:
        return Rejected("record: nested too deeply to inspect")


# --- The one mapping between User and the Avro record ------------------------

def user_to_avro(user: User, ctx: object = None) -> dict[str, Any]:
    """User -> the Avro dict for `io.userstream.User` (timestamps stay aware datetimes:
    the Avro writer turns them into timestamp-millis). `ctx` lets AvroSerializer use it as `to_dict`."""
    return {name: getattr(user, name) for name in USER_FIELDS}


def avro_to_user(record: dict[str, Any], ctx: object = None) -> User:
    """The Avro dict (as a deserializer returns it) -> User. Fields a newer schema adds are ignored;
    `ctx` lets AvroDeserializer use it as `from_dict`."""
    values = {name: record[name] for name in USER_FIELDS}
    values["id"] = str(values["id"])  # fastavro may return the uuid logical type as uuid.UUID
    return User(**values)
