"""Strings a route pattern matches, generated from its parsed structure (bounded).

Used by the shadowed-route check (:mod:`host.routing.shadows`). RE2 cannot tell
whether one pattern's language contains another's, so the check tries strings of the
later pattern. They come from Python's parser of the same pattern (``re._parser``): the
two syntaxes agree on what route patterns use (literals, classes, ``.``, repeats,
alternation, groups, flags); a pattern Python cannot parse (``\\pL``, ``\\z``, ``\\Q``...)
gets no samples, and every sample is checked against the RE2 pattern itself, so a
disagreement in meaning also gives no samples rather than wrong ones.

:func:`samples` returns the strings and whether they are the pattern's whole language
(a literal, a short alternation of literals, a small class): then the check is exact.
Otherwise the strings vary one part at a time (each alternative, each character
candidate, repeat counts near the bounds) from a base string, within ``LIMIT``.
"""

from __future__ import annotations

import importlib
import itertools
import math
import random
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from host.routing.patterns import compile_pattern

_parser: Any = importlib.import_module("re._parser")  # sre_parse, without its warning
codes: Any = importlib.import_module("re._constants")

LIMIT = 256  # strings kept per part of a pattern, and in all
VARIED = 16  # parts of a long sequence varied one at a time
SMALL_CLASS = 32  # a class this small is enumerated whole
REPEAT_CAP = 64  # longest repeat count tried, unless an earlier pattern's bound is longer
REPEAT_MAX = 1001  # one past RE2's largest bound
# Characters tried where a pattern allows many: letters, digits, the punctuation of
# numbers and text, a line break, a tab, non-ASCII and a character outside the BMP.
BASE_ALPHABET = "aZ09 +-._\n\té€😀"
_SPACE = " \t\n\r\f"
_CATEGORIES: dict[Any, Callable[[str], bool]] = {
    codes.CATEGORY_DIGIT: lambda ch: "0" <= ch <= "9",
    codes.CATEGORY_NOT_DIGIT: lambda ch: not "0" <= ch <= "9",
    codes.CATEGORY_SPACE: lambda ch: ch in _SPACE,
    codes.CATEGORY_NOT_SPACE: lambda ch: ch not in _SPACE,
    codes.CATEGORY_WORD: lambda ch: ch.isascii() and (ch.isalnum() or ch == "_"),
    codes.CATEGORY_NOT_WORD: lambda ch: not (ch.isascii() and (ch.isalnum() or ch == "_")),
}


class Unsupported(Exception):
    """The pattern uses something the generator does not model."""


@dataclass(frozen=True, slots=True)
class Samples:
    strings: tuple[str, ...]
    complete: bool  # the strings are every string the pattern matches


