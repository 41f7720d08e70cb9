"""SMS text encoding and segmentation (SPEC O4): GSM-7 or UCS-2, counted and split.

Pure functions, no I/O. The outbound side uses :func:`segments` (split mode),
:func:`truncate` (truncate mode) and :func:`detect`; ``POST /api/segments`` uses
:func:`describe`. "Parsing none" (send unaltered) needs nothing from here but a count.

Rules
-----
* GSM-7 when every character is in the default alphabet or its extension table, else
  UCS-2 for the whole message. A basic character costs 1 septet; an extension character
  costs 2 (ESC 0x1B + its code) and both septets always travel in the same part.
* UCS-2 is counted in UTF-16 code units, as brokers count it: a character outside the
  BMP (most emoji) costs 2 units and its surrogate pair never straddles two parts.
* One message holds 160 septets / 70 units; once concatenated, every part holds
  153 / 67 (6-octet UDH with an 8-bit reference). Parts are packed greedily, so a
  character that does not fit whole moves whole to the next part, which can add a
  part a naive ``ceil(units / 153)`` would not count (e.g. 152 x "a" + "€" + 152 x "a").
* Graphemes: splits also fall between user-perceived characters, approximating the
  Unicode extended grapheme clusters of UAX #29 with the standard library only: a base
  character stays with its combining marks, variation selectors, emoji skin-tone
  modifiers and tags, a ZWJ joins the character after it (family/profession emoji),
  regional indicators pair into flags, CR stays with a following LF. Not modelled:
  Hangul conjoining jamo and Indic conjuncts across a virama (these may be split
  between code points, which is still valid text). A cluster bigger than a whole part
  is cut between code points, never inside a surrogate pair or an escape sequence.
  This matches Twilio's segment calculator, which also segments by grapheme.
* Empty text is one empty GSM-7 segment (what sending it would cost).
* ``truncate`` keeps the longest prefix of whole characters fitting one message
  (160 / 70) under the encoding of the *whole* text, so the result fits one message
  whatever encoding the caller then sends it with.
* Not generated: national language shift tables (TS 23.038 §6.2.1.2, UDH IEI
  0x24/0x25) and 16-bit concatenation references (152 / 66 per part). The theoretical
  maximum is 255 parts (:data:`MAX_PARTS`); broker caps belong to the broker profile.

Sources
-------
* 3GPP TS 23.038 §6.2.1 (GSM 7-bit default alphabet) and §6.2.1.1 (extension table).
  The tables below were checked against three transcriptions that agree exactly:
  the ``gsm0338`` 1.1.0 Python codec (github.com/dsch/gsm0338, mapping source TS 23.038
  v15.0.0), Perl ``Encode::GSM0338`` (TS 23.038 v16.0.0 / ETSI TS 123 038 V16.0.0,
  pages 20 and 22) and ``UnicodeToGSM.ts`` of TwilioDevEd/message-segment-calculator.
  Position 0x09 is LATIN CAPITAL LETTER C WITH CEDILLA ("Ç") as in the standard, so a
  small "ç" forces UCS-2. 0x1B is the escape, not a character: U+001B in the text (and
  NBSP, which some tables print there) forces UCS-2. The extension table's control
  positions (CR2 0x0D, SS2 0x1B) carry no character and are left out.
* 3GPP TS 23.040 §9.2.3.24.1: 153 (160-7) GSM characters or 67 ((140-6)/2) UCS-2
  characters per concatenated part; "A character represented by an escape-sequence shall
  not be split in the middle"; "A UCS2 character shall not be split in the middle".
* The optional look-alike map (:data:`SMART_SUBSTITUTIONS`) follows the idea of Twilio's
  and Telnyx's "Smart Encoding"; it is written here, short, and off unless called.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Final, Literal

from host.errors import SmshostError
from host.graphemes import clusters as _clusters
from host.graphemes import simple as _simple

Encoding = Literal["gsm7", "ucs2"]

GSM7: Final = "gsm7"
UCS2: Final = "ucs2"
ESCAPE: Final = 0x1B
MAX_PARTS: Final = 255  # part count and sequence number are single octets in the UDH

#: (single message, each part of a concatenated message), in units of the encoding
LIMITS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {GSM7: (160, 153), UCS2: (70, 67)}
)

# TS 23.038 §6.2.1 default alphabet in septet order 0x00..0x7F, 16 per row.
# Position 0x1B holds the escape to the extension table, not a character.
_BASIC_BY_CODE: Final = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"  # 0x00
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"  # 0x20
    "0123456789:;<=>?"  # 0x30
    "\u00a1ABCDEFGHIJKLMNO"  # 0x40
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"  # 0x50
    "\u00bfabcdefghijklmno"  # 0x60
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"  # 0x70
)
assert len(_BASIC_BY_CODE) == 128

#: Unicode character -> septet, for the 127 characters of the default alphabet.
GSM7_BASIC: Final[Mapping[str, int]] = MappingProxyType(
    {ch: code for code, ch in enumerate(_BASIC_BY_CODE) if code != ESCAPE}
)

#: Unicode character -> septet that follows ESC (TS 23.038 §6.2.1.1); each costs 2.
GSM7_EXTENSION: Final[Mapping[str, int]] = MappingProxyType(
    {
        "\x0c": 0x0A,  # FORM FEED (page break)
        "^": 0x14,
        "{": 0x28,
        "}": 0x29,
        "\\": 0x2F,
        "[": 0x3C,
        "~": 0x3D,
        "]": 0x3E,
        "|": 0x40,
        "\u20ac": 0x65,  # EURO SIGN
    }
)


#: Every character GSM-7 can carry; also characters that never join a grapheme cluster.
_GSM7_ALL: Final = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)
_GSM7_EXT: Final = frozenset(GSM7_EXTENSION)
_GSM7_BASIC_SET: Final = frozenset(GSM7_BASIC)
_EXTENSION_CHAR: Final = re.compile("[" + re.escape("".join(GSM7_EXTENSION)) + "]")
#: str.translate table: each GSM-7 character -> its cost in septets, as a code point
_SEPTETS: Final = {ord(ch): "\x02" if ch in GSM7_EXTENSION else "\x01" for ch in _GSM7_ALL}
#: :func:`segments` remembers recent results for texts up to this long: a send asks for
#: the same text twice (plan, stored row); both bounds cap it (~6 MB if all are emoji).
_CACHE_SIZE: Final = 512
_CACHE_CHARS: Final = 1024


class EncodingError(SmshostError, ValueError):
    """Text cannot be sent in the encoding asked for, or the encoding is unknown."""


@dataclass(frozen=True)
class Segmentation:
    """How a text goes over the air.

    ``units`` are septets for GSM-7 and UTF-16 code units for UCS-2. ``per_segment``
    is the capacity in force: 160 / 70 for a single message, 153 / 67 once
    concatenated. ``remaining`` is what is still free in the last part. ``parts``
    joined give back the text exactly; ``part_units`` is the cost of each part (a
    part before a moved escape or surrogate pair may hold one unit less than
    ``per_segment``).
    """

    encoding: Encoding
    units: int
    segments: int
    per_segment: int
    remaining: int
    parts: tuple[str, ...]
    part_units: tuple[int, ...]

    @property
    def unit(self) -> str:
        """``"septet"`` for GSM-7, ``"utf16"`` for UCS-2."""
        return "septet" if self.encoding == GSM7 else "utf16"

    @property
    def concatenated(self) -> bool:
        """True when the text needs more than one part (and so a UDH)."""
        return self.segments > 1


def is_gsm7(ch: str) -> bool:
    """True when the single character ``ch`` is in the default alphabet or extension."""
    return ch in GSM7_BASIC or ch in GSM7_EXTENSION


def non_gsm7(text: str) -> list[str]:
    """The characters of ``text`` that force UCS-2, each once, in order of appearance."""
    if _GSM7_ALL.issuperset(text):  # one C loop over the text: the usual answer
        return []
    return list(dict.fromkeys(ch for ch in text if ch not in _GSM7_ALL))


def detect(text: str) -> Encoding:
    """``"gsm7"`` when every character is in either GSM table, else ``"ucs2"``."""
    return GSM7 if _GSM7_ALL.issuperset(text) else UCS2


def char_units(ch: str, encoding: Encoding) -> int:
    """Cost of one character: 1 or 2 septets, or 1 or 2 UTF-16 code units."""
    if encoding == GSM7:
        if ch in GSM7_BASIC:
            return 1
        if ch in GSM7_EXTENSION:
            return 2
        raise EncodingError(f"character {ch!r} (U+{ord(ch):04X}) is not in GSM-7")
    return 2 if ord(ch) > 0xFFFF else 1


def count_units(text: str, encoding: Encoding | str | None = None) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text."""
    return _units(text, _resolve(text, encoding))


