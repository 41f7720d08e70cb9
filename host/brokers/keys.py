"""Which values a definition may name as a signature key (``<signature key>`` and
``broker-key``).

A signature is worth what its key is: a key the definition writes itself (``key="x"``),
one everybody can read (``{broker.name}``, a URL) or one the request carries
(``{message.text}``) lets anyone sign a webhook, and ``smshost check`` said "ok". A key
must be something the operator configures as a key, and nothing else:

* ``{options.Name}``: an option the definition declares ``secret="true"`` (for a
  public-key scheme, ``telnyx-ed25519``, any declared option: the key is public, the
  operator still sets it);
* ``{account.password}``: the account's secret, for ``key`` only (``broker-key`` is one
  key for every request, rendered without an account).

The value is made of such references alone (filters allowed), with no literal text.
Anything else is a load error of the definition, with its line.
"""

from __future__ import annotations

from collections.abc import Mapping

from host.brokers.specs import OptionSpec
from host.brokers.templates import Ref, Template
from host.quoting import quoted

PUBLIC_KEY_SCHEMES = frozenset({"telnyx-ed25519"})
"""Schemes whose key verifies and cannot sign: it need not be secret."""


def key_problem(attribute: str, template: Template, scheme: str,
                options: Mapping[str, OptionSpec]) -> str | None:
    """Why ``template`` (the value of ``attribute``) cannot be a signature key of
    ``scheme``, or None when it can."""
    per_account = attribute == "key"
    allowed = "{options.<an option declared secret=\"true\">}" + (
        " or {account.password}" if per_account else "")
    if not template.parts:
        return f'{attribute} is empty: name the key, {allowed}'
    if not per_account and any(r.namespace == "account" for r in template.refs):
        return (f"{attribute} {quoted(template.source, 80)} is one key for every request: "
                "it cannot use {account.*} (key is rendered for each account)")
    literal = next((p for p in template.parts if isinstance(p, str)), None)
    if literal is not None:
        return (f"{attribute} {quoted(template.source, 80)} holds literal text "
                f"({quoted(literal, 40)}): a key "
                f"written in the definition signs for anyone who reads it; use {allowed}")
    for ref in template.parts:
        assert isinstance(ref, Ref)
        problem = _ref_problem(ref, scheme, options, per_account)
        if problem:
            return (f"{attribute} {quoted(template.source, 80)}: {{{ref.dotted}}} {problem}; "
                    f"use {allowed}")
    return None


def _ref_problem(ref: Ref, scheme: str, options: Mapping[str, OptionSpec],
                 per_account: bool) -> str | None:
    if ref.namespace == "account":
        return None if ref.name == "password" else "is not the account's secret"
    if ref.namespace != "options":
        return f"is not a key the operator configures ({ref.namespace} values are " \
            "known to others or sent by the client)"
    option = options.get(ref.name)
    if option is not None and (option.secret or scheme in PUBLIC_KEY_SCHEMES):
        return None
    return "is an option not declared secret=\"true\""
