"""Regular expressions someone else wrote: RE2, linear time (SPEC R4).

Every pattern smshost matches against what a client or a broker sends is compiled
here: route patterns (:mod:`host.routing.patterns`) and every regular expression a
broker definition declares (``<field pattern>``, the ``regex=`` source, ``<when ...
matches>``, the tests of ``<response>``). Python's ``re`` backtracks: ``(a+)+``
against 32 a's and a "!" runs for minutes on the event loop, where RE2 answers in
microseconds. RE2 has no backreferences nor lookaround; a pattern using them is
refused with a reason saying so, when the configuration or the definition loads.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class PatternError(ValueError):
    """RE2 refuses a pattern; the message is a reason the author can act on."""


@lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (``search``, ``fullmatch``, ``groups`` as ``re``'s);
    :class:`PatternError` when RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        raise PatternError(_reason(pattern, exc)) from None
    except UnicodeEncodeError:  # a lone surrogate: no pattern RE2 (UTF-8) can hold
        raise PatternError("the pattern is not valid text (a lone surrogate)") from None


def _reason(pattern: str, exc: Exception) -> str:
    reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    if ("escape sequence" in reason and any(f"\\{d}" in pattern for d in "123456789")) \
            or "(?P=" in pattern:
        return reason + " (backreferences are not supported)"
    if "perl operator" in reason and "(?" in pattern:
        return reason + " (lookahead and lookbehind are not supported)"
    return reason
