"""Telnyx adapter: the few steps telnyx.xml cannot express.

* ``parse_mo``: an MMS carries a list of media items ``{url, content_type, sha256,
  size}`` (https://developers.telnyx.com/api-reference/callbacks/inbound-message);
  every one is kept, as the space-separated attributes ``media_urls`` and
  ``media_types``. Telnyx names encodings ``GSM-7`` and ``UCS-2``
  (https://developers.telnyx.com/docs/messaging/messages/message-detail-records); smshost
  stores ``gsm7`` and ``ucs2``. An RCS message carries its text in ``payload.body.text``
  (https://developers.telnyx.com/docs/messaging/messages/receiving-rcs-webhooks).
* ``parse_dlr`` and ``read_mt_response``: Telnyx errors are ``{code, title, detail}``
  where only ``code`` and ``title`` are required (the SDK's ``MessagingError`` type); the
  error text is ``detail``, or ``title`` when there is no detail.
* ``read_mt_response``: after a 429 Telnyx gives the wait in ``x-ratelimit-reset``
  (seconds until the limit resets), not in ``Retry-After``
  (https://developers.telnyx.com/development/api-fundamentals/reliability/rate-limiting).

Events other than message.received / sent / finalized / read are not classified, so the
engine answers 400 ("not a message or receipt this path accepts") and stores nothing.
Telnyx expects a 2xx for every event it delivers (its own handler examples answer 200 to
any event type); a non-2xx is retried up to 3 times per URL, then sent to the failover
URL. But the engine has no step that answers 2xx without storing a message or a receipt
(host/brokers/webhooks.py ``_classify``: an unclassified request is always refused 400),
so a clear 400 it is. Such events only reach this URL when something other than a
messaging profile points at it (a voice application, a WhatsApp echo), and the 400 is then
visible in Telnyx's webhook delivery records
(https://developers.telnyx.com/api-reference/webhooks/find-webhook_delivery-details-by-id),
where that misconfiguration is found. The retries are bounded and harmless.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from host.api import (InboundRequest, MoFields, MtResponse, MtResult, OutboundMessage,
                      ReceiptFields, XmlBroker)

_ENCODINGS = {"gsm-7": "gsm7", "gsm7": "gsm7", "ucs-2": "ucs2", "ucs2": "ucs2",
              "utf-16": "ucs2"}


def _payload(request: InboundRequest) -> dict[str, Any]:
    data = request.json
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return {}
    payload = data["data"].get("payload")
    return payload if isinstance(payload, dict) else {}


def _first_error(container: Any) -> dict[str, Any]:
    errors = container.get("errors") if isinstance(container, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return {}


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


class Telnyx(XmlBroker):
    def parse_mo(self, request: InboundRequest) -> MoFields:
        fields = super().parse_mo(request)
        attrs = dict(fields.attrs)
        media = [m for m in _payload(request).get("media") or [] if isinstance(m, dict)]
        urls = [str(m["url"]) for m in media if m.get("url")]
        if urls:
            attrs["media_urls"] = " ".join(urls)
            attrs["media_types"] = " ".join(str(m.get("content_type") or "") for m in media
                                            if m.get("url"))
        text = fields.text
        body = _payload(request).get("body")
        if not text and isinstance(body, dict) and isinstance(body.get("text"), str):
            text = body["text"]  # RCS puts the text in payload.body.text
        encoding = fields.encoding
        if encoding is not None:
            encoding = _ENCODINGS.get(encoding.strip().lower(), encoding)
        return replace(fields, text=text, attrs=attrs, encoding=encoding)

    def parse_dlr(self, request: InboundRequest) -> ReceiptFields:
        fields = super().parse_dlr(request)
        if fields.error_text is None:
            title = _text(_first_error(_payload(request)).get("title"))
            if title is not None:
                fields = replace(fields, error_text=title)
        return fields

    def read_mt_response(self, response: MtResponse, message: OutboundMessage,
                         account: Mapping[str, Any]) -> MtResult:
        result = super().read_mt_response(response, message, account)
        if result.outcome == "accepted":
            return result
        try:
            error = _first_error(json.loads(response.body))
        except ValueError:
            error = {}
        if error and _text(error.get("detail")) is None and _text(error.get("title")):
            result = replace(result, error=str(error["title"]))
        if result.outcome == "retry" and result.retry_after is None:
            reset = response.headers.get("x-ratelimit-reset", "").strip()
            try:
                wait = float(reset)
            except ValueError:
                wait = -1.0
            if wait > 10 * 365 * 86400:  # an epoch time rather than seconds to wait
                wait = max(0.0, wait - time.time())
            if wait >= 0:
                result = replace(result, retry_after=wait)
        return result
