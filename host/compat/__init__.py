"""Send APIs other gateways' applications already speak (issue 16 points 4 and 5):
Kannel's ``/cgi-bin/sendsms`` (host.compat.kannel) and Jasmin's ``/send`` and ``/rate``
(host.compat.jasmin), each answering as that gateway does and sending through
``host.web.api.send.submit`` (the path of ``POST /api/messages``: the same checks and
rights). Their status callbacks (``dlr-url``) are kept and retried by
host.compat.callbacks. docs/migrating.md says what maps to what."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from host.config.settings import ListenerSettings, Settings


def routes(settings: Settings, listener: ListenerSettings) -> list[BaseRoute]:
    """The compatible routes ``listener`` serves: those enabled and configured on it
    (unset: on the API listener)."""
    from host.compat import jasmin, kannel

    found: list[BaseRoute] = []
    kannel_on, jasmin_on = settings.compat.kannel, settings.compat.jasmin
    if kannel_on.enabled and _serves(kannel_on.listener, listener):
        found.append(Route(kannel_on.path, kannel.sendsms, methods=["GET", "POST"]))
    if jasmin_on.enabled and _serves(jasmin_on.listener, listener):
        found.append(Route(f"{jasmin_on.prefix}/send", jasmin.send, methods=["GET", "POST"]))
        found.append(Route(f"{jasmin_on.prefix}/rate", jasmin.rate, methods=["GET", "POST"]))
    return found


def _serves(named: str | None, listener: ListenerSettings) -> bool:
    return listener.api if named is None else named == listener.name
