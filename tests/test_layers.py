"""The layer rules of issue 12, read from the source with ``ast`` (runtime imports,
``TYPE_CHECKING`` imports and imports inside functions alike):

(a) plugins (``plugins/**``) and the defaults (``host/defaults/**``) import only ``host``
    and ``host.api`` of smshost (plus the stdlib, third parties and their own package);
(b) ``host.core`` is imported only by the composition root's allow-list;
(c) no ``from x import _name`` across modules;
(d) only the ledger writes the tables ``messages`` and ``message_events``;
(e) no import cycle of ``host/`` and ``plugins/`` runs through ``host.core``.

The allow-lists below are today's exceptions. They may only shrink: an entry that is
no longer needed fails the test, so remove it. Each rule is also run over a small tree
with a deliberate violation (the ``test_rule_*_catches`` tests), so none can pass by
finding nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FACE = {"host", "host.api"}

# (a) Imports of smshost internals a plugin or default still makes: none. (The handler
# sink, now host.defaults.handler, is given the handler scripts by the composition root
# and no longer imports host.handlers.runner.) May only stay empty.
PLUGIN_EXCEPTIONS: set[tuple[str, str]] = set()

# (b) Modules that import host.core: the entry points only (the CLI's commands build a
# Host; host.server serves one). Every component below core.py receives its
# collaborators, the web layer sees the node through its own protocols
# (host.web.context.WebHost, host.brokers.webhooks.WebhookHost) and plugins through
# host.api.HostAPI. May only shrink.
CORE_IMPORTERS = {"host.cli", "host.cli_people", "host.cli_testers", "host.server"}

# (c) ``from x import _name`` across modules, as (importer, module, name). May only shrink:
# it is empty (the commands share host.cli_context and host.cli_client by public names).
PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()

# (d) Modules that write messages / message_events: the ledger alone.
LEDGER_WRITERS = {
    "host.ledger",
}

# (e) Modules on an import cycle through host.core (besides host.core): none. host.core
# imports the components it composes; none of them imports it back. Must stay empty.
CORE_CYCLE: set[str] = set()


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the module imported from (resolved when relative)
    names: tuple[str, ...]  # the names of ``from module import names``; () for ``import``
    line: int


def modules(root: Path) -> dict[str, Path]:
    """Every module of ``host/`` and ``plugins/`` under ``root``, by dotted name."""
    found: dict[str, Path] = {}
    for top in ("host", "plugins"):
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> Iterator[Import]:
    """Every import of a module, wherever it is (top level, TYPE_CHECKING, functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield Import(name, module, tuple(a.name for a in node.names), node.lineno)


def targets(imp: Import, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` an import loads (``from host import core`` is host.core)."""
    found = {imp.module} if imp.module in known else set()
    found |= {f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in known}
    return found


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for imp in imports(name, path):
            edges[name] |= targets(imp, known) - {name}
    return edges


def _own(importer: str) -> str:
    """The package a plugin may import from freely: its own (plugins.sinks.webhook)."""
    parts = importer.split(".")
    return "host.defaults" if importer.startswith("host.defaults") else ".".join(parts[:3])


def plugin_violations(root: Path) -> set[tuple[str, str]]:
    """(a) (plugin, smshost module) pairs beyond ``host`` and ``host.api``."""
    known = modules(root)
    found = set()
    for name, path in known.items():
        if not (name.startswith("plugins.") or name.startswith("host.defaults")):
            continue
        for imp in imports(name, path):
            for target in targets(imp, known) or {imp.module}:
                if target.split(".")[0] not in ("host", "plugins"):
                    continue
                if target in PLUGIN_FACE or target.startswith(_own(name)):
                    continue
                found.add((name, target))
    return found


def core_importers(root: Path) -> set[str]:
    """(b) The modules importing host.core."""
    return {name for name, edges in graph(root).items() if "host.core" in edges}


def private_imports(root: Path) -> set[tuple[str, str, str]]:
    """(c) ``from x import _name`` of a module x other than the importer."""
    found = set()
    for name, path in modules(root).items():
        for imp in imports(name, path):
            for n in imp.names:
                if n.startswith("_") and not n.startswith("__") and imp.module != name:
                    found.add((name, imp.module, n))
    return found


_WRITE_SQL = re.compile(r"\b(?:insert\s+(?:or\s+\w+\s+)?into|update(?:\s+or\s+\w+)?|"
                        r"delete\s+from|replace\s+into)\s+[\"'`\[]?(messages|message_events)"
                        r"\b(?![.\w])", re.IGNORECASE)
_WRITE_METHODS = {"insert", "insert_all", "upsert", "upsert_all", "update", "delete",
                  "delete_where"}


def _texts(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, joined
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}"
                           for v in node.values)
            yield text, node.lineno


