"""The `User` (one person, as the Avro record `io.userstream.User` has it) and the one mapping to and from Avro.

`producer.transform` makes Users from the API's JSON (or a `Rejected` with the
reason) and the publisher writes them as Avro. This module is the only place
the mapping between a `User` and the Avro record (`schemas/user.avsc`) lives:
`user_to_avro()` and `avro_fields()` one way, `avro_to_user()` the other.

Use:
    from producer.user import User, user_to_avro
    record = user_to_avro(user)        # the dict an Avro writer takes
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Union


@dataclass(frozen=True)
class User:
    """One person, flattened exactly like the Avro record `io.userstream.User`.

    Not `slots=True`: a frozen dataclass's generated __init__ sets each of the 28
    fields with its own object.__setattr__ call (6.5 us of CPU per user here, as
    much as a third of the Avro write); with an instance __dict__, the transform
    builds a User from its field dict in one step (`user_from_fields`, 0.5 us)
    and the publisher hands that dict to the Avro writer (`avro_fields`).
    """

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


def user_from_fields(values: dict[str, Any]) -> User:
    """A User whose __dict__ is `values` (every field of USER_FIELDS, in order, nothing else): what
    __init__ would build, without its 28 object.__setattr__ calls. For a caller that has just built
    `values` and keeps no reference to it (the transform's fast path), so a frozen User stays unchanged."""
    user = _new_object(User)
    _set_attribute(user, "__dict__", values)
    return user


_new_object, _set_attribute = object.__new__, object.__setattr__  # looked up once: user_from_fields runs per user


def user_to_avro(user: User, ctx: object = None) -> dict[str, Any]:
    """User -> the Avro dict for `io.userstream.User` (timestamps stay aware datetimes:
    the Avro writer turns them into timestamp-millis). `ctx` lets AvroSerializer use it as `to_dict`.
    A copy: the caller may change it (AvroSerializer's field rules do) without touching the User."""
    return dict(avro_fields(user))


def avro_fields(user: User) -> dict[str, Any]:
    """The User's own field dict, read-only, to hand to an Avro writer without a copy: every User,
    however built, keeps exactly its fields in its instance __dict__ (a non-slots dataclass)."""
    return user.__dict__


def avro_to_user(record: dict[str, Any], ctx: object = None) -> User:
    """The Avro dict (as a deserializer returns it) -> User. Fields a newer schema adds are ignored;
    `ctx` lets AvroDeserializer use it as `from_dict`."""
    values = {name: record[name] for name in USER_FIELDS}
    values["id"] = str(values["id"])  # fastavro may return the uuid logical type as uuid.UUID
    return User(**values)
