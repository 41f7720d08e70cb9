"""Route patterns: RE2 (linear time), always matched against the whole field (SPEC R4)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

from host.quoting import quoted

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> tuple[Any | None, str | None]:
    """(compiled, None), or (None, a reason an operator can act on)."""
    try:
        return re2.compile(pattern, options=_OPTIONS), None
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        hint = ""
        if "escape sequence" in reason and any(f"\\{d}" in pattern for d in "123456789"):
            hint = " (backreferences are not supported)"
        elif "perl operator" in reason and "(?" in pattern:
            hint = " (lookahead and lookbehind are not supported)"
        return None, f"bad pattern {quoted(pattern)}: {reason}{hint}"
