"""What a webhook signature covers, and the request reduced to it (SPEC P12).

A field of a signed request is read only from what its signature covers: anything
else can be added to a captured request, or changed in it, without breaking the
signature. Two checks hold that rule:

* when a definition is loaded, each source of its ``<mo>``, ``<receipt>`` and
  ``<ignore>`` must read a part its scheme can cover (:func:`uncovered`), else the
  definition is refused with its file and line. A ``param`` reads the query string and
  the body's flat fields: it needs one of them covered;
* when a request is checked, the parse steps read :func:`signed_part`: the request
  with only what its signature covered (the query string dropped when it is not
  signed, the body dropped or readable only as its form fields, the unsigned headers
  dropped). A ``param`` field then reads the covered parts only.

What each scheme covers (``signatures.py`` computes them):

=================  ==================================================================
twilio             the URL with its query; a form body's fields (names and values,
                   not the bytes); a JSON body whole (``bodySHA256`` in the URL).
vonage             every parameter's first value: query, form fields or top-level
                   JSON scalars (the request is reduced to them, as a query string).
plivo-v3           the URL with its query; a POST's form fields.
telnyx-ed25519     the body and the timestamp header; not the query string.
hmac-sha256        what ``payload`` names: ``{body}`` the body, ``{url}`` the URL with
                   its query, ``{timestamp}`` the timestamp header.
=================  ==================================================================

An unsigned content type is dropped with the rest, so a body signed as bytes is read
as what its bytes are (JSON when it starts with ``{`` or ``[``), not as a header that
could be changed says. Schemes that sign parsed fields keep the content type their
check parsed the body by.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from host.brokers.extract import Source
from host.brokers.http import InboundRequest
from host.brokers.specs import SignatureSpec

QUERY, FORM, JSON_FIELDS, JSON, XML, TEXT = ("the query string", "form fields",
                                             "top-level JSON fields", "a JSON body",
                                             "an XML body", "the body's text")
BODY = frozenset({FORM, JSON_FIELDS, JSON, XML, TEXT})


def header_part(name: str) -> str:
    return f"header {name.lower()}"


def _timestamp_header(spec: SignatureSpec, default: str | None) -> str | None:
    return spec.params.get("timestamp-header", default)


def scheme_parts(spec: SignatureSpec) -> frozenset[str]:
    """Every part ``spec``'s scheme can cover (for one request or another)."""
    scheme = spec.scheme
    if scheme == "twilio":
        return frozenset({QUERY, FORM, JSON_FIELDS, JSON, TEXT})
    if scheme == "vonage":
        return frozenset({QUERY, FORM, JSON_FIELDS})
    if scheme == "plivo-v3":
        return frozenset({QUERY, FORM})
    if scheme == "telnyx-ed25519":
        return BODY | {header_part(_timestamp_header(spec, "telnyx-timestamp") or "")}
    payload = spec.params.get("payload", "{body}")  # hmac-sha256
    parts: set[str] = set()
    if "{body}" in payload:
        parts |= BODY
    if "{url}" in payload:
        parts.add(QUERY)
    timestamp = _timestamp_header(spec, None)
    if "{timestamp}" in payload and timestamp:
        parts.add(header_part(timestamp))
    return frozenset(parts)


def reads(source: Source, body_format: str) -> frozenset[str]:
    """The parts ``source`` reads in a request of ``body_format`` (a ``param``: any one
    of them; other kinds: all of them)."""
    kind = source.kind
    if kind == "param":
        parts = {QUERY}
        if body_format in ("form", "auto"):
            parts.add(FORM)
        if body_format in ("json", "auto"):
            parts.add(JSON_FIELDS)
        return frozenset(parts)
    return frozenset({"query": {QUERY}, "pointer": {JSON}, "xpath": {XML}, "regex": {TEXT},
                      "header": {header_part(source.expr)}}.get(kind, set()))


def uncovered(source: Source, body_format: str, covered: frozenset[str]) -> str | None:
    """Why ``source`` reads something a signature covering ``covered`` does not, or
    None when it reads only covered parts."""
    parts = reads(source, body_format)
    if not parts:
        return None
    if source.kind == "param":
        if parts & covered:
            return None
        missing = parts
    else:
        missing = parts - covered
        if not missing:
            return None
    return " and ".join(sorted(missing))


def signed_part(spec: SignatureSpec, request: InboundRequest) -> InboundRequest:
    """``request`` reduced to what ``spec``'s scheme covers in it."""
    scheme = spec.scheme
    if scheme == "twilio":  # a JSON body through bodySHA256, else the form fields
        return request.signed_part(query=True, body="yes" if request.is_json else "form",
                                   headers=("content-type",))
    if scheme == "vonage":
        return as_query(request, request.params("auto"))
    if scheme == "plivo-v3":
        return request.signed_part(query=True,
                                   body="form" if request.method.upper() == "POST" else "no",
                                   headers=("content-type",))
    if scheme == "telnyx-ed25519":
        return request.signed_part(query=False, body="yes",
                                   headers=_names(_timestamp_header(spec, "telnyx-timestamp")))
    payload = spec.params.get("payload", "{body}")  # hmac-sha256
    timestamp = _timestamp_header(spec, None) if "{timestamp}" in payload else None
    return request.signed_part(query="{url}" in payload,
                               body="yes" if "{body}" in payload else "no",
                               headers=_names(timestamp))


def as_query(request: InboundRequest, params: dict[str, list[str]]) -> InboundRequest:
    """A request carrying only ``params``' first values, in its query string."""
    query = urlencode([(name, values[0]) for name, values in params.items() if values])
    base = request.url.partition("?")[0]
    return InboundRequest(request.method, f"{base}?{query}" if query else base, {}, b"",
                          "no")


def _names(*names: str | None) -> Iterable[str]:
    return [n.lower() for n in names if n]
