"""Load the configuration directory into frozen :class:`Settings`.

Each file of ``FILES`` is optional; a missing one means defaults. Every problem in every
file is collected and raised together as :class:`ConfigErrors`, each naming file, line
and key: such a problem stops the start, as it leaves the whole configuration in doubt.

Except inside one ``[[brokers]]`` table (``ISOLATED``): a problem there, or a rule about
it (a name used twice), concerns that broker instance alone. It is kept on the instance
(``BrokerSettings.config_problems``), the instance is not started, and the others run
(host.brokers.instances). docs/operators.md lists which problems are which.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from host.config.lines import KeyPath, LineMap
from host.config.schema import Converter
from host.config.settings import FILES, Origin, Settings
from host.errors import ConfigError, ConfigErrors

WHOLE_FILE_KEY = "sinks"
ISOLATED = ("brokers",)
"""Arrays whose items stand alone: a problem inside one disables that item only."""
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


class _Document:
    def __init__(self, path: Path, data: dict[str, Any], lines: LineMap) -> None:
        self.path = path
        self.data = data
        self.lines = lines


def load_settings(config_dir: Path, environ: dict[str, str] | None = None, *,
                  defer_secrets: bool = False) -> Settings:
    """Read every file in ``config_dir``; raise :class:`ConfigErrors` listing all problems.

    With ``defer_secrets`` (commands that need none of the secrets) a secret whose
    variable or file is missing is no error here: revealing it raises the error."""
    errors: list[ConfigError] = []
    if not config_dir.is_dir():
        raise ConfigErrors([ConfigError("configuration directory not found", file=config_dir)])
    docs = _read_documents(config_dir, errors)
    merged: dict[str, Any] = {}
    owner: dict[str, _Document] = {}
    for doc in docs:
        allowed = FILES[doc.path.name]
        if allowed == (WHOLE_FILE_KEY,):  # sinks.toml: every table is a sink's settings
            merged[WHOLE_FILE_KEY] = doc.data
            owner[WHOLE_FILE_KEY] = doc
            continue
        for key, value in doc.data.items():
            if key not in allowed:
                errors.append(_misplaced(doc, key))
                continue
            merged[key] = value
            owner[key] = doc

    def locate(path: KeyPath) -> tuple[str | None, int | None]:
        doc = owner.get(str(path[0])) if path else None
        if doc is None:
            return (str(config_dir / next(iter(FILES))), None)
        if path[0] == WHOLE_FILE_KEY:
            path = path[1:]
        return (str(doc.path), doc.lines.lookup(path))

    converter = Converter(locate, environ, defer_secrets=defer_secrets, isolated=ISOLATED)
    settings = converter.section(Settings, merged, ())
    errors.extend(converter.errors)
    if errors or not isinstance(settings, Settings):
        errors += [e for found in converter.item_errors.values() for e in found]
        raise ConfigErrors(sorted(errors, key=lambda e: (e.file or "", e.line or 0)))
    brokers = tuple(
        dataclasses.replace(broker, config_problems=tuple(
            e.describe() for e in converter.item_errors[("brokers", i)]))
        if ("brokers", i) in converter.item_errors else broker
        for i, broker in enumerate(settings.brokers))
    return dataclasses.replace(settings, brokers=brokers,
                               origin=Origin(locate, defer_secrets=defer_secrets))


def _read_documents(config_dir: Path, errors: list[ConfigError]) -> list[_Document]:
    docs = []
    for path in sorted(config_dir.glob("*.toml")):
        if path.name not in FILES:
            errors.append(ConfigError(
                f"unknown configuration file; expected {', '.join(FILES)}", file=path
            ))
            continue
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except UnicodeDecodeError:
            errors.append(ConfigError("not UTF-8 text", file=path))
            continue
        except tomllib.TOMLDecodeError as exc:
            errors.append(_syntax_error(path, exc))
            continue
        docs.append(_Document(path, data, LineMap(text)))
    return docs


def _syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    line = int(match.group(1)) if match else None
    return ConfigError(f"TOML syntax error: {_TOML_POSITION.sub('', message).strip()}",
                       file=path, line=line)


def _misplaced(doc: _Document, key: str) -> ConfigError:
    home = [name for name, keys in FILES.items() if key in keys]
    hint = (f"it belongs in {home[0]}" if home
            else f"{doc.path.name} holds {', '.join(FILES[doc.path.name])}")
    return ConfigError(f"unknown section {key!r}; {hint}", file=doc.path,
                       line=doc.lines.lookup((key,)), key=key)
