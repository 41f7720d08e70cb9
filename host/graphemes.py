"""User-perceived characters for SMS splitting (SPEC O4), see :mod:`host.encoding`.

An approximation of the Unicode extended grapheme clusters of UAX #29 with the standard
library only: a base character stays with its combining marks, variation selectors,
emoji skin-tone modifiers and tags, a ZWJ joins the character after it, regional
indicators pair into flags, CR stays with a following LF. Hangul conjoining jamo and
Indic conjuncts across a virama are not modelled.

Why a fast path: the send API splits every long MT, and walking each character with
the joining rules costs microseconds per character in Python. Almost every text has no
character that can join another except CR + LF (no GSM-7 character and no ASCII
character is a mark, a joiner, a variation selector, a modifier, a tag or a regional
indicator), and for those texts the clusters are exactly what a regular expression
finds: ``\\r\\n`` or any single character. Whether the rules can apply is decided on the
*distinct* characters of the text, so the check costs little even for long texts.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_SIMPLE_CLUSTER: Final = re.compile(r"\r\n|.", re.DOTALL)


#: Characters found to join nothing, learned from the texts seen (bounded): a language's
#: letters repeat from one message to the next, so the per-character look-up in the
#: Unicode database runs once per character, not once per message.
_LEARNED: Final[set[str]] = set()
_LEARNED_MAX: Final = 8192


def simple(text: str, plain: frozenset[str]) -> bool:
    """True when no rule but CR + LF can join two characters of ``text``.

    ``plain`` is a set of characters known to join nothing (the GSM-7 tables): a text
    made only of them, or of ASCII, needs no per-character look-up.
    """
    if text.isascii() or plain.issuperset(text) or _LEARNED.issuperset(text):
        return True
    new = set(text).difference(_LEARNED)
    if any(_is_extend(ch) or _is_regional(ch) for ch in new):
        return False
    if len(_LEARNED) + len(new) <= _LEARNED_MAX:
        _LEARNED.update(new)  # set.update is atomic under the GIL: no lock
    return True


def clusters(text: str, plain: frozenset[str] = frozenset()) -> list[str]:
    """User-perceived characters; ``"".join(clusters(text)) == text`` always holds."""
    if simple(text, plain):
        return _SIMPLE_CLUSTER.findall(text) if "\r\n" in text else list(text)
    return _joined(text)


def _joined(text: str) -> list[str]:
    """The joining rules, character by character (texts with marks, emoji, flags)."""
    out: list[list[str]] = []
    regional = 0  # regional indicators in the current cluster
    for ch in text:
        if out:
            current = out[-1]
            prev = current[-1]
            if prev == "\r" or prev == "\n":
                join = prev == "\r" and ch == "\n" and len(current) == 1
            else:
                join = (
                    _is_extend(ch)
                    or prev == "\u200d"
                    or (_is_regional(ch) and _is_regional(prev) and regional % 2 == 1)
                )
            if join:
                current.append(ch)
                regional += _is_regional(ch)
                continue
        out.append([ch])
        regional = int(_is_regional(ch))
    return ["".join(c) for c in out]


def _is_regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _is_extend(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining and spacing marks
        or cp in (0x200C, 0x200D)  # ZWNJ, ZWJ
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (emoji / text presentation)
        or 0xE0100 <= cp <= 0xE01EF  # variation selectors supplement
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tags (subdivision flags)
    )
