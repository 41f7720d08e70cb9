"""What field sources read from: an inbound request, or a broker's answer to a send."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from host import jsontext
from host.brokers.extract import ExtractError
from host.brokers.http import InboundRequest, MtResponse
from host.text import clean


class RequestPayload:
    __slots__ = ("request", "body_format", "_params")

    def __init__(self, request: InboundRequest, body_format: str) -> None:
        self.request = request
        self.body_format = body_format
        self._params: dict[str, list[str]] | None = None

    def param(self, name: str) -> str | None:
        if self._params is None:
            self._params = self.request.params(self.body_format)
        values = self._params.get(name)
        return values[0] if values else None

    def query_param(self, name: str) -> str | None:
        values = self.request.query.get(name)
        return values[0] if values else None

    def json_data(self) -> Any:
        return self.request.json

    def xml_root(self) -> Any:
        return self.request.xml

    def header(self, name: str) -> str | None:
        value = self.request.headers.get(name.lower())
        return clean(value) if value else value

    def text(self) -> str:
        return self.request.text()


class ResponsePayload:
    __slots__ = ("response",)

    def __init__(self, response: MtResponse) -> None:
        self.response = response

    def param(self, name: str) -> str | None:
        values = parse_qs(self.response.text).get(name)
        if values:
            return clean(values[0])
        try:
            data = jsontext.loads(self.response.body)
        except ValueError:
            return None
        return str(data[name]) if isinstance(data, dict) and name in data else None

    def query_param(self, name: str) -> str | None:
        return self.param(name)

    def json_data(self) -> Any:
        try:
            return jsontext.loads(self.response.body)
        except ValueError:
            raise ExtractError("the response is not JSON") from None

    def xml_root(self) -> Any:
        return InboundRequest("POST", "http://x/", {}, self.response.body).xml

    def header(self, name: str) -> str | None:
        value = self.response.headers.get(name.lower())
        return clean(value) if value else value

    def text(self) -> str:
        return clean(self.response.text)
