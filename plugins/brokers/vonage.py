"""Adapter of the vonage broker: what vonage.xml cannot say.

* ``verify_signature``: Vonage lets each account pick its signing method in the
  Dashboard ("MD5 hash" by default, or MD5, SHA1, SHA-256 or SHA-512 HMAC;
  https://developer.vonage.com/getting-started/concepts/signing-messages). The XML's
  ``<signature algorithm>`` is fixed text, so the method comes from the instance's
  ``SignatureMethod`` option and the built-in ``vonage`` scheme does the rest.
* ``parse_dlr``: ``err-code`` 0 means "no error" (delivery-receipts guide); it is not
  recorded as an error.
* ``parse_mo``: Vonage's ``type`` (text, unicode, binary;
  https://developer.vonage.com/messaging/sms/guides/inbound-sms) becomes smshost's
  encoding (gsm7, ucs2); XML fields cannot map values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from host.api import InboundRequest, MoFields, ReceiptFields, SignatureError, XmlBroker
from host.api import verify_signature as verify_with_scheme

# The names Vonage's SDKs use (signatureMethod / signature_method), plus "md5hash".
_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
_ENCODINGS = {"text": "gsm7", "unicode": "ucs2"}


class Vonage(XmlBroker):
    def verify_signature(self, request: InboundRequest, keys: Sequence[str]) -> None:
        spec = self.definition.signature
        assert spec is not None
        method = (self.option_text("SignatureMethod")
                  or spec.params.get("algorithm", "md5hash")).strip().lower()
        if method not in _METHODS:
            raise SignatureError(403, f"option SignatureMethod is {method!r}; use one of "
                                 f"{', '.join(_METHODS)}")
        spec = replace(spec, params={**spec.params, "algorithm": method})
        verify_with_scheme(request, keys, spec, self.clock())

    def parse_mo(self, request: InboundRequest) -> MoFields:
        fields = super().parse_mo(request)
        encoding = _ENCODINGS.get(fields.attrs.get("type", "").lower())
        return replace(fields, encoding=encoding) if encoding else fields

    def parse_dlr(self, request: InboundRequest) -> ReceiptFields:
        fields = super().parse_dlr(request)
        return replace(fields, error=None) if fields.error == "0" else fields
