"""Adapter of the kannel broker: what kannel.xml cannot say.

* ``parse_mo``: Kannel's sms-service escape codes percent-encode the message *bytes*
  (gw/urltrans.c: ``%b`` is the raw text, ``%u`` the raw UDH). A UCS-2 text arrives as
  UTF-16BE bytes (``coding=2``, ``charset=UTF-16BE``) and a concatenation UDH as binary,
  which a UTF-8 query parser would mangle. This step reads the query string byte by
  byte, decodes the text by ``coding``/``charset`` (Kannel's text charsets only, with
  U+FFFD for what does not decode: see ``_decode``), turns the UDH into hex, maps the
  coding to smshost's encoding, and hands a plain UTF-8 query to the XML fields. A
  ``post-url`` service is read the same way: the body is the text (charset from
  Content-Type) and X-Kannel-From/-To/-UDH/-Coding/-SMSC/-Time carry the rest (the
  user guide says X-Kannel-UDH is hex; 1.4.5 sends it percent-encoded: both are read).
* sendsms takes the password in the query string, percent-encoded: the engine masks
  a secret in each form a server may echo (``MtRequest.redacted``), so a password such
  as ``p@ss word`` is not logged as ``p%40ss+word`` nor stored from a gateway's error
  that echoes the query.
* ``parse_dlr``: the SMSC's reply (``%A``) holds the error code: ``NACK/<code>/...`` when
  the SMSC refused the submit, ``err:NNN`` in an SMPP delivery receipt. A non-zero one
  becomes the receipt's error.
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import unquote_to_bytes, urlencode, urlsplit, urlunsplit

from host.api import InboundRequest, MoFields, ReceiptFields, XmlBroker, clean

# Kannel's %c: 0 = 7 bit (GSM), 1 = 8 bit (binary), 2 = UCS-2; -1 when the SMSC gave none.
_ENCODINGS = {"0": "gsm7", "2": "ucs2"}
# The text charsets Kannel names (%C, a post-url's Content-Type charset): its defaults
# (UTF-8 for 7-bit texts, UTF-16BE for UCS-2), what mo-recode and alt-charset give
# (WINDOWS-1252, ISO-8859-x, ASCII), and their usual aliases; as Python codecs. Only
# these: the client names the charset, and Python's codec registry also holds codecs
# that are not text (zlib, rot13) or that decode to lone surrogates (utf-7,
# unicode_escape). Any other name is decoded as if none were given (by coding).
_CHARSETS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "utf-16be": "utf-16-be", "utf-16": "utf-16-be", "ucs-2": "utf-16-be",
    "ucs-2be": "utf-16-be", "ucs2": "utf-16-be", "utf-16le": "utf-16-le",
    "iso-8859-1": "latin-1", "iso8859-1": "latin-1", "latin1": "latin-1",
    "iso-8859-15": "iso8859-15", "iso-8859-7": "iso8859-7",
    "windows-1252": "cp1252", "cp1252": "cp1252", "us-ascii": "ascii", "ascii": "ascii",
}
_MARKED_ORDER = {"utf-16", "ucs-2", "ucs2"}  # labels whose text may start with a BOM
_HEADERS = {"x-kannel-from": "from", "x-kannel-to": "to", "x-kannel-udh": "udh",
            "x-kannel-coding": "coding", "x-kannel-smsc": "smsc", "x-kannel-time": "time"}
_NACK = re.compile(r"^NACK/(0x[0-9A-Fa-f]+|\d+)/")
_ERR = re.compile(r"\berr:(\w+)")


def _query_bytes(url: str) -> dict[str, bytes]:
    """The URL's query, first value per name, values as bytes ('+' is a space)."""
    out: dict[str, bytes] = {}
    for pair in urlsplit(url).query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        name = unquote_to_bytes(key.replace("+", " ")).decode("latin-1")
        out.setdefault(name, unquote_to_bytes(value.replace("+", " ")))
    return out


def _charset(content_type: str) -> str:
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').strip()
    return ""


def _header_udh(value: str) -> str:
    """X-Kannel-UDH as hex. The user guide says hex; Kannel 1.4.5's smsbox sends the
    bytes percent-encoded ("%05%00%03%09%02%01"). Both are read."""
    value = re.sub(r"\s+", "", value)
    if "%" not in value and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", value) \
            and int(value[:2], 16) + 1 == len(value) // 2:
        return value.upper()
    # Anything else is percent-encoded bytes (a malformed UDH is not a concatenation
    # header for smshost: the message is then stored on its own, not refused).
    return unquote_to_bytes(value).hex().upper()


def _decode(data: bytes, coding: str, charset: str) -> tuple[str, bool]:
    """(text, binary?) of a message body as Kannel describes it. A text that does not
    decode cleanly is still a message someone sent (smsbox does not retry an MO): it is
    kept with U+FFFD in place of what does not decode, and NUL replaced as everywhere
    (host/text.py); a charset that is not one of :data:`_CHARSETS` does not refuse it."""
    name = charset.strip().strip('"').lower()
    codec = _CHARSETS.get(name)
    if coding == "1" and codec is None:
        return data.hex().upper(), True  # 8-bit data: keep it, readable, as hex
    if codec is None:  # none given, Kannel's GSM, BINARY or 8-BIT, or a name not decoded
        codec = "utf-16-be" if coding == "2" else "utf-8"
    text = data.decode(codec, errors="replace")
    if text.startswith("\ufeff") and name in _MARKED_ORDER:
        text = text[1:]  # a byte order mark, not text
    # (UTF-16BE / UCS-2BE declare the order: a leading U+FEFF there is text, per Unicode)
    return clean(text), False


class Kannel(XmlBroker):
    def parse_mo(self, request: InboundRequest) -> MoFields:
        return super().parse_mo(self._normalized(request))

    def _normalized(self, request: InboundRequest) -> InboundRequest:
        raw = _query_bytes(request.url)
        values = {k: v.decode("utf-8", errors="replace") for k, v in raw.items()
                  if k not in ("text", "udh")}
        text_bytes = raw.get("text")
        udh = raw.get("udh", b"").hex().upper()
        charset = values.get("charset", "")
        if request.method == "POST":  # post-url: the text is the body
            for header, name in _HEADERS.items():
                value = request.headers.get(header, "").strip()
                if value and not values.get(name):
                    values[name] = value
            if not udh and values.get("udh"):
                udh = _header_udh(values["udh"])
            if text_bytes is None:
                text_bytes = request.body
                charset = _charset(request.headers.get("content-type", "")) or charset
        coding = values.get("coding", "").strip()
        text, binary = _decode(text_bytes or b"", coding, charset)
        values.update(text=text, udh=udh)
        if binary:
            values["binary"] = "true"
        encoding = _ENCODINGS.get(coding)
        if encoding:
            values["encoding"] = encoding
        else:
            values.pop("encoding", None)
        parts = urlsplit(request.url)
        url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in values.items()
                                                         if v != ""])))
        return InboundRequest(request.method, url, {}, b"")

    def parse_dlr(self, request: InboundRequest) -> ReceiptFields:
        fields = super().parse_dlr(request)
        reply = (fields.error_text or "").strip()
        if fields.error or not reply:
            return fields
        code = None
        nack = _NACK.match(reply)
        if nack:
            code = nack.group(1)
        elif fields.status != "delivered":
            err = _ERR.search(reply)
            if err and err.group(1).strip("0"):
                code = err.group(1)
        return replace(fields, error=code) if code else fields
