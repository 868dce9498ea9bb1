"""Bounds on untrusted input: how long a text field and how far a date may go before a record is refused.

The API's JSON is untrusted. Without a cap, one record with a megabyte-long
name becomes a message the broker refuses (failing the whole run), a Cassandra
cell nobody wants, and a Spark row that costs memory on every replay; a date in
year 9999 or 0001 passes Avro but breaks whoever reads it as a calendar date.
`transform` asks these checks for every text field and every date, and a record
outside them is dead-lettered (stage `transform`) with a reason naming the
field, the limit and the setting that sets it.

Use:
    bounds = Bounds.from_settings(settings)   # TRANSFORM_MAX_STRING_LENGTH, TRANSFORM_MIN_DATE, TRANSFORM_MAX_DATE
    bounds.text_problem("x" * 5000)          # "5000 characters, over the limit of 1024 (TRANSFORM_MAX_STRING_LENGTH)"
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from core.settings import Settings


def _day(text: str, setting: str) -> datetime:
    """'2200-01-01' -> midnight UTC of that day; a bad value names its setting."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{setting}={text!r} is not a date in YYYY-MM-DD form") from None
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Bounds:
    """The limits `transform` applies; the defaults are the settings' defaults."""

    max_string_length: int = 1024
    min_date: datetime = datetime(1, 1, 1, tzinfo=timezone.utc)
    max_date: datetime = datetime(2200, 1, 1, tzinfo=timezone.utc)

    def __post_init__(self) -> None:
        if self.min_date >= self.max_date:
            raise ValueError(f"TRANSFORM_MIN_DATE ({self.min_date:%Y-%m-%d}) must be before "
                             f"TRANSFORM_MAX_DATE ({self.max_date:%Y-%m-%d})")

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        """The configured bounds; a malformed or inverted date range is a ValueError naming the setting."""
        return cls(
            max_string_length=settings.transform_max_string_length,
            min_date=_day(settings.transform_min_date, "TRANSFORM_MIN_DATE"),
            max_date=_day(settings.transform_max_date, "TRANSFORM_MAX_DATE"),
        )

    def text_problem(self, text: str) -> str | None:
        """Why this text is too long for a field, or None."""
        if len(text) <= self.max_string_length:
            return None
        return f"{len(text)} characters, over the limit of {self.max_string_length} (TRANSFORM_MAX_STRING_LENGTH)"

    def date_problem(self, moment: datetime) -> str | None:
        """Why this (aware) date-time is outside the accepted range, or None."""
        if moment < self.min_date:
            return f"{moment.isoformat()} is before {self.min_date:%Y-%m-%d} (TRANSFORM_MIN_DATE)"
        if moment > self.max_date:
            return f"{moment.isoformat()} is after {self.max_date:%Y-%m-%d} (TRANSFORM_MAX_DATE)"
        return None


DEFAULT_BOUNDS = Bounds()
