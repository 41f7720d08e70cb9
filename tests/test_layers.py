"""The layer rules of issue 12, read from the source with ``ast`` (runtime imports,
``TYPE_CHECKING`` imports and imports inside functions alike, ``import_module("m")`` and
``__import__("m")`` calls, attribute chains like ``host.core.Host`` after ``import host``):

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

# (b) Modules that import host.core: the entry points only (the CLI's commands, in host.cli*, build a
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
    chain: bool = False  # an attribute chain (``host.core.Host``), not a module name


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
    """Every import of a module, wherever it is (top level, TYPE_CHECKING, functions).

    Besides the statements: a call ``importlib.import_module("m")``, ``import_module("m")``
    or ``__import__("m")`` with a constant absolute name imports ``m`` (with the constant
    ``fromlist`` of ``__import__`` as the names). An attribute chain rooted at a name an
    import binds (``import host`` binds ``host``, ``import host.api as a`` binds ``a``,
    ``from host import web`` binds ``web``) is an import of that chain (``host.core.Host``),
    which :func:`targets` cuts to its longest prefix that is a known module (host.core).
    Chosen to be sound over precise: a binding holds for the whole file, whatever the scope
    or shadowing (a parameter named ``host`` in a file that imports ``host`` counts too).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    bound: dict[str, str] = {}  # a name an import binds -> the module path it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, (), node.lineno)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield Import(name, module, tuple(a.name for a in node.names), node.lineno)
            for alias in node.names:
                if alias.name != "*":
                    bound[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Call) and _loader(node.func) and node.args \
                and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and not node.args[0].value.startswith("."):
            yield Import(name, node.args[0].value, _fromlist(node), node.lineno)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain = _chain(node)
            if chain and chain[0] in bound:
                yield Import(name, ".".join([bound[chain[0]], *chain[1:]]), (), node.lineno,
                             chain=True)


def _loader(func: ast.expr) -> bool:
    """``import_module`` (bare or as an attribute, ``importlib.import_module``), ``__import__``."""
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _fromlist(call: ast.Call) -> tuple[str, ...]:
    """The constant ``fromlist`` of ``__import__(name, globals, locals, fromlist)``."""
    given = [k.value for k in call.keywords if k.arg == "fromlist"] + call.args[3:4]
    if given and isinstance(given[0], ast.List | ast.Tuple):
        return tuple(e.value for e in given[0].elts
                     if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return ()


def _chain(node: ast.expr) -> list[str]:
    """``a.b.c`` as ["a", "b", "c"]; [] when it is not rooted at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else []


def targets(imp: Import, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` an import loads (``from host import core`` is host.core);
    for an attribute chain (``host.core.Host``), its longest prefix that is one."""
    module = imp.module
    while imp.chain and module not in known and "." in module:
        module = module.rpartition(".")[0]
    found = {module} if module in known else set()
    found |= {f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in known}
    return found


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for imp in imports(name, path):
            edges[name] |= targets(imp, known) - {name}
    return edges


def _within_package(name: str, package: str) -> bool:
    """``name`` is ``package`` or one of its modules (not a sibling sharing a prefix)."""
    return name == package or name.startswith(package + ".")


def _own(importer: str) -> str:
    """The package a plugin may import from freely: its own (plugins.sinks.webhook)."""
    parts = importer.split(".")
    return "host.defaults" if _within_package(importer, "host.defaults") \
        else ".".join(parts[:3])


def plugin_violations(root: Path) -> set[tuple[str, str]]:
    """(a) (plugin, smshost module) pairs beyond ``host`` and ``host.api``."""
    known = modules(root)
    found = set()
    for name, path in known.items():
        if not (name.startswith("plugins.") or _within_package(name, "host.defaults")):
            continue
        for imp in imports(name, path):
            for target in targets(imp, known) or {imp.module}:
                if target.split(".")[0] not in ("host", "plugins"):
                    continue
                if target in PLUGIN_FACE or _within_package(target, _own(name)):
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


# (d) is read from what a module's text says: SQL in string literals (plain, implicitly
# joined, f-strings, ``+`` concatenations, schema-qualified or quoted names), sqlite-utils
# calls on a table named by a constant (``db["messages"].insert``), and ``purge_table``
# calls naming the tables. Out of scope, as data flows: a table reached through a
# variable (``t = db["messages"]; t.insert(...)``, ``purge_table(table, ...)``), SQL built
# by ``%``, ``format`` or ``join``, or a name passed in from elsewhere.
_TABLES = ("messages", "message_events")
_QUOTE, _UNQUOTE = r"[\"'`\[]?", r"[\"'`\]]?"
_WRITE_SQL = re.compile(r"\b(?:insert\s+(?:or\s+\w+\s+)?into|update(?:\s+or\s+\w+)?|"
                        r"delete\s+from|replace\s+into)\s+"
                        rf"(?:{_QUOTE}(?:\w+|\{{\}}){_UNQUOTE}\.)?"  # a schema: main.messages
                        rf"{_QUOTE}(messages|message_events)\b(?![.\w])", re.IGNORECASE)
_WRITE_METHODS = {"insert", "insert_all", "upsert", "upsert_all", "update", "delete",
                  "delete_where"}


def _text(node: ast.AST) -> str:
    """A string expression's constant parts, joined, with ``{}`` for each other part:
    ``"update " + table + " set"`` is ``update {} set``, ``f"update {t} set"`` too."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):  # f"{'messages'}" is messages
        return _text(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return "{}"


def _texts(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) or \
                isinstance(node, ast.JoinedStr) or \
                isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            yield _text(node), node.lineno


def _purges(tree: ast.AST) -> Iterator[int]:
    """``store.purge_table("messages", ...)`` / ``purge_table(store, "message_events", ...)``
    / ``purge_table(..., children=[("message_events", "message_id")])``."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and (
                isinstance(node.func, ast.Attribute) and node.func.attr == "purge_table"
                or isinstance(node.func, ast.Name) and node.func.id == "purge_table")):
            continue
        named = [*node.args, *(k.value for k in node.keywords if k.arg == "table")]
        for k in node.keywords:
            if k.arg == "children" and isinstance(k.value, ast.List | ast.Tuple):
                named += [e.elts[0] for e in k.value.elts
                          if isinstance(e, ast.List | ast.Tuple) and e.elts]
        if any(isinstance(n, ast.Constant) and n.value in _TABLES for n in named):
            yield node.lineno


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
        if isinstance(key, ast.Constant) and key.value in _TABLES:
            yield node.lineno