def clusters(text: str) -> list[str]:
    """User-perceived characters: an approximation of UAX #29 extended grapheme clusters.

    See the module docstring for what is kept together and what is not modelled.
    ``"".join(clusters(text)) == text`` always holds.
    """
    return _clusters(text, _GSM7_ALL)


def segments(text: str, encoding: Encoding | str | None = None) -> Segmentation:
    """Count and split ``text`` into SMS parts.

    ``encoding`` None detects it; ``"gsm7"`` raises :class:`EncodingError` if a
    character is not in GSM-7; ``"ucs2"`` is always possible. The result is
    immutable and remembered for recent short texts (see :func:`analyse`).
    """
    if len(text) > _CACHE_CHARS:
        return analyse(text, encoding)
    return _remembered(text, encoding)


def analyse(text: str, encoding: Encoding | str | None = None) -> Segmentation:
    """:func:`segments` without the memory of recent texts (what a first call costs)."""
    if encoding is None and _GSM7_BASIC_SET.issuperset(text):
        enc: Encoding = GSM7  # the usual text: detection and count in one C loop
        units = len(text)
    else:
        enc = _resolve(text, encoding)
        units = _units(text, enc)
    single, multi = LIMITS[enc]
    if units <= single:
        return Segmentation(enc, units, 1, single, single - units, (text,), (units,))
    if units == len(text) and "\r\n" not in text and _simple(text, _GSM7_ALL):
        # every character costs 1 and stands alone: parts are plain slices
        parts = tuple(text[i:i + multi] for i in range(0, len(text), multi))
        costs = tuple(len(p) for p in parts)
    else:
        parts, costs = _pack(text, *_pieces(text, enc, multi), multi, None)
    return Segmentation(enc, units, len(parts), multi, multi - costs[-1], parts, costs)


