"""Login secrets never leave the source: the API's password, salt and hashes are dropped on arrival.

randomuser.me sends every user's `login` block with `password`, `salt`, `md5`,
`sha1` and `sha256`. Nothing downstream needs them, and a dead letter, a log
line or an error message that carried them would publish credentials. So the
source stage drops them from every record as soon as a page is parsed
(`without_secrets`), the publisher drops them again from every dead letter it
writes (in case a caller hands it records that did not come through the
source), and any piece of a response body shown in an error is passed through
`redact_text` first.

Use:
    clean = without_secrets(raw_record)      # a copy; the input is not changed
    print(redact_text(response.text[:200]))  # '"password": "<redacted>"'
"""

from __future__ import annotations

import re
from typing import Any

LOGIN_SECRETS = ("password", "salt", "md5", "sha1", "sha256")
_SECRET_IN_TEXT = re.compile(r'("(?:' + "|".join(LOGIN_SECRETS) + r')"\s*:\s*)("(?:[^"\\]|\\.)*("|$)|[^,}\]\s]+)')


def without_secrets(record: Any) -> Any:
    """The record without its login secrets (a copy where it changes; anything else as it is).

    Only the `login` block carries them. The usual case, an object, loses the five
    keys; a malformed block (a list, say) loses them wherever they sit inside it,
    so even the reason transform gives for rejecting it cannot quote them.
    """
    if not isinstance(record, dict) or "login" not in record:
        return record
    login = record["login"]
    if isinstance(login, dict):
        if not any(key in login for key in LOGIN_SECRETS):
            return record
        return {**record, "login": {key: value for key, value in login.items() if key not in LOGIN_SECRETS}}
    if isinstance(login, list):
        try:
            return {**record, "login": _deep_without_secrets(login)}
        except RecursionError:  # too deep to inspect, so too deep to vouch for: withheld whole
            return {**record, "login": "<withheld: nested too deeply to inspect>"}
    return record


def _deep_without_secrets(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _deep_without_secrets(value) for key, value in node.items() if key not in LOGIN_SECRETS}
    if isinstance(node, list):
        return [_deep_without_secrets(item) for item in node]
    return node


def redact_text(text: str) -> str:
    """A piece of a JSON body with every `"password": ...`-like value replaced by `<redacted>`,
    also when the piece is cut in the middle of a value."""
    return _SECRET_IN_TEXT.sub(lambda match: f'{match.group(1)}"<redacted>"', text)
