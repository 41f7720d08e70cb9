"""Phone numbers: E.164 normalisation with phonenumbers (SPEC R1, O3).

``normalize`` never fails: a number it cannot read as a valid phone number (a short
code, an alphanumeric sender id, garbage) comes back as it was given, trimmed.
Results are cached; the same few local numbers and regular senders repeat a lot.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers


@lru_cache(maxsize=65536)
def normalize(number: str, region: str = "US") -> str:
    """``number`` in E.164 (``+CC...``) when it reads as a phone number, else as given.

    Valid numbers win; a number that is only *possible* (right length for its country,
    e.g. the reserved 07700 900xxx drama range) is formatted too, so routes written in
    E.164 still match it. Use :func:`is_valid` where validity matters (sending).
    """
    raw = number.strip()
    digits = "".join(ch for ch in raw if ch.isdigit())
    if not digits or len(digits) <= 6 or any(ch.isalpha() for ch in raw):
        return raw  # short code or alphanumeric sender id: keep as is
    candidates = [(raw, region or None)]
    if not raw.startswith("+"):
        candidates.append(("+" + digits, None))  # international without the plus
    parsed_all = []
    for text, reg in candidates:
        try:
            parsed_all.append(phonenumbers.parse(text, reg))
        except phonenumbers.NumberParseException:
            continue
    for check in (phonenumbers.is_valid_number, _possible):
        for parsed in parsed_all:
            if check(parsed):
                return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return raw


def _possible(parsed: phonenumbers.PhoneNumber) -> bool:
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


def is_valid(number: str, region: str = "US") -> bool:
    """True when ``number`` is a valid phone number (not only well formatted)."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region or None))
    except phonenumbers.NumberParseException:
        return False