def parse(pattern: str) -> Any:
    """Python's parse of ``pattern``; raise :class:`Unsupported` when it has none."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. FutureWarning on "[[" (a POSIX class)
            return _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise Unsupported(str(exc)) from None


def samples(pattern: str, alphabet: str = BASE_ALPHABET,
            counts: Iterable[int] = ()) -> Samples | None:
    """Strings ``pattern`` matches whole, or None when none can be made.

    ``alphabet`` adds characters to try where the pattern allows many, ``counts``
    repeat counts to try (the check passes the earlier patterns' characters and bounds,
    so that what sets them apart is tried)."""
    compiled = compile_pattern(pattern)[0]
    if compiled is None:
        return None
    try:
        parsed = parse(pattern)
        gen = _Generator(_alphabet(alphabet), sorted(set(counts)))
        strings, complete = gen.sequence(parsed.data, parsed.state.flags)
    except Unsupported:
        return None
    found = tuple(s for s in dict.fromkeys(strings) if _encodable(s))
    if not found or any(compiled.fullmatch(s) is None for s in found):
        return None  # Python read the pattern otherwise than RE2 does: no claim
    return Samples(found, complete)


def _encodable(text: str) -> bool:
    """RE2 matches UTF-8: a lone surrogate (from a range's edge) cannot be tried."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def pattern_chars(pattern: str) -> tuple[str, list[int]]:
    """Characters and repeat bounds written in ``pattern`` (for :func:`samples`)."""
    chars: list[str] = []
    bounds: list[int] = []
    try:
        _collect(parse(pattern).data, chars, bounds)
    except Unsupported:
        pass
    return "".join(chars), bounds


def _collect(data: Sequence[tuple[Any, Any]], chars: list[str], bounds: list[int]) -> None:
    for op, av in data:
        if op in (codes.LITERAL, codes.NOT_LITERAL):
            chars.append(chr(av))
        elif op is codes.RANGE:
            lo, hi = av
            chars.extend(chr(c) for c in (lo - 1, lo, hi, hi + 1) if 0 <= c <= 0x10FFFF)
        elif op is codes.IN:
            _collect(av, chars, bounds)
        elif op is codes.BRANCH:
            for alternative in av[1]:
                _collect(alternative, chars, bounds)
        elif op is codes.SUBPATTERN:
            _collect(av[3], chars, bounds)
        elif op in (codes.MAX_REPEAT, codes.MIN_REPEAT):
            bounds.extend(b for b in av[:2] if b is not codes.MAXREPEAT)
            _collect(av[2], chars, bounds)


def _alphabet(extra: str) -> list[str]:
    """The base characters, ``extra``, and the other case of each."""
    chars = dict.fromkeys(BASE_ALPHABET + extra)
    for ch in list(chars):
        if len(ch.swapcase()) == 1:
            chars.setdefault(ch.swapcase())
    return [ch for ch in chars if not 0xD800 <= ord(ch) <= 0xDFFF]


class _Generator:
    def __init__(self, alphabet: list[str], counts: list[int]) -> None:
        self.alphabet = alphabet
        self.counts = counts
        self.random = random.Random(0)  # the same samples every run

    def sequence(self, data: Sequence[tuple[Any, Any]], flags: int) -> tuple[list[str], bool]:
        parts = [self.node(op, av, flags) for op, av in data]
        return self.combine([p[0] for p in parts], all(p[1] for p in parts))

    def combine(self, parts: list[list[str]], complete: bool) -> tuple[list[str], bool]:
        """Strings of the parts in a row: all of them when few, else a base string
        varied one part at a time, plus a few random mixes."""
        if any(not p for p in parts):
            return [], complete
        if math.prod(len(p) for p in parts) <= LIMIT:
            return ["".join(t) for t in itertools.product(*parts)], complete
        base = [p[0] for p in parts]
        out = ["".join(base)]
        varied = [i for i, p in enumerate(parts) if len(p) > 1]
        if len(varied) > VARIED:  # the first and last parts, and a spread between
            step = (len(varied) - 1) / (VARIED - 1)
            varied = sorted({varied[round(i * step)] for i in range(VARIED)})
        for i in varied:
            for choice in parts[i][1:LIMIT // len(varied) + 1]:
                out.append("".join(base[:i] + [choice] + base[i + 1:]))
        out += ["".join(self.random.choice(p) for p in parts) for _ in range(16)]
        return _thin(out), False

    def node(self, op: Any, av: Any, flags: int) -> tuple[list[str], bool]:
        if op is codes.LITERAL:
            return _cased(chr(av), flags), True
        if op is codes.NOT_LITERAL:
            banned = set(_cased(chr(av), flags))
            return [ch for ch in self.alphabet if ch not in banned], False
        if op is codes.ANY:
            dotall = bool(flags & re.DOTALL)
            return [ch for ch in self.alphabet if dotall or ch != "\n"], False
        if op is codes.IN:
            return self.char_class(av, flags)
        if op is codes.BRANCH:
            found = [self.sequence(alternative, flags) for alternative in av[1]]
            return _bounded([s for f in found for s in f[0]], all(f[1] for f in found))
        if op is codes.SUBPATTERN:
            _, add, remove, data = av
            return self.sequence(data, (flags | add) & ~remove)
        if op in (codes.MAX_REPEAT, codes.MIN_REPEAT):
            return self.repeat(av, flags)
        if op is codes.AT:
            return [""], True  # anchors at the ends; elsewhere the RE2 check drops them
        raise Unsupported(f"{op}")

    def char_class(self, items: list[tuple[Any, Any]], flags: int) -> tuple[list[str], bool]:
        negated = bool(items) and items[0][0] is codes.NEGATE
        body = items[1:] if negated else items
        if not negated and all(op in (codes.LITERAL, codes.RANGE) for op, _ in body):
            members = [chr(av) if op is codes.LITERAL else None for op, av in body]
            size = sum(1 if op is codes.LITERAL else av[1] - av[0] + 1 for op, av in body)
            if size <= SMALL_CLASS:
                chars: list[str] = []
                for (_op, av), member in zip(body, members, strict=True):
                    chars += [member] if member else [chr(c) for c in range(av[0], av[1] + 1)]
                return list(dict.fromkeys(c for ch in chars for c in _cased(ch, flags))), True
        extra: list[str] = []
        _collect(body, extra, [])
        candidates = dict.fromkeys(self.alphabet + extra)
        return [ch for ch in candidates if _in_class(ch, body, flags) != negated], False

    def repeat(self, av: tuple[int, Any, Any], flags: int) -> tuple[list[str], bool]:
        low, high, data = av
        inner, inner_complete = self.sequence(data, flags)
        top = REPEAT_MAX if high is codes.MAXREPEAT else high
        if high - low <= 4:
            counts, complete = list(range(low, high + 1)), inner_complete
        else:  # near the bounds, and each bound of the earlier patterns and one past it
            wanted = {low, low + 1, low + 2, max(low, min(top, REPEAT_CAP)), *self.counts,
                      *(c + 1 for c in self.counts)}
            counts, complete = sorted(c for c in wanted if low <= c <= top), False
        out: list[str] = []
        for count in counts:
            strings, whole = self.combine([inner] * count, True)
            complete = complete and whole
            out += strings
        return _bounded(out, complete)


def _in_class(ch: str, items: Iterable[tuple[Any, Any]], flags: int) -> bool:
    for variant in _cased(ch, flags):
        code = ord(variant)
        for op, av in items:
            if (op is codes.LITERAL and av == code) or (
                    op is codes.RANGE and av[0] <= code <= av[1]) or (
                    op is codes.CATEGORY and _CATEGORIES.get(av, _never)(variant)):
                return True
    return False


def _never(ch: str) -> bool:
    raise Unsupported("a character category RE2 does not share")


def _cased(ch: str, flags: int) -> list[str]:
    other = ch.swapcase()
    if flags & re.IGNORECASE and other != ch and len(other) == 1:
        return [ch, other]
    return [ch]


def _bounded(strings: list[str], complete: bool) -> tuple[list[str], bool]:
    unique = list(dict.fromkeys(strings))
    return _thin(unique), complete and len(unique) <= LIMIT


def _thin(strings: list[str]) -> list[str]:
    """At most LIMIT strings: the first half of them (the shortest repeats, the first
    alternatives, each candidate in the first place) and an even spread of the rest."""
    unique = list(dict.fromkeys(strings))
    if len(unique) <= LIMIT:
        return unique
    head, rest = unique[:LIMIT // 2], unique[LIMIT // 2:]
    step = len(rest) / (LIMIT - len(head))
    return head + [rest[int(i * step)] for i in range(LIMIT - len(head))]