_remembered = functools.lru_cache(maxsize=_CACHE_SIZE)(analyse)


def truncate(text: str, encoding: Encoding | str | None = None) -> str:
    """The longest prefix of whole characters that fits one message (160 / 70).

    The limit comes from the encoding of the whole text (or the one given); a cut
    never falls inside an escape sequence, a surrogate pair or (where it fits at
    all) a grapheme cluster.
    """
    enc = _resolve(text, encoding)
    single = LIMITS[enc][0]
    if _units(text, enc) <= single:
        return text
    parts, _ = _pack(text, *_pieces(text, enc, single), single, 1)
    return parts[0] if parts else ""


def describe(text: str, encoding: Encoding | str | None = None) -> dict[str, Any]:
    """A JSON-ready summary for ``POST /api/segments``.

    Keys: ``encoding``, ``segments``, ``units``, ``unit`` (``septet`` / ``utf16``),
    ``per_segment``, ``remaining`` (units still free in the current segment; for
    GSM-7 basic characters that is also characters left) and ``non_gsm7`` (the
    characters that forced UCS-2, empty for GSM-7).
    """
    s = segments(text, encoding)
    return {
        "encoding": s.encoding,
        "segments": s.segments,
        "units": s.units,
        "unit": s.unit,
        "per_segment": s.per_segment,
        "remaining": s.remaining,
        "non_gsm7": non_gsm7(text),
    }


def _resolve(text: str, encoding: Encoding | str | None) -> Encoding:
    if encoding is None:
        return detect(text)
    name = encoding.lower().replace("-", "").replace("_", "")
    if name == GSM7:
        bad = non_gsm7(text)
        if bad:
            shown = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in bad[:5])
            raise EncodingError(f"text is not GSM-7: {shown}")
        return GSM7
    if name == UCS2:
        return UCS2
    raise EncodingError(f"unknown SMS encoding {encoding!r}: use 'gsm7' or 'ucs2'")


def _units(text: str, enc: Encoding) -> int:
    """Septets or UTF-16 code units of a text already known to fit ``enc``."""
    if enc == GSM7:  # 1 septet each, plus the escape of each extension character
        return len(text) + len(_EXTENSION_CHAR.findall(text))
    if text.isascii():
        return len(text)
    # UTF-16 as brokers count it; "surrogatepass" counts a lone surrogate as 1 unit
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _pieces(text: str, enc: Encoding, capacity: int
            ) -> tuple[list[str], Sequence[int]]:
    """Indivisible pieces and their cost: clusters, or code points of a too-big cluster."""
    if _simple(text, _GSM7_ALL):
        # clusters are single characters or CR LF: a piece costs its length, plus 1 for
        # an escape (GSM-7) or a surrogate pair (UCS-2, the only characters above FFFF)
        simple = _clusters(text, _GSM7_ALL)
        if enc == GSM7 and len(simple) == len(text):  # no CR LF: a piece is a character
            return simple, text.translate(_SEPTETS).encode("latin-1")  # bytes of 1 or 2
        if enc == GSM7:
            return simple, [len(p) + (p in _GSM7_EXT) for p in simple]
        return simple, [len(p) + (p > "\uffff") for p in simple]
    pieces: list[str] = []
    costs: list[int] = []
    for cluster in _clusters(text, _GSM7_ALL):
        cost = sum(char_units(ch, enc) for ch in cluster)
        if cost <= capacity:
            pieces.append(cluster)
            costs.append(cost)
        else:
            pieces.extend(cluster)
            costs.extend(char_units(ch, enc) for ch in cluster)
    return pieces, costs


