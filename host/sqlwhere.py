"""The ``where`` of a list query whose filters are each optional: the clauses of the
filters given, joined by ``and``, with their arguments in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def where(filters: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """``(" where c1 and c2", [v1, v2])`` for the ``(clause, value)`` pairs whose value
    is not None (``("", [])`` when none is): each clause holds one ``?``."""
    given = [(clause, value) for clause, value in filters if value is not None]
    if not given:
        return "", []
    return " where " + " and ".join(c for c, _ in given), [v for _, v in given]
