"""One rule for text that cannot round-trip (SPEC P12): it is replaced, never refused.

JSON may carry a lone surrogate (``"\\ud83d"``: half of a UTF-16 pair), which Python
keeps in a string but UTF-8 cannot encode: SQLite refuses to store it and a JSON
answer holding it cannot be sent. NUL (U+0000) is stored, but SQLite's text functions
and C clients cut the text there and XML cannot hold it. Each of them becomes U+FFFD
(the replacement character) where text enters smshost: JSON bodies and stored JSON as
they are parsed (:func:`host.jsontext.loads`), form bodies and query strings as they
are decoded (:mod:`host.brokers.http`), what handler scripts hand back
(:mod:`host.handlers.context`), and, as a last guard for adapters' own decoding, a
message as it is stored (:mod:`host.messages`). The request is accepted: a broker
whose webhook is refused retries it for a day and then drops the message.

What is stored is what every later read returns. Other control characters are kept:
JSON escapes them and SQLite stores them as they are.

The same rule applies on the way out to everything that may quote a client's text
without having parsed it as a value: every error answer (the API's JSON errors,
:func:`host.web.errors.error_response`; a refused webhook's plain text,
``host.brokers.webhooks._refuse``) and every log line (:mod:`host.logs`). A field name
in a JSON pointer, say, is quoted as the client wrote it, and a lone surrogate there
made the answer unencodable: a 500 in place of the 400 (issue 11, second review).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` with each lone surrogate and NUL replaced by U+FFFD."""
    if text.isascii():  # the usual case: one C-level check
        return text.replace("\x00", REPLACEMENT) if "\x00" in text else text
    return _UNSAFE.sub(REPLACEMENT, text)


def clean_value(value: Any) -> Any:
    """``value`` (parsed JSON: dicts, lists, strings, numbers) with every string
    cleaned, dictionary keys included. Nesting is bounded by the caller (JSON bodies
    are refused past :data:`host.jsontext.MAX_DEPTH`)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean_value(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value