def _pack(text: str, pieces: Sequence[str], costs: Sequence[int], capacity: int,
          limit: int | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Greedy packing: each part takes the pieces that fit whole, in order.

    The running total of the costs is cut by binary search, so the Python work is per
    part, not per character. ``limit`` stops after that many parts (truncation).
    """
    total = list(accumulate(costs))
    parts: list[str] = []
    used: list[int] = []
    start, base = 0, 0
    while start < len(total) and (limit is None or len(parts) < limit):
        end = bisect_right(total, base + capacity, start)
        chars = len(pieces) == len(text)  # one character a piece: a part is a slice
        parts.append(text[start:end] if chars else "".join(pieces[start:end]))
        used.append(total[end - 1] - base)
        start, base = end, total[end - 1]
    return tuple(parts), tuple(used)


# ---------------------------------------------------------------------------------------
# Optional: GSM-7 look-alike substitution ("smart encoding"). Never applied implicitly.
# A caller that wants it runs smart_substitute() first, then segments() on the result,
# and keeps the substituted text only if it is accepted to alter the message.
# ---------------------------------------------------------------------------------------

#: Common non-GSM characters -> GSM-7 look-alikes (every value is pure GSM-7).
SMART_SUBSTITUTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "\u2018": "'",  # LEFT SINGLE QUOTATION MARK
        "\u2019": "'",  # RIGHT SINGLE QUOTATION MARK
        "\u201a": "'",  # SINGLE LOW-9 QUOTATION MARK
        "\u201b": "'",  # SINGLE HIGH-REVERSED-9 QUOTATION MARK
        "\u2032": "'",  # PRIME
        "\u00b4": "'",  # ACUTE ACCENT
        "`": "'",  # GRAVE ACCENT (backtick)
        "\u201c": '"',  # LEFT DOUBLE QUOTATION MARK
        "\u201d": '"',  # RIGHT DOUBLE QUOTATION MARK
        "\u201e": '"',  # DOUBLE LOW-9 QUOTATION MARK
        "\u201f": '"',  # DOUBLE HIGH-REVERSED-9 QUOTATION MARK
        "\u2033": '"',  # DOUBLE PRIME
        "\u00ab": '"',  # LEFT-POINTING DOUBLE ANGLE QUOTATION MARK
        "\u00bb": '"',  # RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK
        "\u2039": "<",  # SINGLE LEFT-POINTING ANGLE QUOTATION MARK
        "\u203a": ">",  # SINGLE RIGHT-POINTING ANGLE QUOTATION MARK
        "\u2010": "-",  # HYPHEN
        "\u2011": "-",  # NON-BREAKING HYPHEN
        "\u2012": "-",  # FIGURE DASH
        "\u2013": "-",  # EN DASH
        "\u2014": "-",  # EM DASH
        "\u2015": "-",  # HORIZONTAL BAR
        "\u2212": "-",  # MINUS SIGN
        "\u2022": "-",  # BULLET
        "\u2026": "...",  # HORIZONTAL ELLIPSIS
        "\u00a0": " ",  # NO-BREAK SPACE
        "\u2002": " ",  # EN SPACE
        "\u2003": " ",  # EM SPACE
        "\u2009": " ",  # THIN SPACE
        "\u202f": " ",  # NARROW NO-BREAK SPACE
        "\t": " ",  # CHARACTER TABULATION
        "\u200b": "",  # ZERO WIDTH SPACE
        "\u2060": "",  # WORD JOINER
        "\ufeff": "",  # ZERO WIDTH NO-BREAK SPACE (BOM)
    }
)


def smart_substitute(text: str) -> str:
    """``text`` with :data:`SMART_SUBSTITUTIONS` applied; other characters untouched.

    Off by default: nothing in this module calls it. It alters the message, so only
    use it where the account or broker profile asks for it.
    """
    return "".join(SMART_SUBSTITUTIONS.get(ch, ch) for ch in text)
