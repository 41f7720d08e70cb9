"""Load a Python file as a fresh module, in isolation.

Each load reads the bytes once, hashes them, and executes exactly those bytes (no
``.pyc``, no ``sys.path`` edits, no ``importlib.reload``) as a new module named
``smshost_plugins.<kind>.<stem>`` (plus ``__<digest>`` when ``versioned``), which is put
in ``sys.modules`` before it runs so dataclasses and pickling work inside it. A file
that raises, even ``SystemExit``, yields a :class:`PluginError` whose message names the
file and line; nothing is left in ``sys.modules``.

A plugin may also be a package: a folder with an ``__init__.py``. Its ``__init__.py`` is
executed the same way, as a package whose other modules it imports relatively
(``from .settings import ...``, ``from . import settings``) through the ordinary
import system; a failure in any of
them names that module's file and line, and unloading forgets them all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from host.errors import PluginError


@dataclass(frozen=True, slots=True)
class LoadedModule:
    module: ModuleType
    digest: str
    path: Path


def is_package(path: Path) -> bool:
    """Whether ``path`` is a plugin package: a folder with an ``__init__.py``."""
    return path.is_dir() and (path / "__init__.py").is_file()


def load_module(path: Path, kind: str, *, versioned: bool = False) -> LoadedModule:
    """Execute ``path`` (a file, or a package folder) as a new module; raise
    :class:`PluginError` if it fails."""
    package = is_package(path)
    file = path / "__init__.py" if package else path
    try:
        source = file.read_bytes()
    except OSError as exc:
        raise PluginError(f"{path}: cannot read: {exc.strerror}", name=path.stem,
                          source=str(path)) from None
    digest = hashlib.sha256(source).hexdigest()
    name = f"smshost_plugins.{kind}.{_safe(path.stem)}"
    if versioned:
        name += f"__{digest[:12]}"
    spec = importlib.util.spec_from_file_location(
        name, file, submodule_search_locations=[str(path)] if package else None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    _parents(name)
    sys.modules[name] = module
    try:
        code = compile(source, str(file), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin file may raise anything
        unload(module)
        raise PluginError(describe_failure(exc, path), name=path.stem, source=str(path)) from exc
    return LoadedModule(module, digest, path)


def _parents(name: str) -> None:
    """Empty parent packages of ``name`` in ``sys.modules`` (``smshost_plugins``,
    ``smshost_plugins.<kind>``): ``from . import sibling`` in a package's module goes
    through ``__import__("smshost_plugins.<kind>.<stem>.sibling")``, which needs them."""
    parts = name.split(".")
    for end in range(1, len(parts) - 1):
        parent = ".".join(parts[:end])
        if parent not in sys.modules:
            placeholder = ModuleType(parent)
            placeholder.__path__ = []
            sys.modules[parent] = placeholder


def unload(module: ModuleType) -> None:
    """Forget a module loaded by :func:`load_module` (and a package's modules)."""
    name = module.__name__
    for loaded in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
        sys.modules.pop(loaded, None)


def describe_failure(exc: BaseException, path: Path) -> str:
    """``file:line: ExcType: message`` pointing at the deepest frame in ``path`` (a file,
    or any module of a package folder)."""
    file, line = path, None
    if isinstance(exc, SyntaxError):
        line = exc.lineno
        if exc.filename and _within(Path(exc.filename), path):
            file = Path(exc.filename)
    for frame in traceback.extract_tb(exc.__traceback__):
        if _within(Path(frame.filename), path):
            file, line = Path(frame.filename), frame.lineno
    where = f"{file}:{line}" if line else str(file)
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return f"{where}: {text[-1] if text else type(exc).__name__}"


def _within(file: Path, path: Path) -> bool:
    return file == path or path in file.parents


def _safe(stem: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in stem)
