"""What the OpenAPI document (host.web.api.openapi) cannot read from the routes: the
schemas of the main resources (a message, its events, a send, an error) and, per
route, its query parameters, body and answers. A route not declared here is still in
the document, with a generic JSON object for its body and answer.

Kept beside the code they describe by a test (tests/test_openapi.py): the real
answers of these routes are checked against them.
"""

from __future__ import annotations

from typing import Any

from host.web.api.messages import FILTERS, MAX_LIMIT

__all__ = ["COMPONENTS", "OPERATIONS"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _null(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_TIME = {"type": "string", "description": "UTC, ISO 8601 with microseconds "
         "(2026-01-31T12:00:00.000000Z)"}
_MESSAGE = {
    "id": {"type": "integer"},
    "direction": {"enum": ["in", "out"], "description": "in: received (MO); out: sent (MT)"},
    "broker": _null("string"), "account": _null("string"),
    "local": {**_null("string"), "description": "our number (E.164, or a short code)"},
    "remote": {**_null("string"), "description": "the other party's number"},
    "body": {"type": "string"}, "encoding": _null("string"), "segments": _null("integer"),
    "status": {"type": "string", "description": "received, routed, queued, sending, sent, "
               "delivered, undelivered, failed, rejected, expired"},
    "broker_message_id": _null("string"), "created_at": _TIME, "updated_at": _TIME,
    "attrs": {"type": "object", "description": "custom attributes (a send's metadata)"},
    "route": _null("string"),
}
COMPONENTS: dict[str, Any] = {
    "Error": _object(["error", "message"], {
        "error": {"type": "string", "description": "a code: bad_parameter, not_found, ..."},
        "message": {"type": "string", "description": "what was wrong, naming the field"}}),
    "Message": _object(list(_MESSAGE), _MESSAGE),
    "StatusEvent": _object(["id", "message_id", "status", "at", "source", "detail"], {
        "id": {"type": "integer", "description": "also the id of its event on /api/events"},
        "message_id": {"type": "integer"}, "status": {"type": "string"}, "at": _TIME,
        "source": {"type": "string"}, "detail": {"type": "object"}}),
    "MessageWithEvents": {"allOf": [_ref("Message"), _object(["events"], {
        "events": {"type": "array", "items": _ref("StatusEvent")}})]},
    "MessagePage": _object(["messages", "next", "prev"], {
        "messages": {"type": "array", "items": _ref("Message")},
        "next": {**_null("string"), "description": "the older page's URL (null: none)"},
        "prev": {**_null("string"), "description": "the newer page's URL (null: none)"}}),
    "SendRequest": {**_object(["to"], {
        "to": {"type": "string", "minLength": 1, "description": "the recipient's number"},
        "text": {"type": "string", "minLength": 1},
        "body": {"type": "string", "minLength": 1, "description": "text's alias"},
        "broker": {"type": "string"}, "account": {"type": "string"},
        "workgroup": {"type": "string"}, "user": {"type": "string"},
        "classification": {"type": "string"}, "metadata": {"type": "object"}}),
        "anyOf": [{"required": ["text"]}, {"required": ["body"]}],
        "additionalProperties": False},
    "SendResult": _object(
        ["id", "ids", "status", "encoding", "segments", "route", "broker", "account", "from",
         "to", "replayed", "consolidated"], {
            "id": {"type": "integer"}, "ids": {"type": "array", "items": {"type": "integer"}},
            "status": {"type": "string"}, "encoding": {"type": "string"},
            "segments": {"type": "integer"}, "route": _null("string"),
            "broker": _null("string"), "account": _null("string"), "from": _null("string"),
            "to": _null("string"), "replayed": {"type": "boolean"},
            "consolidated": {"type": "boolean"}}),
    "Segments": _object(["encoding", "segments", "units", "unit", "per_segment",
                         "remaining", "non_gsm7"], {
        "encoding": {"type": "string"}, "segments": {"type": "integer"},
        "units": {"type": "integer"}, "unit": {"type": "string"},
        "per_segment": {"type": "integer"}, "remaining": {"type": "integer"},
        "non_gsm7": {"type": "array", "items": {"type": "string"}}}),
    "Object": {"type": "object", "description": "not described further"},
}

_FILTER_DOCS: dict[str, tuple[dict[str, Any], str]] = {
    "direction": ({"enum": ["in", "out"]}, "received (in) or sent (out)"),
    "status": ({"type": "string"}, "the current status"),
    "broker": ({"type": "string"}, "the broker instance's name"),
    "account": ({"type": "string"}, "the broker account's name"),
    "number": ({"type": "string"}, "either party (local or remote), E.164 after "
               "normalisation: (202) 555-0142 finds +12025550142"),
    "text": ({"type": "string", "minLength": 3}, "a substring of the body, any case"),
    "since": ({"type": "string"}, "created at or after (ISO 8601)"),
    "until": ({"type": "string"}, "created before (ISO 8601)"),
    "conversation": ({"type": "string"}, "local,remote: the messages between our number "
                     "and theirs (,remote: those without ours)"),
    "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
              "messages per page (50); not with CSV"),
    "before": ({"type": "integer", "minimum": 1}, "the page older than this id"),
    "after": ({"type": "integer", "minimum": 1}, "the page newer than this id; not with CSV"),
}
_ERRORS = {"400": _json(_ref("Error"), "a bad parameter or body, named"),
           "404": _json(_ref("Error"), "no such message"),
           "403": _json(_ref("Error"), "the caller may not (its rights, a classification)"),
           "409": _json(_ref("Error"), "the recipient opted out"),
           "422": _json(_ref("Error"), "no route, unknown account, invalid number, too long")}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/messages"): {
        "parameters": [*(_query(name, *_FILTER_DOCS[name]) for name in FILTERS),
                       _query("format", {"enum": ["json", "csv"]}, "csv: every match as "
                              "CSV, as with Accept: text/csv")],
        "responses": {"200": {
            "description": "a page, newest first; or every match as CSV",
            "content": {"application/json": {"schema": _ref("MessagePage")},
                        "text/csv": {"schema": {"type": "string"}}}},
            "400": _ERRORS["400"]}},
    ("POST", "/api/messages"): {
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "a retry with the same key sends nothing new"}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("SendRequest"),
            "example": {"to": "+14155550123", "text": "Your order 1234 is on its way"}}}},
        "responses": {"201": _json(_ref("SendResult"), "queued"),
                      "200": _json(_ref("SendResult"), "replayed (an Idempotency-Key seen "
                                   "before): nothing new was queued"),
                      **{code: _ERRORS[code] for code in ("400", "403", "409", "422")}}},
    ("GET", "/api/messages/{message_id}"): {
        "responses": {"200": _json(_ref("MessageWithEvents"), "the message and its "
                                   "status history, oldest first"),
                      "404": _ERRORS["404"]}},
    ("POST", "/api/segments"): {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            **_object(["text"], {"text": {"type": "string"}, "encoding": {"type": "string"}})}}}},
        "responses": {"200": _json(_ref("Segments"), "how the text would be sent"),
                      "400": _ERRORS["400"]}},
    ("GET", "/api/events"): {
        "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False,
                        "schema": {"type": "string"},
                        "description": "replay the stored events after this id first"}],
        "responses": {"200": {"description": "Server-Sent Events: event: status, data: "
                              "a status change (JSON)",
                              "content": {"text/event-stream": {"schema": {
                                  "type": "string"}}}}}},
    ("GET", "/api/openapi.json"): {
        "responses": {"200": _json({"type": "object"}, "this document")}},
}
