"""Routes an earlier route always wins over (SPEC R5): ``smshost check`` warns of them.

Routes are tried in order and the first whose pattern matches the whole field wins,
so a later route is *shadowed* when every string it matches is matched by an earlier
route. RE2 has no containment test, so the check proves what it can and samples the
rest (docs/routing.md says which is which):

* exact: an earlier route matches everything (``.*`` on a number field, ``(?s).*``
  or ``[\\s\\S]*`` on any); the same pattern on the same field; an earlier literal
  prefix followed by ``.*`` (``hook.*``) that every string of the later route starts
  with (``hookzz``, ``hook\\d+``); a later pattern whose every string was tried (a
  literal, a few alternatives, a small class);
* sampled: otherwise, strings made from the later pattern (:mod:`host.routing.samples`)
  are all matched by earlier routes of the same field. A sampled route may in rare
  cases still get a message the samples missed, so the warning says "probably".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from host.quoting import quoted
from host.routing.patterns import compile_pattern
from host.routing.samples import Unsupported, codes, parse, pattern_chars, samples

if TYPE_CHECKING:
    from host.routing.inbound import Route
    from host.routing.outbound import OutboundRoute

SINGLE_LINE = frozenset({"ani", "dnis", "number"})  # fields that hold no line break
_EVERY_CHAR = {(codes.CATEGORY_DIGIT, codes.CATEGORY_NOT_DIGIT),
               (codes.CATEGORY_SPACE, codes.CATEGORY_NOT_SPACE),
               (codes.CATEGORY_WORD, codes.CATEGORY_NOT_WORD)}


@dataclass(frozen=True, slots=True)
class Entry:
    """A route as the check sees it: its name, the field it matches, its pattern."""

    name: str
    field: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Shadow:
    route: str
    reason: str
    certain: bool  # proved; False when only sampled

    def describe(self, kind: str = "route") -> str:
        verb = "can never match" if self.certain else "probably never matches"
        return f"{kind} {self.route!r} {verb}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"route": self.route, "reason": self.reason, "certain": self.certain}


def shadowed(entries: Sequence[Entry]) -> list[Shadow]:
    """The later routes that earlier ones always win over, in order."""
    return list(_shadowed(tuple(entries)))


def inbound_shadows(routes: Sequence[Route]) -> list[Shadow]:
    """Shadowed inbound routes (the default route matches what is left: never one)."""
    return shadowed([Entry(r.name, r.type, r.pattern) for r in routes if not r.default])


def outbound_shadows(routes: Sequence[OutboundRoute]) -> list[Shadow]:
    """Shadowed outbound routes: an earlier route takes every number it matches, also
    when it then refuses the sender's classification."""
    return shadowed([Entry(r.name, "number", r.pattern) for r in routes])


@lru_cache(maxsize=32)
def _shadowed(entries: tuple[Entry, ...]) -> tuple[Shadow, ...]:
    found = []
    for i, later in enumerate(entries):
        shadow = _shadow(entries[:i], later)
        if shadow is not None:
            found.append(shadow)
    return tuple(found)


def _shadow(earlier: Sequence[Entry], later: Entry) -> Shadow | None:
    for entry in earlier:
        if _matches_everything(entry):
            return Shadow(later.name, f"route {entry.name!r} before it matches everything "
                          f"({entry.field} {quoted(entry.pattern)})", True)
    same = [e for e in earlier if e.field == later.field]
    for entry in same:
        if entry.pattern == later.pattern:
            return Shadow(later.name, f"route {entry.name!r} before it has the same "
                          f"pattern ({later.field} {quoted(later.pattern)})", True)
        prefix = _prefix_rule(entry, later)
        if prefix is not None:
            return Shadow(later.name, f"route {entry.name!r} before it matches every "
                          f"{later.field} that starts with {quoted(prefix)}", True)
    return _sampled(same, later) if same else None


def _sampled(same: list[Entry], later: Entry) -> Shadow | None:
    """Every string tried from ``later``'s pattern is matched by an earlier route."""
    chars, bounds = "", list[int]()
    for entry in same:
        more, found = pattern_chars(entry.pattern)
        chars, bounds = chars + more, bounds + found
    tried = samples(later.pattern, chars, bounds)
    if tried is None:
        return None
    takers: dict[str, None] = {}
    for text in tried.strings:
        taker = next((e for e in same if _compiled(e).fullmatch(text) is not None), None)
        if taker is None:
            return None
        takers[taker.name] = None
    names = " or ".join(repr(name) for name in takers)
    if tried.complete:
        return Shadow(later.name, f"every {later.field} it matches is matched by route "
                      f"{names} before it", True)
    return Shadow(later.name, f"each of {len(tried.strings)} strings made from its pattern "
                  f"is matched by route {names} before it (a sample)", False)


