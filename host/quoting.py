"""Text shown to a person inside a message: quoted as it is, one line.

``repr`` is for Python source, not for people: it doubles every backslash, so the
pattern ``\\d{4}`` an operator wrote reads back as ``'\\\\d{4}'``, and JSON then doubles
it again. :func:`quoted` keeps the text as written and escapes only what would break
the line or cannot be seen (line breaks, tabs, other control and format characters).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quoted(text: str, limit: int | None = None) -> str:
    """``text`` in single quotes, backslashes kept, invisible characters escaped; with
    ``limit``, its first ``limit`` characters and "..." when it is longer."""
    cut = limit is not None and len(text) > limit
    shown = text[:limit] if cut else text
    return "'" + "".join(c if c.isprintable() else _escape(c) for c in shown) + \
        ("...'" if cut else "'")


def _escape(char: str) -> str:
    return _NAMED.get(char) or repr(char)[1:-1]