def _table_writes(tree: ast.AST) -> Iterator[int]:
    """``db["messages"].insert(...)`` / ``db.table("messages").update(...)``."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in _WRITE_METHODS):
            continue
        table = node.func.value
        key: ast.AST | None = None
        if isinstance(table, ast.Subscript):
            key = table.slice
        elif isinstance(table, ast.Call) and isinstance(table.func, ast.Attribute) \
                and table.func.attr == "table" and table.args:
            key = table.args[0]
        if isinstance(key, ast.Constant) and key.value in ("messages", "message_events"):
            yield node.lineno


def ledger_writers(root: Path) -> set[str]:
    """(d) Modules with SQL or sqlite-utils calls writing messages / message_events."""
    found = set()
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if any(_WRITE_SQL.search(text) for text, _ in _texts(tree)) or \
                any(True for _ in _table_writes(tree)):
            found.add(name)
    return found


def core_cycle(root: Path) -> set[str]:
    """(e) The modules on an import cycle through host.core, besides host.core."""
    edges = graph(root)
    if "host.core" not in edges:
        return set()
    back: dict[str, set[str]] = {name: set() for name in edges}
    for name, outs in edges.items():
        for out in outs:
            back[out].add(name)
    return (_reach(edges, "host.core") & _reach(back, "host.core")) - {"host.core"}


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# -- the rules on the real tree ---------------------------------------------------------

def _within(found: set, allowed: set, what: str) -> None:  # type: ignore[type-arg]
    new, stale = found - allowed, allowed - found
    assert not new, f"{what}: not allowed: {sorted(new)}"
    assert not stale, f"{what}: no longer needed, remove from the allow-list: {sorted(stale)}"


def test_plugins_and_defaults_import_only_the_plugin_face() -> None:
    _within(plugin_violations(ROOT), PLUGIN_EXCEPTIONS, "(a) plugin imports")


def test_host_core_is_imported_only_by_the_allow_list() -> None:
    _within(core_importers(ROOT), CORE_IMPORTERS, "(b) imports of host.core")


def test_no_private_name_is_imported_across_modules() -> None:
    _within(private_imports(ROOT), PRIVATE_IMPORTS, "(c) private imports")


def test_only_the_ledger_writes_messages() -> None:
    ledger = {"host.ledger"}
    _within(ledger_writers(ROOT) - ledger, LEDGER_WRITERS - ledger,
            "(d) writers of messages/message_events")


def test_no_import_cycle_runs_through_host_core() -> None:
    _within(core_cycle(ROOT), CORE_CYCLE, "(e) modules on a cycle through host.core")


# -- each rule catches a deliberate violation -------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    return _tree(tmp_path, {
        "host/__init__.py": "",
        "host/api.py": "from host.models import Message\n",
        "host/models.py": "class Message: ...\n_secret = 1\n",
        "host/core.py": "from host import worker\n",
        "host/worker.py": ("from typing import TYPE_CHECKING\n"
                           "from host.models import _secret\n"
                           "if TYPE_CHECKING:\n    from host.core import Host\n"),
        "host/writer.py": ('def go(db):\n    db.execute("UPDATE messages set status = ?")\n'
                           '    db["message_events"].insert({})\n'),
        "host/reader.py": 'SQL = "select * from messages where id in (update_ids)"\n',
        "host/defaults/__init__.py": "",
        "host/defaults/ok.py": "from host.api import Message\nfrom host import hookimpl\n",
        "plugins/sinks/good/__init__.py": "from host.api import Message\nfrom . import parts\n",
        "plugins/sinks/good/parts.py": "from host import api\n",
        "plugins/sinks/bad.py": "from host.models import Message\n",
        "plugins/sinks/sneaky.py": "def f():\n    from host import core\n",
    })


def test_rule_a_catches_a_plugin_importing_internals(bad_tree: Path) -> None:
    assert plugin_violations(bad_tree) == {("plugins.sinks.bad", "host.models"),
                                           ("plugins.sinks.sneaky", "host.core")}


def test_rule_b_catches_an_import_of_host_core(bad_tree: Path) -> None:
    assert core_importers(bad_tree) == {"host.worker", "plugins.sinks.sneaky"}


def test_rule_c_catches_a_private_import(bad_tree: Path) -> None:
    assert private_imports(bad_tree) == {("host.worker", "host.models", "_secret")}


def test_rule_d_catches_a_write_to_messages(bad_tree: Path) -> None:
    assert ledger_writers(bad_tree) == {"host.writer"}
    (bad_tree / "host" / "writer.py").write_text(
        'def go(db):\n    db.table("messages").update(1, {})\n', encoding="utf-8")
    assert ledger_writers(bad_tree) == {"host.writer"}


def test_rule_e_catches_a_cycle_through_host_core(bad_tree: Path) -> None:
    assert core_cycle(bad_tree) == {"host.worker"}
