"""The fast paths of host/encoding.py give exactly what the old implementation gave.

``tests/encoding_reference.py`` is the module before the fast paths (issue 18),
verbatim: every public function of the current module is compared with it over a
generated corpus (every GSM-7 character, every ASCII character that is not GSM-7, NUL,
lone surrogates, lengths at each part boundary with escapes, surrogate pairs and CR LF
placed across the boundary, clusters bigger than a part, random mixes), in every
encoding a caller may ask for.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.encoding_reference as ref
from host import encoding as enc
from host import graphemes

EURO = "\u20ac"
GRIN = "\U0001f600"
A_ACUTE = "\u00e1"  # not in GSM-7
LONE = "\ud83d"  # a lone high surrogate (the API refuses it; the functions still count it)
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
FLAG_FR = "\U0001f1eb\U0001f1f7"
THUMB_TONE = "\U0001f44d\U0001f3fd"
E_COMBINING = "e\u0301"

GSM_ALL = "".join(enc.GSM7_BASIC) + "".join(enc.GSM7_EXTENSION)
ASCII_NOT_GSM = "".join(chr(c) for c in range(128) if chr(c) not in GSM_ALL)
BOUNDARIES = sorted({0, 1, 2} | {n + d for n in (70, 160) for d in (-1, 0, 1)}
                    | {k * p + d for p in (67, 153) for k in range(1, 4) for d in (-1, 0, 1)})
FILLERS = ("a", A_ACUTE)
ODD = (EURO, "[", "\r\n", GRIN, LONE, FAMILY, FLAG_FR, THUMB_TONE, E_COMBINING, "\x00",
       "`", "\n", "\r")


def corpus() -> Iterator[str]:
    yield ""
    for ch in GSM_ALL + ASCII_NOT_GSM + LONE + GRIN:
        yield ch
        yield ch * 161
        yield ch * 307
    for n in BOUNDARIES:
        for fill in FILLERS:
            yield fill * n
            for odd in ODD:  # the odd piece just before, across and after a boundary
                yield fill * n + odd + fill * n
                yield fill * max(n - 1, 0) + odd + fill * 10
                yield odd + fill * n
    yield "e" + "\u0301" * 200  # a cluster bigger than a whole part
    yield "a" * 100 + "e" + "\u0301" * 200 + FAMILY * 30
    yield FLAG_FR * 40 + "\U0001f1eb"  # an odd regional indicator at the end
    rng = random.Random(18)
    pools = [GSM_ALL, GSM_ALL + A_ACUTE, "abc " + GRIN + EURO,
             "ab\r\n" + E_COMBINING + "\u200d\ufe0f" + GRIN + FLAG_FR + THUMB_TONE + LONE,
             GSM_ALL + ASCII_NOT_GSM + "\u4e2d\u00e7"]
    for _ in range(400):
        pool = rng.choice(pools)
        yield "".join(rng.choice(pool) for _ in range(rng.randrange(0, 700)))


CORPUS = list(corpus())


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """The result, or the exception's type name and message (the classes differ)."""
    try:
        value = fn(*args)
    except ValueError as exc:
        return (type(exc).__name__, str(exc))
    return dataclasses.astuple(value) if dataclasses.is_dataclass(value) else value


def same(text: str) -> None:
    for encoding in (None, "gsm7", "UCS-2"):
        for name in ("segments", "truncate", "count_units", "describe"):
            new = outcome(getattr(enc, name), text, encoding)
            assert new == outcome(getattr(ref, name), text, encoding), (name, encoding, text)
        assert outcome(enc.analyse, text, encoding) == outcome(ref.segments, text, encoding)
    assert enc.detect(text) == ref.detect(text)
    assert enc.non_gsm7(text) == ref.non_gsm7(text)
    assert enc.clusters(text) == ref.clusters(text)


@pytest.mark.parametrize("chunk", range(8))
def test_every_function_matches_the_reference_over_the_corpus(chunk: int) -> None:
    for text in CORPUS[chunk::8]:
        same(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=400))
def test_matches_the_reference_on_any_text(text: str) -> None:
    same(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(GSM_ALL[:20]) + list(ODD) + ["a" * 60]), max_size=30))
def test_matches_the_reference_on_odd_pieces_anywhere(pieces: list[str]) -> None:
    same("".join(pieces))


def test_no_gsm7_or_ascii_character_joins_a_cluster() -> None:
    # graphemes.simple() trusts this to skip the per-character rules for such texts
    for ch in set(GSM_ALL) | {chr(c) for c in range(128)}:
        assert not graphemes._is_extend(ch) and not graphemes._is_regional(ch), repr(ch)


def test_short_texts_are_remembered_long_ones_are_not() -> None:
    short, long = "x" * 74, "y" * 2000
    assert enc.segments(short) is enc.segments(short)
    assert enc.segments(short, "ucs2") is not enc.segments(short)
    assert enc.segments(short, "ucs2").encoding == "ucs2"
    assert enc.segments(long) is not enc.segments(long)
    assert enc.segments(long) == enc.analyse(long)


def test_a_refusal_is_not_remembered_as_an_answer() -> None:
    for _ in range(2):
        with pytest.raises(enc.EncodingError, match="not GSM-7"):
            enc.segments(A_ACUTE, "gsm7")
    assert enc.segments(A_ACUTE).encoding == "ucs2"


def test_learned_plain_characters_never_hide_a_joining_one() -> None:
    # "ж" and "ш" are learned as joining nothing; a combining mark after them still joins
    assert graphemes.simple("жш", frozenset())
    assert graphemes.simple("шж", frozenset())  # now from the learned set
    assert enc.clusters("ж\u0301ш") == ["ж\u0301", "ш"] == ref.clusters("ж\u0301ш")
    assert not graphemes.simple("ж\u0301", frozenset())
