"""The one exception tree of smshost.

* SmshostError: base of everything smshost raises on purpose
    * ConfigError: one problem in a configuration file (file, line, key, message)
        * ConfigErrors: several ConfigErrors found in one load, reported together
            * ConfigRefused: a change of the running configuration was refused (the
              running configuration stays; host.config.change)
    * PluginError: a plugin failed to load or broke a rule (name, source, reason)
        * DefinitionError: a broker definition is invalid (file, line, reason)
    * StoreError: the database could not do what was asked
        * StoreClosed: the store is not open (startup not finished, or shut down)
        * StoreUnavailable: the database refused the work (full disk, read-only, I/O error,
          a lock held too long); nothing of it was stored
    * DataDirInUse: another smshost process holds the data directory (a server)
    * HttpError: an outbound HTTP request got no answer (cannot connect, broken
      connection, TLS refused, timed out, client closed; host.httpclient)
    * ApiError: an HTTP API request was refused (status, code, message)
        * PeopleError: a change to users or workgroups was refused (host.people)

Config and definition errors carry the file and line so an operator can go straight
to the problem; messages say what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path


class SmshostError(Exception):
    """Base class of every error smshost raises deliberately."""


class ConfigError(SmshostError):
    """One problem in a configuration file."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        super().__init__(self.describe())

    def describe(self) -> str:
        """``file:line: key: message`` with the parts that are known."""
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class ConfigErrors(ConfigError):
    """Every problem found in one configuration load."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0] if self.errors else None
        super().__init__(
            "\n".join(e.describe() for e in self.errors) or "invalid configuration",
            file=None,
            line=None,
            key=None,
        )
        self.first = first

    def __iter__(self) -> Iterator[ConfigError]:
        return iter(self.errors)

    def describe(self) -> str:
        return "\n".join(e.describe() for e in getattr(self, "errors", [])) or self.message


class ConfigRefused(ConfigErrors):
    """A change of the running configuration was refused: it is not valid as a whole.
    The node keeps running with its previous configuration."""


class PluginError(SmshostError):
    """A plugin could not be loaded or used."""

    def __init__(self, message: str, *, name: str | None = None, source: str | None = None):
        self.name = name
        self.source = source
        super().__init__(message)


class DefinitionError(PluginError):
    """A broker definition (XML or adapter) is invalid; the message starts ``file:line:``."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}", name=None, source=file)


class StoreError(SmshostError):
    """The store failed to carry out a read or write."""


class StoreClosed(StoreError):
    """The store is not open."""


class StoreUnavailable(StoreError):
    """The database refused the work for a reason outside it: the disk (or the database's
    size limit) is full, the file is read-only, an I/O error, a lock another process held
    too long. Nothing of the refused write was stored; the same write may go through
    later. ``kind`` names the reason (``full``, ``readonly``, ``ioerr``, ``busy``...)."""

    def __init__(self, message: str, kind: str) -> None:
        self.kind = kind
        super().__init__(message)


class DataDirInUse(SmshostError):
    """Another process holds the data directory's lock: a server runs on it."""


class HttpError(SmshostError):
    """An outbound HTTP request got no answer: what a network error is to its callers,
    whichever client sent it (host.httpclient). ``timed_out``: its timeout passed;
    ``connect_failure``: the connection could not be made, and why."""

    def __init__(self, message: str, *, timed_out: bool = False,
                 connect_failure: str | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.connect_failure = connect_failure


class ApiError(SmshostError):
    """An API request is refused; rendered as JSON ``{"error": code, "message": ...}``,
    with ``headers`` (a ``Retry-After``, say) when given."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        super().__init__(f"{status} {code}: {message}")


class PeopleError(ApiError):
    """A change to users or workgroups is refused (host.people): a field that is wrong
    (400, naming it), a name that is unknown (404) or taken or still in use (409). The
    API answers it as the ApiError it is; the CLI prints its message."""
