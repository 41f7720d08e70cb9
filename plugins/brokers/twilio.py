"""Twilio adapter: webhooks signed with a shared key.

By default Twilio signs a webhook with the account's auth token (HMAC-SHA1,
``X-Twilio-Signature``), which the definition checks with each account's token. When
a Webhook Rule of Twilio's Webhooks configuration API matches the URL, Twilio signs
with the rule's SharedKey secret instead, with the algorithm the Setting names, and
says so in a header: ``X-Twilio-Webhooks-Signature-Settings: key=<key sid>,
algorithm=HMAC_SHA256``. The signed string is unchanged (URL, then the sorted form
fields); only the key and the hash differ:
  https://www.twilio.com/docs/usage/webhooks/webhook-shared-keys
  twilio-python ``twilio/request_validator.py`` (``get_signature_algorithm``)

This adapter checks such a webhook with the option ``WebhookSharedKey`` (the secret),
and refuses it (403, saying why) when that option is not set but auth tokens are (with
no key configured at all nothing is checked, as for any broker). With only the shared
key configured (accounts without a token), every webhook must be signed with it. A
settings header without ``algorithm=`` means the auth token's signature, as in
Twilio's SDKs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from host.api import (TWILIO_SETTINGS_HEADER, InboundRequest, SignatureError, XmlBroker,
                      twilio_shared_key_algorithm)


def _shared_key_signed(request: InboundRequest) -> bool:
    return twilio_shared_key_algorithm(request) is not None


class Twilio(XmlBroker):
    def signature_keys(self, accounts: Sequence[Mapping[str, Any]],
                       request: InboundRequest | None = None,
                       kind: str | None = None) -> list[str]:
        keys = super().signature_keys(accounts, request, kind)
        shared = self._shared_key()
        if shared and (not keys or (request is not None and _shared_key_signed(request))):
            return [shared]
        return keys

    def verify_signature(self, request: InboundRequest, keys: Sequence[str]) -> None:
        if _shared_key_signed(request):
            shared = self._shared_key()
            if not shared:
                raise SignatureError(403, f"signed with a Twilio shared key "
                                     f"({TWILIO_SETTINGS_HEADER}); set the broker option "
                                     "WebhookSharedKey to its secret")
            keys = [shared]
        super().verify_signature(request, keys)

    def _shared_key(self) -> str:
        return self.option_text("WebhookSharedKey")