def ledger_writers(root: Path) -> set[str]:
    """(d) Modules with SQL, sqlite-utils or purge_table calls writing messages /
    message_events."""
    found = set()
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        if any(_WRITE_SQL.search(text) for text, _ in _texts(tree)) or \
                any(True for _ in _table_writes(tree)) or any(True for _ in _purges(tree)):
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


# Each case adds files to the bad tree (replacing any of the same name) and names the
# violations it adds; "plain" is the bad tree alone, "... not" cases add none.
Files = dict[str, str]
_HIDDEN_CORE = {  # a module importing host.core without an import statement of it
    "import_module": "import importlib\n\nCORE = importlib.import_module('host.core')\n",
    "bare import_module": "from importlib import import_module\n\n"
                          "def f():\n    return import_module('host.core')\n",
    "__import__": "CORE = __import__('host.core')\n",
    "__import__ fromlist": "CORE = __import__('host', fromlist=['core'])\n",
    "import host, host.core.Host": "import host\n\ndef f():\n    return host.core.Host()\n",
    "import host as h, h.core.Host": "import host as h\n\nHOST = h.core.Host\n",
    "import host.api, host.core.Host": "import host.api\n\nHOST = host.core.Host\n",
}
_PURGE = 'await store.purge_table({}, "at", "2020", batch_size=1, pause=0{})\n'
RULE_A: dict[str, tuple[Files, set[tuple[str, str]]]] = {
    "plain": ({}, set()),
    **{how: ({"plugins/sinks/hidden.py": text}, {("plugins.sinks.hidden", "host.core")})
       for how, text in _HIDDEN_CORE.items()},
    "__import__ host.models": ({"plugins/sinks/hidden.py": "M = __import__('host.models')\n"},
                               {("plugins.sinks.hidden", "host.models")}),
    "a sibling sharing a prefix": (
        {"plugins/sinks/chatty.py": "X = 1\n",
         "plugins/sinks/chat.py": "from plugins.sinks.chatty import X\n"},
        {("plugins.sinks.chat", "plugins.sinks.chatty")}),
    "a package's sibling": (
        {"plugins/sinks/goodies.py": "X = 1\n",
         "plugins/sinks/good/parts.py": "from plugins.sinks.goodies import X\n"},
        {("plugins.sinks.good.parts", "plugins.sinks.goodies")}),
    "import host, host.api.Message not": (
        {"plugins/sinks/fine.py": "import host\n\nM = host.api.Message\n"}, set()),
}
RULE_B: dict[str, tuple[Files, set[str]]] = {
    "plain": ({}, set()),
    **{how: ({"host/hidden.py": text}, {"host.hidden"}) for how, text in _HIDDEN_CORE.items()},
}
RULE_D_WRITES = {  # the body of ``async def go(store, v)`` in host/w.py
    "concatenation": 'store.execute("update " + "messages set status = ?")\n',
    "concatenation around a variable":
        'store.execute("delete from " + "message_events" + " where id = " + v)\n',
    "an f-string concatenated": 'store.execute("insert into " + f"messages values ({v})")\n',
    "an f-string's constant field": "store.execute(f\"update {'messages'} set status = 1\")\n",
    "a schema": 'store.execute("insert into main.messages (id) values (1)")\n',
    "a quoted schema": 'store.execute(\'UPDATE "main"."message_events" SET at = 1\')\n',
    "an f-string's schema": 'store.execute(f"delete from {v}.messages")\n',
    "store.purge_table": _PURGE.format('"messages"', ""),
    "purge_table's children": _PURGE.format('"outbox"', ', children=[("message_events", "id")]'),
    "upkeep.purge_table": 'await upkeep.purge_table(store, "message_events", "at", "2020")\n',
    "a bare purge_table": 'await purge_table("messages", "at", "2020", batch_size=1, pause=0)\n',
    "other tables not": (_PURGE.format('"outbox"', "")
                         + '    store.execute("update " + v + " set x = 1")\n'
                         + '    store.execute("select * from " + "messages")\n'),
}
RULE_D: dict[str, tuple[Files, set[str]]] = {
    "plain": ({}, set()),
    **{how: ({"host/w.py": f"async def go(store, v):\n    {body}"},
             set() if how.endswith(" not") else {"host.w"})
       for how, body in RULE_D_WRITES.items()},
}
RULE_E: dict[str, tuple[Files, set[str]]] = {
    "plain": ({}, set()),
    **{how: ({"host/core.py": "from host import worker, hidden\n", "host/hidden.py": text},
             {"host.hidden"}) for how, text in _HIDDEN_CORE.items()},
}


