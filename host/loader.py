"""Load a Python file as a fresh module, in isolation.

Each load reads the bytes once, hashes them, and executes exactly those bytes (no
``.pyc``, no ``sys.path`` edits, no ``importlib.reload``) as a new module named
``smshost_plugins.<kind>.<stem>`` (plus ``__<digest>`` when ``versioned``), which is put
in ``sys.modules`` before it runs so dataclasses and pickling work inside it. A file
that raises, even ``SystemExit``, yields a :class:`PluginError` whose message names the
file and line; nothing is left in ``sys.modules``.
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


def load_module(path: Path, kind: str, *, versioned: bool = False) -> LoadedModule:
    """Execute ``path`` as a new module; raise :class:`PluginError` if it fails."""
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise PluginError(f"{path}: cannot read: {exc.strerror}", name=path.stem,
                          source=str(path)) from None
    digest = hashlib.sha256(source).hexdigest()
    name = f"smshost_plugins.{kind}.{_safe(path.stem)}"
    if versioned:
        name += f"__{digest[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        code = compile(source, str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin file may raise anything
        sys.modules.pop(name, None)
        raise PluginError(describe_failure(exc, path), name=path.stem, source=str(path)) from exc
    return LoadedModule(module, digest, path)


def unload(module: ModuleType) -> None:
    """Forget a module loaded by :func:`load_module`."""
    sys.modules.pop(module.__name__, None)


def describe_failure(exc: BaseException, path: Path) -> str:
    """``file:line: ExcType: message`` pointing at the deepest frame in ``path``."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno
    where = f"{path}:{line}" if line else str(path)
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return f"{where}: {text[-1] if text else type(exc).__name__}"


def _safe(stem: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in stem)
