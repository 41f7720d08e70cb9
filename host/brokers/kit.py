"""The broker conformance kit (SPEC B9): table-driven fixtures beside a definition.

``<name>.fixtures.toml`` next to ``<name>.xml`` holds, in order:

* ``[broker]``: the instance the cases run against (accounts with test secrets,
  options, region, ``public_url``), as a ``[[brokers]]`` table would;
* ``[[mo]]`` and ``[[receipt]]``: an inbound request (method, path, query, headers,
  ``body`` or ``form`` or ``json``, optional ``now`` to pin the signature clock) and what
  must follow: ``expect_status``, ``expect_answer``, and ``expect`` (fields of the stored
  message: from, to, text, id, account, segments, encoding, status, attrs.NAME) or
  ``expect_stored = false``. A receipt may first create its outbound message with
  ``message = { broker_message_id = "...", status = "sent" }``;
* ``[[mt]]``: an outbound ``message`` (to, from, text, ref, encoding) and ``account``,
  and the request expected: method, url, headers (those listed), ``form``, ``json``,
  ``query`` or ``body``;
* ``[[mt_response]]``: a broker answer (status, headers, body) and the ``expect``ed
  outcome, message_id, error, error_code, retry_after.

Cases run in file order against one fresh database through the real webhook code. The
secrets of ``[broker]`` must never appear in what was logged or in request
descriptions: the kit checks that too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from host.api import HostAPI
from host.brokers import webhooks
from host.brokers.engine import OutboundMessage
from host.brokers.http import InboundRequest, MtResponse
from host.brokers.instances import BrokerInstance
from host.brokers.registry import BrokerType
from host.config.schema import Converter
from host.config.secrets import reveals
from host.config.settings import Settings
from host.errors import ConfigErrors, SmshostError
from host.messages import NewMessage
from host.plugins import PluginRecord

DEFAULT_TYPES = {"form": "application/x-www-form-urlencoded", "json": "application/json"}


@dataclass
class CaseResult:
    kind: str
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def fixtures_path(definition: Path) -> Path:
    return definition.with_name(definition.stem + ".fixtures.toml")


class KitHost(HostAPI, Protocol):
    """What the kit uses of a node (the composition root's ``Host``): the plugin face,
    loading the plugins, and running without background work."""

    def load_plugins(self) -> object: ...

    def running(self, *, background: bool = True) -> AbstractAsyncContextManager[object]: ...


class MakeHost(Protocol):
    """Builds a node on a data directory (the CLI passes the class ``Host``)."""

    def __call__(self, settings: Settings, *, data_dir: Path) -> KitHost: ...


class KitUnavailable(SmshostError):
    """The kit cannot run for a definition: it did not load, or has no fixtures."""


def kit_for(make_host: MakeHost, types: Mapping[str, BrokerType],
            failures: Iterable[PluginRecord], name: str, fixtures: Path | None = None
            ) -> tuple[Path, list[CaseResult]]:
    """Run the fixtures of loaded definition ``name`` (``types``: what discovery found;
    ``failures``: the plugin records that failed, for the reason one did not load): the
    fixtures file and one result per case. ``smshost broker test`` and the admin's
    broker page both run the kit through here. Blocking (it runs its own event loop)."""
    if name not in types:
        reasons = [r.error for r in failures if r.kind == "broker" and r.name == name]
        raise KitUnavailable(reasons[0] if reasons and reasons[0]
                             else f"no broker definition named {name!r}")
    definition = types[name].definition.path
    path = fixtures or fixtures_path(definition)
    if not path.exists():
        raise KitUnavailable(f"{path}: no fixtures for {name}")
    return path, run_kit(make_host, definition, path)


def run_kit(make_host: MakeHost, definition: Path, fixtures: Path | None = None
            ) -> list[CaseResult]:
    """Run the fixtures of the definition at ``definition`` on a node ``make_host``
    builds in a throwaway data directory; one result per case."""
    path = fixtures or fixtures_path(definition)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="smshost-kit-") as tmp:
        return asyncio.run(_Kit(make_host, definition, data, Path(tmp)).run())


class _Kit:
    def __init__(self, make_host: MakeHost, definition: Path, data: dict[str, Any],
                 tmp: Path) -> None:
        self.make_host = make_host
        self.definition = definition
        self.data = data
        self.tmp = tmp
        self.log = io.StringIO()

    def settings(self) -> Settings:
        broker = dict(self.data.get("broker", {}))
        public_url = broker.pop("public_url", "https://smshost.example.com")
        broker.setdefault("encryption", public_url.split("://")[0])
        raw = {
            "server": {"data_dir": str(self.tmp), "public_url": public_url},
            "purge": {"enabled": False},
            "routing": {"enabled": False},
            "plugins": {"dirs": [str(self.definition.parent.parent)], "entry_points": False},
            "brokers": [{"name": self.definition.stem, "definition": self.definition.stem,
                         **broker}],
        }
        converter = Converter(lambda p: (str(self.definition), None))
        settings = converter.section(Settings, raw, ())
        if converter.errors:
            raise ConfigErrors(converter.errors)
        return settings  # type: ignore[no-any-return]

    async def run(self) -> list[CaseResult]:
        host = self.make_host(self.settings(), data_dir=self.tmp)
        handler = logging.StreamHandler(self.log)
        handler.setLevel(logging.DEBUG)
        root = logging.getLogger()
        root.addHandler(handler)
        old_level = root.level
        root.setLevel(logging.DEBUG)
        results: list[CaseResult] = []
        try:
            host.load_plugins()
            instance = host.brokers.get(self.definition.stem)
            if instance is None:
                problems = [r.error or "" for r in host.plugins.failures]
                return [CaseResult("setup", "load", problems or ["the broker did not load"])]
            async with host.running(background=False):
                for kind, case in self.cases():
                    result = CaseResult(kind, str(case.get("name", kind)))
                    try:
                        await getattr(self, kind)(host, instance, case, result)
                    except (SmshostError, ValueError, KeyError, TypeError) as exc:
                        result.problems.append(f"{type(exc).__name__}: {exc}")
                    results.append(result)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
        results.append(self.secrets_check(host))
        return results

    def cases(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for kind in ("mo", "receipt", "mt", "mt_response"):
            for case in self.data.get(kind, []):
                yield kind, case

    # -- inbound --------------------------------------------------------------------

    def inbound(self, instance: BrokerInstance, case: dict[str, Any],
                default_path: str | None) -> InboundRequest:
        path = case.get("path", default_path or "/")
        query = case.get("query", "")
        if isinstance(query, dict):
            query = urlencode(query)
        url = instance.broker.broker_values["public_url"] + path + (f"?{query}" if query else "")
        headers = {k.lower(): v for k, v in case.get("headers", {}).items()}
        if "form" in case:
            body = urlencode(list(case["form"].items())).encode()
            headers.setdefault("content-type", DEFAULT_TYPES["form"])
        elif "json" in case:
            body = json.dumps(case["json"]).encode()
            headers.setdefault("content-type", DEFAULT_TYPES["json"])
        else:
            body = case.get("body", "").encode()
            if body and "content_type" in case:
                headers.setdefault("content-type", case["content_type"])
        return InboundRequest(case.get("method", "POST"), url, headers, body)

    async def send(self, host: Any, instance: BrokerInstance, case: dict[str, Any],
                   default_path: str | None, result: CaseResult) -> bool:
        inbound = self.inbound(instance, case, default_path)
        endpoints = webhooks.endpoints_for_port(host.brokers, instance.port)
        path = urlsplit(inbound.url).path
        if path not in endpoints:
            result.problems.append(f"no broker path {path}")
            return False
        if "now" in case:
            instance.broker.clock = lambda: float(case["now"])
        try:
            response = await host.broker_webhook(instance.name, path, inbound)
        finally:
            instance.broker.clock = type(instance.broker).clock
        status = case.get("expect_status", 200)
        if response.status_code != status:
            result.problems.append(f"answered {response.status_code} "
                                   f"({bytes(response.body).decode()[:120]!r}), expected {status}")
            return False
        if "expect_answer" in case and bytes(response.body).decode() != case["expect_answer"]:
            result.problems.append(f"answer {bytes(response.body).decode()!r}, "
                                   f"expected {case['expect_answer']!r}")
        return True

    async def mo(self, host: Any, instance: BrokerInstance, case: dict[str, Any],
                 result: CaseResult) -> None:
        before = await self.last_id(host)
        if not await self.send(host, instance, case, instance.mo_path, result):
            return
        after = await self.last_id(host)
        if case.get("expect_stored", True) is False:
            if after != before:
                result.problems.append("a message was stored, none expected")
            return
        message = await host.messages.get(after) if after else None
        if message is None or (after == before and not case.get("duplicate")):
            result.problems.append("no message was stored")
            return
        self.compare(result, _message_view(message), case.get("expect", {}))

    async def receipt(self, host: Any, instance: BrokerInstance, case: dict[str, Any],
                      result: CaseResult) -> None:
        target = None
        if "message" in case:
            spec = case["message"]
            target, _ = await host.messages.add(NewMessage(
                direction="out", body=spec.get("text", "test"), status=spec.get("status", "sent"),
                broker=instance.name, broker_message_id=spec.get("broker_message_id")))
        if not await self.send(host, instance, case, instance.receipt_path, result):
            return
        if target is None:
            return
        message = await host.messages.get(target.id)
        events = await host.messages.events(target.id)
        view = _message_view(message)
        last = events[-1]
        view.update({"raw_status": last.detail.get("broker_status"),
                     "error": last.detail.get("error"),
                     "error_text": last.detail.get("error_text")})
        self.compare(result, view, case.get("expect", {}))

    async def last_id(self, host: Any) -> int:
        return int(await host.store.read(
            lambda db: db.execute("select coalesce(max(id), 0) from messages").fetchone()[0]))

    # -- outbound -------------------------------------------------------------------

    def outbound(self, instance: BrokerInstance,
                 case: dict[str, Any]) -> tuple[OutboundMessage, dict[str, Any]]:
        m = case.get("message", {})
        message = OutboundMessage(id=int(m.get("id", 1)), to=m.get("to", "+15005550006"),
                                  from_=m.get("from", ""),
                                  text=m.get("text", ""), ref=str(m.get("ref", m.get("id", 1))),
                                  encoding=m.get("encoding", "gsm7"),
                                  segments=int(m.get("segments", 1)))
        account_id = case.get("account") or next(iter(instance.accounts))
        return message, instance.account_values(instance.accounts[account_id])

    async def mt(self, host: Any, instance: BrokerInstance, case: dict[str, Any],
                 result: CaseResult) -> None:
        message, account = self.outbound(instance, case)
        request = instance.broker.build_mt_request(message, account)
        logging.getLogger("smshost.kit").debug("built %s", request.describe())
        expect = case.get("expect", {})
        split = urlsplit(request.url)
        view: dict[str, Any] = {"method": request.method, "url": request.url,
                                "path": split.path, "body": request.body.decode()}
        if "query" in expect:
            view["query"] = dict(parse_qsl(split.query, keep_blank_values=True))
        if "form" in expect:
            view["form"] = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        if "json" in expect:
            view["json"] = json.loads(request.body or b"null")
        if "headers" in expect:
            lowered = {k.lower(): v for k, v in request.headers.items()}
            view["headers"] = {k: lowered.get(k.lower()) for k in expect["headers"]}
        self.compare(result, view, expect)

    async def mt_response(self, host: Any, instance: BrokerInstance, case: dict[str, Any],
                          result: CaseResult) -> None:
        message, account = self.outbound(instance, case)
        body = case.get("body", "")
        if "json" in case:
            body = json.dumps(case["json"])
        response = MtResponse(int(case.get("status", 200)),
                              {k.lower(): v for k, v in case.get("headers", {}).items()},
                              body.encode())
        outcome = instance.broker.read_mt_response(response, message, account)
        view = {"outcome": outcome.outcome, "message_id": outcome.message_id,
                "error": outcome.error, "error_code": outcome.error_code,
                "retry_after": outcome.retry_after}
        self.compare(result, view, case.get("expect", {}))

    # -- checks ---------------------------------------------------------------------

    @staticmethod
    def compare(result: CaseResult, actual: dict[str, Any], expected: dict[str, Any]) -> None:
        for key, want in expected.items():
            have = actual.get(key)
            if isinstance(want, dict) and isinstance(have, dict):
                for sub, sub_want in want.items():
                    if have.get(sub) != sub_want:
                        result.problems.append(f"{key}.{sub}: expected {sub_want!r}, "
                                               f"got {have.get(sub)!r}")
            elif have != want:
                result.problems.append(f"{key}: expected {want!r}, got {have!r}")

    def secrets_check(self, host: Any) -> CaseResult:
        result = CaseResult("secrets", "no secret in logs")
        secrets: list[str] = []
        for instance in host.brokers.values():
            for account in instance.accounts.values():
                if account.password is not None and account.password.reveal():
                    secrets.append(account.password.reveal())
            for name, spec in instance.definition.options.items():
                value = instance.settings.options.get(name)
                if spec.secret and value is not None and value.reveal():
                    secrets.append(value.reveal())
        text = self.log.getvalue()
        for secret in secrets:  # as it is, percent-encoded or base64
            if reveals(text, secret):
                result.problems.append(f"a secret ({len(secret)} characters) appears in the log")
        return result


def _message_view(message: Any) -> dict[str, Any]:
    view = {"from": message.remote, "to": message.local, "text": message.body,
            "id": message.broker_message_id, "account": message.account,
            "segments": message.segments, "encoding": message.encoding,
            "status": message.status, "direction": message.direction,
            "attrs": message.attrs}
    for key, value in message.attrs.items():
        view[f"attrs.{key}"] = value
    return view