def _cases(cases: dict[str, tuple[Files, set]]) -> pytest.MarkDecorator:  # type: ignore[type-arg]
    return pytest.mark.parametrize(("files", "more"), list(cases.values()), ids=list(cases))


@_cases(RULE_A)
def test_rule_a_catches_a_plugin_importing_internals(bad_tree: Path, files: Files,
                                                     more: set[tuple[str, str]]) -> None:
    _tree(bad_tree, files)
    assert plugin_violations(bad_tree) == {("plugins.sinks.bad", "host.models"),
                                           ("plugins.sinks.sneaky", "host.core")} | more


@_cases(RULE_B)
def test_rule_b_catches_an_import_of_host_core(bad_tree: Path, files: Files,
                                               more: set[str]) -> None:
    _tree(bad_tree, files)
    assert core_importers(bad_tree) == {"host.worker", "plugins.sinks.sneaky"} | more


def test_rule_c_catches_a_private_import(bad_tree: Path) -> None:
    assert private_imports(bad_tree) == {("host.worker", "host.models", "_secret")}


@_cases(RULE_D)
def test_rule_d_catches_a_write_to_messages(bad_tree: Path, files: Files,
                                            more: set[str]) -> None:
    _tree(bad_tree, files)
    assert ledger_writers(bad_tree) == {"host.writer"} | more
    (bad_tree / "host" / "writer.py").write_text(
        'def go(db):\n    db.table("messages").update(1, {})\n', encoding="utf-8")
    assert ledger_writers(bad_tree) == {"host.writer"} | more


@_cases(RULE_E)
def test_rule_e_catches_a_cycle_through_host_core(bad_tree: Path, files: Files,
                                                  more: set[str]) -> None:
    _tree(bad_tree, files)
    assert core_cycle(bad_tree) == {"host.worker"} | more
