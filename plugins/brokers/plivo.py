"""Plivo adapter: webhook signatures (V3 and V2) and status callback correlation.

Signatures. Plivo's messaging documentation says its requests carry
``X-Plivo-Signature-V2``, ``X-Plivo-Signature-Ma-V2`` and ``X-Plivo-Signature-V2-Nonce``,
with V2 = base64(HMAC-SHA256(Auth Token, base URI + nonce)), the base URI being the URL
without its query string:
  https://docs.plivo.com/docs/messaging/concepts/signature-validation
  https://docs.plivo.com/docs/messaging/xml/request
Its request-validation reference says every request carries ``X-Plivo-Signature-V3``
(also ``-Ma-V3``) and ``X-Plivo-Signature-V3-Nonce``, naming the message callback ``url``
and ``message_url`` among the URLs signed that way:
  https://docs.plivo.com/docs/voice/xml/request/validation
So a messaging webhook may come with either family, and this adapter accepts both:

* V3 when a V3 signature header is present. The string signed is the one Plivo's SDKs
  build (plivo-python ``plivo/utils/signature_v3.py``, plivo-node
  ``lib/utils/v3Security.js``): the URL without query, then ``?`` and the query sorted as
  ``k=v`` joined by ``&`` (decoded values), and for a POST with fields: ``.`` when there
  was a query, then every field as ``name`` + ``value`` sorted by name (values sorted);
  then ``.`` + nonce. The header may list several signatures, comma-separated. A request
  with a V3 signature is judged by V3 alone: V2 does not cover the body.
* V2 when no V3 signature is present and option ``AcceptSignatureV2`` allows it (off by
  default). V2 covers nothing of the message (neither the query string nor the body),
  so a V2-signed request captured once could be sent again with any sender and text:
  its fields are read as an unsigned request's are, which is what the operator accepts
  by turning the option on (``signed_part``). A V3-signed request is read only from
  what V3 covers: the query string, and a POST's form fields.

``-Ma-`` headers are signed with the main account's Auth Token (option
``MainAuthToken`` when the configured accounts are subaccounts); the others with the
token of the account the message belongs to. Any configured token may match any header.
The main token is a key of the definition's ``<signature broker-key>``: the engine's
``signature_keys`` lists it with the accounts' tokens, so a MainAuthToken alone (an
account without a token) still means every webhook is checked.

V3, like Twilio's scheme, joins each field's name and value with no separator: a
captured request can be re-cut into other fields and still verify (Plivo's SDK says
yes). plivo.xml declares MessageUUID's form (a UUID) and requires Type and Units, sent
with every message, so such a request is refused rather than stored as new
(docs/broker-plugins.md, "What the twilio and plivo-v3 schemes leave open").

Status callbacks. ``ParentMessageUUID`` is documented as "same as the MessageUUID" and
reserved. Plivo's support pages say the parts of a long message share one
ParentMessageUUID (with PartInfo "1 of 2" ...), and nyaruka/courier's Plivo handler
correlates by it for that reason, so receipts are correlated by ParentMessageUUID when it
is present (for a one-part message it is the MessageUUID anyway):
  https://plivo.com/docs/messaging/api/message/message-status-callbacks
  https://support.plivo.com/support/solutions/articles/17000012022-how-many-characters-can-i-put-in-a-single-sms-
An ErrorCode of ``000`` means success ("000 for successful delivery",
https://www.plivo.com/docs/messaging/api/messages) and is not recorded as an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

from host.api import InboundRequest, ReceiptFields, SignatureError, XmlBroker

V3_HEADERS = ("X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3")
V3_NONCE = "X-Plivo-Signature-V3-Nonce"
V2_HEADERS = ("X-Plivo-Signature-V2", "X-Plivo-Signature-Ma-V2")
V2_NONCE = "X-Plivo-Signature-V2-Nonce"
NO = frozenset({"false", "no", "0", "off"})


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _v3_signed_string(request: InboundRequest) -> str:
    """The text Plivo's SDKs sign for V3, without the trailing ``.nonce``."""
    query = parse_qs(urlsplit(request.url).query, keep_blank_values=True)
    query_text = "&".join(f"{key}={value}" for key in sorted(query)
                          for value in sorted(query[key]))
    fields = request.form_as_sent if request.method.upper() == "POST" else {}
    text = _base_url(request.url)
    if query_text or fields:
        text += "?" + query_text
    if query_text and fields:
        text += "."
    return text + "".join(key + value for key in sorted(fields) for value in sorted(fields[key]))


def _b64_hmac_sha256(key: str, data: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), data.encode(), hashlib.sha256)
                            .digest()).decode()


def _given(request: InboundRequest, names: Sequence[str]) -> list[str]:
    found = []
    for name in names:
        value = request.headers.get(name.lower(), "")
        found += [part.strip() for part in value.split(",") if part.strip()]
    return found


def _matches(given: Sequence[str], expected: Sequence[str]) -> bool:
    found = False
    for g in given:
        for e in expected:
            found |= hmac.compare_digest(g.encode(), e.encode())
    return found


class Plivo(XmlBroker):
    def verify_signature(self, request: InboundRequest, keys: Sequence[str]) -> None:
        v3 = _given(request, V3_HEADERS)
        if v3:
            nonce = request.headers.get(V3_NONCE.lower())
            if not nonce:
                raise SignatureError(401, f"missing signature header {V3_NONCE}")
            data = f"{_v3_signed_string(request)}.{nonce}"
            if not _matches(v3, [_b64_hmac_sha256(key, data) for key in keys]):
                raise SignatureError(403, "X-Plivo-Signature-V3 does not match")
            return
        v2 = _given(request, V2_HEADERS)
        if v2 and self._accepts_v2():
            nonce = request.headers.get(V2_NONCE.lower())
            if not nonce:
                raise SignatureError(401, f"missing signature header {V2_NONCE}")
            data = _base_url(request.url) + nonce
            if not _matches(v2, [_b64_hmac_sha256(key, data) for key in keys]):
                raise SignatureError(403, "X-Plivo-Signature-V2 does not match")
            return
        if v2:
            raise SignatureError(403, "only X-Plivo-Signature-V2 given; this broker "
                                 "requires X-Plivo-Signature-V3 (AcceptSignatureV2 = false)")
        raise SignatureError(401, "missing signature header X-Plivo-Signature-V3 "
                             "(or X-Plivo-Signature-V2)")

    def signed_part(self, request: InboundRequest) -> InboundRequest:
        if not _given(request, V3_HEADERS) and _given(request, V2_HEADERS) \
                and self._accepts_v2():
            return request  # V2 covers no field: read as unsigned (see the module text)
        return super().signed_part(request)

    def parse_dlr(self, request: InboundRequest) -> ReceiptFields:
        fields = super().parse_dlr(request)
        parent = fields.attrs.get("parent_message_uuid")
        if parent:
            fields = replace(fields, id=parent)
        if fields.error == "000":
            fields = replace(fields, error=None)
        return fields

    def _accepts_v2(self) -> bool:
        return self.option_text("AcceptSignatureV2").strip().lower() not in NO