def _compiled(entry: Entry) -> Any:
    compiled, problem = compile_pattern(entry.pattern)
    assert problem is None, problem  # patterns were checked when the config loaded
    return compiled


def _nodes(entry: Entry) -> tuple[list[tuple[Any, Any]], int] | None:
    """The parsed pattern without anchors at its ends, and its flags."""
    try:
        parsed = parse(entry.pattern)
    except Unsupported:
        return None
    data = list(parsed.data)
    while data and data[0][0] is codes.AT:
        data.pop(0)
    while data and data[-1][0] is codes.AT:
        data.pop()
    while len(data) == 1 and data[0][0] is codes.SUBPATTERN and data[0][1][1:3] == (0, 0):
        data = list(data[0][1][3])
    return data, int(parsed.state.flags)


def _matches_everything(entry: Entry) -> bool:
    nodes = _nodes(entry)
    return nodes is not None and len(nodes[0]) == 1 and \
        _any_run(nodes[0][0], nodes[1], entry.field in SINGLE_LINE)


def _any_run(node: tuple[Any, Any], flags: int, single_line: bool) -> bool:
    """``node`` is ``X*`` where X is any character (of a field with or without line
    breaks)."""
    op, av = node
    if (op not in (codes.MAX_REPEAT, codes.MIN_REPEAT) or av[0] != 0
            or av[1] is not codes.MAXREPEAT or len(av[2]) != 1):
        return False
    (inner, arg), = av[2]
    if inner is codes.ANY:
        return single_line or bool(flags & 16)  # re.DOTALL
    if inner is codes.NOT_LITERAL:
        return single_line and arg == 10
    if inner is codes.IN:
        categories = {a for o, a in arg if o is codes.CATEGORY}
        return any(pair <= categories for pair in map(set, _EVERY_CHAR))
    return False


def _prefix_rule(earlier: Entry, later: Entry) -> str | None:
    """``P.*`` before a pattern whose strings all start with P (and hold no line break
    when ``.`` does not match one): the prefix P, else None."""
    first, second = _nodes(earlier), _nodes(later)
    if first is None or second is None or len(first[0]) < 2:
        return None
    (nodes, flags), (later_nodes, later_flags) = first, second
    prefix = _literals(nodes[:-1], flags)
    if prefix is None or len(prefix) != len(nodes) - 1:
        return None
    if not _any_run(nodes[-1], flags, True):
        return None
    start = _literals(later_nodes, later_flags, stop=True) or ""
    if not start.startswith(prefix):
        return None
    if not _any_run(nodes[-1], flags, later.field in SINGLE_LINE) and \
            _may_break_line(later_nodes, later_flags):
        return None
    return prefix


def _literals(nodes: Sequence[tuple[Any, Any]], flags: int, *, stop: bool = False
              ) -> str | None:
    """The literal characters ``nodes`` start with (all of them unless ``stop``)."""
    if flags & 2:  # re.IGNORECASE: a literal is two characters
        return None
    out = ""
    for op, av in nodes:
        if op is not codes.LITERAL:
            return out if stop else None
        out += chr(av)
    return out


def _may_break_line(nodes: Sequence[tuple[Any, Any]], flags: int) -> bool:
    """Whether a string of ``nodes`` may hold a line break (when unsure: yes)."""
    for op, av in nodes:
        if op is codes.LITERAL:
            if av == 10:
                return True
        elif op is codes.ANY:
            if flags & 16:
                return True
        elif op is codes.SUBPATTERN:
            if _may_break_line(av[3], (flags | av[1]) & ~av[2]):
                return True
        elif op in (codes.MAX_REPEAT, codes.MIN_REPEAT):
            if _may_break_line(av[2], flags):
                return True
        elif op is codes.BRANCH:
            if any(_may_break_line(alternative, flags) for alternative in av[1]):
                return True
        elif op is codes.IN:
            if _class_breaks_line(av):
                return True
        elif op is not codes.AT:
            return True
    return False


def _class_breaks_line(items: Sequence[tuple[Any, Any]]) -> bool:
    negated = bool(items) and items[0][0] is codes.NEGATE
    hit = False
    for op, av in items:
        if (op is codes.LITERAL and av == 10) or (op is codes.RANGE and av[0] <= 10 <= av[1]) or \
                (op is codes.CATEGORY and av in (codes.CATEGORY_SPACE, codes.CATEGORY_NOT_DIGIT,
                                              codes.CATEGORY_NOT_WORD)):
            hit = True
    return hit != negated
