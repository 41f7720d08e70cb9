"""SMS encoding and segmentation (SPEC O4): tables, detection, counts, splits, truncation.

Independent references used here:
* hand-computed cases, with the arithmetic in comments;
* the test vectors of shared/research/seed-specifics-reliability.md section 5.6;
* for UCS-2, a byte-level reference on Python's own UTF-16 codec (stdlib);
* for GSM-7, a byte-level reference on the ``gsm0338`` codec (dsch/gsm0338, mapping
  source 3GPP TS 23.038 v15), a test-only dependency: the tests that need it are
  skipped when it is not installed.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    LIMITS,
    SMART_SUBSTITUTIONS,
    EncodingError,
    clusters,
    count_units,
    describe,
    detect,
    non_gsm7,
    segments,
    smart_substitute,
    truncate,
)
from host.errors import SmshostError

EURO = "\u20ac"
GRIN = "\U0001f600"  # 😀, outside the BMP: a surrogate pair in UTF-16
A_ACUTE = "\u00e1"  # á, not in the default alphabet
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: 8 units
THUMB_TONE = "\U0001f44d\U0001f3fd"  # thumbs up + medium skin tone: 4 units
FLAG_FR = "\U0001f1eb\U0001f1f7"  # two regional indicators: 4 units

EXTENSION_CHARS = "\x0c^{}\\[~]|" + EURO
# The default alphabet, row by row as printed in TS 23.038 6.2.1 (0x1B, the escape, left out).
BASIC_CHARS = (
    "@£$¥èéùìòÇ\nØø\rÅå" "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ" " !\"#¤%&'()*+,-./" "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO" "PQRSTUVWXYZÄÖÑÜ§" "¿abcdefghijklmno" "pqrstuvwxyzäöñüà"
)


# --- tables -----------------------------------------------------------------------------

def test_table_sizes_and_codes() -> None:
    assert len(GSM7_BASIC) == 127 and len(GSM7_EXTENSION) == 10
    assert sorted(GSM7_BASIC.values()) == [c for c in range(128) if c != 0x1B]
    assert set(GSM7_EXTENSION) == set(EXTENSION_CHARS)
    assert set(GSM7_BASIC) == set(BASIC_CHARS)
    assert not set(GSM7_BASIC) & set(GSM7_EXTENSION)


@pytest.mark.parametrize(("code", "codepoint"), [
    (0x00, 0x40), (0x01, 0xA3), (0x02, 0x24), (0x09, 0xC7), (0x0A, 0x0A), (0x0D, 0x0D),
    (0x10, 0x394), (0x11, 0x5F), (0x15, 0x3A9), (0x1F, 0xC9), (0x24, 0xA4), (0x40, 0xA1),
    (0x5F, 0xA7), (0x60, 0xBF), (0x7F, 0xE0),
])
def test_basic_table_spot_checks(code: int, codepoint: int) -> None:
    # Exact code points matter: Δ is GREEK CAPITAL DELTA (U+0394), not INCREMENT (U+2206).
    assert GSM7_BASIC[chr(codepoint)] == code


def test_extension_codes() -> None:
    assert dict(GSM7_EXTENSION) == {"\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29,
                                    "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
                                    "|": 0x40, EURO: 0x65}


@pytest.mark.parametrize("ch", list(BASIC_CHARS))
def test_every_basic_char_costs_one_septet(ch: str) -> None:
    assert detect(ch) == "gsm7"
    assert count_units(ch) == 1
    s = segments(ch * 160)
    assert (s.encoding, s.units, s.segments) == ("gsm7", 160, 1)


@pytest.mark.parametrize("ch", list(EXTENSION_CHARS))
def test_every_extension_char_costs_two_septets(ch: str) -> None:
    assert detect(ch) == "gsm7"
    assert count_units(ch) == 2
    assert segments(ch * 80).segments == 1  # 160 septets
    s = segments(ch * 81)  # 162 septets: 76 per part (152), never 76.5
    assert (s.units, s.segments, s.part_units) == (162, 2, (152, 10))


def test_tables_match_gsm0338_codec() -> None:
    codec = pytest.importorskip("gsm0338")
    assert codec  # registers the "gsm03.38" codec
    one: set[str] = set()
    two: set[str] = set()
    for cp in range(0x3000):  # every GSM character is below U+3000 (€ is U+20AC)
        ch = chr(cp)
        if 0xD800 <= cp < 0xE000 or ch == "\x1b":  # the codec passes ESC through as 0x1B
            continue
        try:
            data = ch.encode("gsm03.38")
        except UnicodeError:
            continue
        (one if len(data) == 1 else two).add(ch)
        if len(data) == 1:
            assert GSM7_BASIC[ch] == data[0]
        else:
            assert data[0] == 0x1B and GSM7_EXTENSION[ch] == data[1]
    assert one == set(GSM7_BASIC) and two == set(GSM7_EXTENSION)


# --- detection --------------------------------------------------------------------------

@pytest.mark.parametrize("ch", [
    "\u00e7",  # ç: only the capital Ç (0x09) is in the table
    A_ACUTE, "`", "\u2019", "\u201c", "\u201d", "\u2014", "\u00a0", "\x1b", "\t",
    "\u2126",  # OHM SIGN, a look-alike of GREEK CAPITAL OMEGA which is in the table
    "\u2206",  # INCREMENT, a look-alike of GREEK CAPITAL DELTA
    "\u00b5", "\u00c1", "\u00ea", "\u00ee", GRIN, "\u4e2d",
])
def test_characters_outside_force_ucs2(ch: str) -> None:
    assert detect(ch) == "ucs2"
    assert detect("plain text " + ch + " plain text") == "ucs2"
    assert non_gsm7("a" + ch + "b" + ch) == [ch]


def test_c_cedilla() -> None:
    assert detect("\u00c7a va") == "gsm7"  # Ç
    assert detect("\u00e7a va") == "ucs2"  # ç


# --- research section 5.6 test vectors --------------------------------------------------

@pytest.mark.parametrize(("text", "encoding", "units", "count"), [
    ("a" * 160, "gsm7", 160, 1),
    ("a" * 161, "gsm7", 161, 2),
    ("a" * 306, "gsm7", 306, 2),
    ("a" * 307, "gsm7", 307, 3),
    ("a" * 159 + EURO, "gsm7", 161, 2),
    ("a" * 152 + EURO + "a" * 152, "gsm7", 306, 3),  # a naive ceil(306/153) says 2
    ("\u00e9" * 160, "gsm7", 160, 1),
    (A_ACUTE * 70, "ucs2", 70, 1),
    (A_ACUTE * 71, "ucs2", 71, 2),
    (A_ACUTE * 134, "ucs2", 134, 2),
    (A_ACUTE * 135, "ucs2", 135, 3),
    (GRIN * 35, "ucs2", 70, 1),
    (GRIN * 36, "ucs2", 72, 2),
    (A_ACUTE * 66 + GRIN + A_ACUTE * 66, "ucs2", 134, 3),  # a naive ceil(134/67) says 2
    ("a" * 1530, "gsm7", 1530, 10),
    ("a" * 1531, "gsm7", 1531, 11),
])
def test_research_vectors(text: str, encoding: str, units: int, count: int) -> None:
    s = segments(text)
    assert (s.encoding, s.units, s.segments) == (encoding, units, count)
    assert "".join(s.parts) == text


# --- boundaries -------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "count", "per", "remaining"), [
    (160, 1, 160, 0), (161, 2, 153, 145), (306, 2, 153, 0), (307, 3, 153, 152),
])
def test_gsm7_boundaries(n: int, count: int, per: int, remaining: int) -> None:
    s = segments("x" * n)
    assert (s.segments, s.per_segment, s.remaining) == (count, per, remaining)
    assert all(u <= per for u in s.part_units)


@pytest.mark.parametrize(("n", "count", "per", "remaining"), [
    (70, 1, 70, 0), (71, 2, 67, 63), (134, 2, 67, 0), (135, 3, 67, 66),
])
def test_ucs2_boundaries(n: int, count: int, per: int, remaining: int) -> None:
    s = segments("\u4e2d" * n)
    assert (s.encoding, s.segments, s.per_segment, s.remaining) == ("ucs2", count, per,
                                                                    remaining)


def test_escape_on_the_153_boundary_moves_whole() -> None:
    # 152 septets + € (2) = 154 > 153: the ESC/€ pair opens part 2; part 1 holds 152.
    s = segments("a" * 152 + EURO + "b" * 10)
    assert s.parts == ("a" * 152, EURO + "b" * 10)
    assert s.part_units == (152, 12)
    # 151 + 2 = 153 exactly: the pair still fits in part 1.
    s = segments("a" * 151 + EURO + "b" * 10)
    assert s.parts == ("a" * 151 + EURO, "b" * 10)
    assert s.part_units == (153, 10)


def test_escape_on_the_160_boundary_of_a_single_message() -> None:
    assert segments("a" * 158 + "[").segments == 1  # 158 + 2 = 160
    s = segments("a" * 159 + "[")  # 161: concatenated, 153 + 8
    assert (s.segments, s.part_units) == (2, (153, 8))


def test_escapes_drift_adds_a_part() -> None:
    # "aa" + 152 x "€" = 2 + 304 = 306 septets; naive ceil(306/153) = 2.
    # Part 1: "aa" + 75 "€" = 152 (a 76th would make 154). Part 2: 76 "€" = 152.
    # Part 3: the last "€" = 2.
    s = segments("aa" + EURO * 152)
    assert (s.units, s.segments, s.part_units) == (306, 3, (152, 152, 2))
    # "a" + 152 x "€" = 305: part 1 "a" + 76 "€" = 153, part 2 76 "€" = 152; 2 parts.
    assert segments("a" + EURO * 152).part_units == (153, 152)


def test_surrogate_pair_on_the_67_boundary_moves_whole() -> None:
    # 66 units + 😀 (2) = 68 > 67: the pair opens part 2.
    s = segments(A_ACUTE * 66 + GRIN + A_ACUTE * 10)
    assert s.parts == (A_ACUTE * 66, GRIN + A_ACUTE * 10)
    assert s.part_units == (66, 12)
    # 65 + 2 = 67 exactly: it fits.
    s = segments(A_ACUTE * 65 + GRIN + A_ACUTE * 10)
    assert s.part_units == (67, 10)
    for part in s.parts:
        assert len(part.encode("utf-16-be")) // 2 <= 67


def test_emoji_only_parts_hold_33() -> None:
    s = segments(GRIN * 36)  # 72 units; 67 is odd, so 33 emoji (66 units) per part
    assert s.parts == (GRIN * 33, GRIN * 3)
    assert s.part_units == (66, 6)


# --- grapheme clusters ------------------------------------------------------------------

def test_clusters() -> None:
    text = FAMILY + "x" + FLAG_FR + "\U0001f1e9\U0001f1ea" + THUMB_TONE + "e\u0301\r\n\n"
    assert clusters(text) == [FAMILY, "x", FLAG_FR, "\U0001f1e9\U0001f1ea", THUMB_TONE,
                              "e\u0301", "\r\n", "\n"]
    assert clusters("") == []
    assert clusters("\u0301a") == ["\u0301", "a"]  # a leading mark stands alone
    assert clusters("\U0001f1eb\U0001f1f7\U0001f1e9") == [FLAG_FR, "\U0001f1e9"]


@pytest.mark.parametrize(("cluster", "units"), [
    (FAMILY, 8), (THUMB_TONE, 4), (FLAG_FR, 4), ("e\u0301", 2), ("\u2764\ufe0f", 2),
])
def test_cluster_on_the_boundary_moves_whole(cluster: str, units: int) -> None:
    head = A_ACUTE * (67 - units + 1)  # one unit too many for the cluster to fit
    s = segments(head + cluster + "z" * 10)  # 78 units: concatenated
    assert s.parts == (head, cluster + "z" * 10)
    assert s.part_units == (67 - units + 1, units + 10)


def test_oversized_cluster_is_cut_between_code_points() -> None:
    text = "a" + "\u0301" * 100  # one cluster of 101 units: larger than a whole part
    s = segments(text)
    assert "".join(s.parts) == text
    assert s.part_units == (67, 34)


def test_crlf_stays_together() -> None:
    s = segments("a" * 152 + "\r\n" + "b" * 10)  # 164 septets
    assert s.parts == ("a" * 152, "\r\n" + "b" * 10)


# --- truncate ---------------------------------------------------------------------------

def test_truncate() -> None:
    assert truncate("") == ""
    assert truncate("hello") == "hello"
    assert truncate("a" * 160) == "a" * 160
    assert truncate("a" * 200) == "a" * 160
    assert truncate(A_ACUTE * 100) == A_ACUTE * 70


def test_truncate_never_cuts_an_escape() -> None:
    assert truncate("a" * 159 + EURO) == "a" * 159  # € would need septets 160 and 161
    assert truncate("a" * 158 + EURO + "b") == "a" * 158 + EURO  # 160 exactly


def test_truncate_never_cuts_a_surrogate_pair_or_cluster() -> None:
    assert truncate(A_ACUTE * 69 + GRIN) == A_ACUTE * 69
    assert truncate(A_ACUTE * 68 + GRIN) == A_ACUTE * 68 + GRIN
    assert truncate(A_ACUTE * 65 + FAMILY) == A_ACUTE * 65  # 65 + 8 > 70


def test_truncate_uses_the_encoding_of_the_whole_text() -> None:
    text = "a" * 100 + A_ACUTE
    cut = truncate(text)
    assert cut == "a" * 70  # 70 UCS-2 units
    assert segments(cut, "ucs2").segments == 1 and segments(cut).segments == 1
    assert truncate("a" * 100, "ucs2") == "a" * 70


# --- empty, forced encodings, describe --------------------------------------------------

def test_empty_text() -> None:
    s = segments("")
    assert (s.encoding, s.units, s.segments, s.remaining, s.parts) == ("gsm7", 0, 1, 160,
                                                                        ("",))
    assert describe("")["remaining"] == 160


def test_forced_encodings() -> None:
    s = segments("a" * 71, "ucs2")
    assert (s.encoding, s.units, s.segments) == ("ucs2", 71, 2)
    assert segments("a" * 10, "GSM-7").encoding == "gsm7"
    assert segments("a", "UCS2").encoding == "ucs2"
    with pytest.raises(EncodingError, match="not GSM-7"):
        segments("caf" + A_ACUTE, "gsm7")
    with pytest.raises(EncodingError, match="unknown"):
        segments("a", "latin1")
    assert issubclass(EncodingError, SmshostError) and issubclass(EncodingError, ValueError)


def test_describe() -> None:
    assert describe("Hello " + EURO) == {
        "encoding": "gsm7", "segments": 1, "units": 8, "unit": "septet",
        "per_segment": 160, "remaining": 152, "non_gsm7": [],
    }
    d = describe("Caf" + A_ACUTE + " " + GRIN + " " + "x" * 70)
    # 4 + 1 + 2 + 1 + 70 = 78 UTF-16 units -> 2 parts: 67 + 11
    assert d == {"encoding": "ucs2", "segments": 2, "units": 78, "unit": "utf16",
                 "per_segment": 67, "remaining": 56, "non_gsm7": [A_ACUTE, GRIN]}


# --- a long mixed text ------------------------------------------------------------------

LONG_GSM = (
    "Dear customer,\nyour order #4411 [express] ships today. Total: 59,90" + EURO
    + " (VAT incl.) - questions? Reply HELP or visit {site}/help~faq. "
) * 6


def test_long_mixed_gsm_text() -> None:
    line = LONG_GSM[: len(LONG_GSM) // 6]
    # 131 characters, 6 of them from the extension table ([ ] € { } ~): 137 septets.
    assert len(line) == 131 and count_units(line) == 137
    s = segments(LONG_GSM)
    assert (s.encoding, s.units) == ("gsm7", 6 * 137)
    assert s.segments == 6  # 822 / 153 = 5.4: five full parts of 153 and one of 57
    assert s.part_units == (153,) * 5 + (57,)
    assert "".join(s.parts) == LONG_GSM
    assert all(count_units(p) == u <= 153 for p, u in zip(s.parts, s.part_units, strict=True))


def test_long_mixed_ucs2_text() -> None:
    text = LONG_GSM.replace("Dear", "\u201cDear") + THUMB_TONE * 3 + FAMILY
    s = segments(text)
    # 6 x 131 = 786 BMP characters + 6 quotes, 1 unit each; 3 x 4 (thumbs) + 8 (family)
    assert (s.encoding, s.units) == ("ucs2", 786 + 6 + 12 + 8)
    assert s.segments == 13 and "".join(s.parts) == text  # 812 / 67 = 12.1
    assert s.parts[-1].endswith(FAMILY)


# --- optional smart substitution --------------------------------------------------------

def test_smart_substitution_is_off_by_default() -> None:
    text = "\u201cIt\u2019s done\u201d \u2014 ok\u2026"
    assert detect(text) == "ucs2" and segments(text).encoding == "ucs2"
    assert smart_substitute(text) == "\"It's done\" - ok..."
    assert detect(smart_substitute(text)) == "gsm7"
    assert smart_substitute("caf" + A_ACUTE + " " + GRIN) == "caf" + A_ACUTE + " " + GRIN


def test_smart_substitution_values_are_gsm7() -> None:
    for src, dst in SMART_SUBSTITUTIONS.items():
        assert detect(src) == "ucs2", unicodedata.name(src, repr(src))
        assert detect(dst) == "gsm7"


# --- properties against byte-level references -------------------------------------------

def ucs2_reference(text: str) -> int:
    """Segment count from UTF-16 bytes: 134-byte parts, backing off a cut high surrogate."""
    data = text.encode("utf-16-be")
    if len(data) <= 140:
        return 1
    count, i = 0, 0
    while i < len(data):
        end = min(i + 134, len(data))
        if end < len(data) and 0xD8 <= data[end - 2] <= 0xDB:
            end -= 2
        count, i = count + 1, end
    return count


def gsm7_reference(text: str) -> int:
    """Segment count from gsm0338 septets: 153 per part, backing off a cut ESC."""
    data = text.encode("gsm03.38")
    if len(data) <= 160:
        return 1
    count, i = 0, 0
    while i < len(data):
        end = min(i + 153, len(data))
        if end < len(data) and data[end - 1] == 0x1B:
            end -= 1
        count, i = count + 1, end
    return count


# single code points that form no cluster with their neighbours ("\r" left out: CR LF)
GSM_SIMPLE = [c for c in BASIC_CHARS if c != "\r"] + list(EXTENSION_CHARS)
UCS_SIMPLE = GSM_SIMPLE + [A_ACUTE, GRIN, "\u4e2d", "\U0001f680", "\u00e7"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(UCS_SIMPLE), max_size=700).map("".join))
def test_counts_match_utf16_reference(text: str) -> None:
    s = segments(text, "ucs2")
    assert s.units == len(text.encode("utf-16-be")) // 2
    assert s.segments == ucs2_reference(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(GSM_SIMPLE), max_size=1200).map("".join))
def test_counts_match_gsm0338_reference(text: str) -> None:
    pytest.importorskip("gsm0338")
    s = segments(text)
    assert s.encoding == "gsm7"
    assert s.units == len(text.encode("gsm03.38"))
    assert s.segments == gsm7_reference(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_invariants_on_any_text(text: str) -> None:
    s = segments(text)
    single, multi = LIMITS[s.encoding]
    assert "".join(s.parts) == text
    assert len(s.parts) == s.segments == len(s.part_units)
    assert s.per_segment == (single if s.segments == 1 else multi)
    assert all(count_units(p, s.encoding) == u <= s.per_segment
               for p, u in zip(s.parts, s.part_units, strict=True))
    assert s.remaining == s.per_segment - s.part_units[-1]
    cut = truncate(text)
    assert text.startswith(cut) and count_units(cut, s.encoding) <= single
    assert (cut == text) == (s.segments == 1)
