"""Route patterns: RE2 (linear time, :mod:`host.regex`), always matched against the
whole field (SPEC R4)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from host.quoting import quoted
from host.regex import PatternError, compile_re2


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> tuple[Any | None, str | None]:
    """(compiled, None), or (None, a reason an operator can act on)."""
    try:
        return compile_re2(pattern), None
    except PatternError as exc:
        return None, f"bad pattern {quoted(pattern)}: {exc}"
