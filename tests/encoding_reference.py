"""The implementation of host/encoding.py before its fast paths (issue 18), kept verbatim
as the reference the equivalence tests (tests/test_encoding_fast.py) and
bench/encoding_bench.py compare the current module with. Do not "improve" it: its whole
value is that it is the old, character-by-character code. Original docstring follows.

SMS text encoding and segmentation (SPEC O4): GSM-7 or UCS-2, counted and split.

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

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from host.errors import SmshostError

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
    return list(dict.fromkeys(ch for ch in text if not is_gsm7(ch)))


def detect(text: str) -> Encoding:
    """``"gsm7"`` when every character is in either GSM table, else ``"ucs2"``."""
    return GSM7 if all(is_gsm7(ch) for ch in text) else UCS2


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
    enc = _resolve(text, encoding)
    return sum(char_units(ch, enc) for ch in text)


def clusters(text: str) -> list[str]:
    """User-perceived characters: an approximation of UAX #29 extended grapheme clusters.

    See the module docstring for what is kept together and what is not modelled.
    ``"".join(clusters(text)) == text`` always holds.
    """
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


def segments(text: str, encoding: Encoding | str | None = None) -> Segmentation:
    """Count and split ``text`` into SMS parts.

    ``encoding`` None detects it; ``"gsm7"`` raises :class:`EncodingError` if a
    character is not in GSM-7; ``"ucs2"`` is always possible.
    """
    enc = _resolve(text, encoding)
    single, multi = LIMITS[enc]
    units = count_units(text, enc)
    if units <= single:
        return Segmentation(enc, units, 1, single, single - units, (text,), (units,))
    parts: list[str] = []
    costs: list[int] = []
    buf: list[str] = []
    used = 0
    for piece, cost in _atoms(text, enc, multi):
        if used + cost > multi:
            parts.append("".join(buf))
            costs.append(used)
            buf, used = [], 0
        buf.append(piece)
        used += cost
    parts.append("".join(buf))
    costs.append(used)
    return Segmentation(enc, units, len(parts), multi, multi - used, tuple(parts), tuple(costs))


def truncate(text: str, encoding: Encoding | str | None = None) -> str:
    """The longest prefix of whole characters that fits one message (160 / 70).

    The limit comes from the encoding of the whole text (or the one given); a cut
    never falls inside an escape sequence, a surrogate pair or (where it fits at
    all) a grapheme cluster.
    """
    enc = _resolve(text, encoding)
    single = LIMITS[enc][0]
    out: list[str] = []
    used = 0
    for piece, cost in _atoms(text, enc, single):
        if used + cost > single:
            break
        out.append(piece)
        used += cost
    return "".join(out)


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


def _atoms(text: str, enc: Encoding, capacity: int) -> Iterator[tuple[str, int]]:
    """Indivisible pieces and their cost: clusters, or code points of a too-big cluster."""
    for cluster in clusters(text):
        cost = sum(char_units(ch, enc) for ch in cluster)
        if cost <= capacity:
            yield cluster, cost
        else:
            for ch in cluster:
                yield ch, char_units(ch, enc)


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
