"""Turn a discovered definition (+ optional adapter) into a broker class (SPEC B2, B3).

An adapter is a module beside the XML (same stem) defining one subclass of
:class:`~host.brokers.engine.XmlBroker`, or a class a package registers. It may
override the steps in ``STEPS`` and add private helpers (names starting with ``_``);
any other public method is an error, so a misspelt step never goes silently unused.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from host.brokers.definition import load_definition
from host.brokers.specs import BrokerDefinition
from host.brokers.engine import STEPS, XmlBroker
from host.errors import DefinitionError

_BASE_NAMES = frozenset(name for name in dir(XmlBroker) if not name.startswith("_"))


@dataclass(frozen=True, slots=True)
class BrokerType:
    """A loaded definition and the class that implements it."""

    definition: BrokerDefinition
    cls: type[XmlBroker]
    origin: str = "folder"


def adapter_class(adapter: ModuleType | type | None, source: str) -> type[XmlBroker]:
    """The XmlBroker subclass an adapter provides (XmlBroker itself when there is none)."""
    if adapter is None:
        return XmlBroker
    if isinstance(adapter, type):
        found = [adapter]
    else:
        found = [obj for obj in vars(adapter).values()
                 if isinstance(obj, type) and issubclass(obj, XmlBroker) and obj is not XmlBroker
                 and obj.__module__ == adapter.__name__]
    if len(found) != 1 or not issubclass(found[0], XmlBroker):
        what = "none" if not found else ", ".join(c.__name__ for c in found)
        raise DefinitionError(f"an adapter defines exactly one subclass of XmlBroker "
                              f"(found {what})", file=source)
    cls = found[0]
    for name, member in vars(cls).items():
        if name.startswith("_") or name in _BASE_NAMES or not callable(member):
            continue
        line = _line_of(member)
        raise DefinitionError(f"{cls.__name__}.{name} is not a broker step; steps are "
                              f"{', '.join(STEPS)}", file=source, line=line)
    return cls


def _line_of(member: object) -> int | None:
    try:
        return inspect.getsourcelines(member)[1]  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None


def load_broker_type(definition: Path, adapter: ModuleType | type | None,
                     adapter_source: str, origin: str = "folder") -> BrokerType:
    """Load and check a definition and its adapter; raise DefinitionError with file:line."""
    loaded = load_definition(definition)
    return BrokerType(loaded, adapter_class(adapter, adapter_source), origin)
