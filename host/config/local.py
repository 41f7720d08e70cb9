"""Settings that belong to one node, not to the cluster's shared configuration.

Nodes on one PostgreSQL database share one configuration (host.config.adopt): a change
made on one is applied on all. What each node listens on (``[[listeners]]``) and keeps
its own files in (``server.data_dir``), and its ``server.role``, are its own: two nodes
on one machine cannot listen on one port, and a node bound to its private address
binds to its own. A version another node recorded is applied here with this node's own
values of these (:func:`with_local`), and two nodes whose files differ only in them run
the same version (:func:`shared_digest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import tomlkit
from tomlkit.exceptions import TOMLKitError

__all__ = ["LOCAL", "shared_digest", "with_local"]

FILE = "smshost.toml"
LOCAL: tuple[tuple[str, ...], ...] = (("listeners",), ("server", "data_dir"),
                                      ("server", "role"))


def shared_digest(files: Mapping[str, str]) -> str:
    """The SHA-256 of ``files`` without the node's own settings."""
    shared = dict(files)
    if FILE in shared:
        shared[FILE] = _without_local(shared[FILE])
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()


def with_local(files: Mapping[str, str], mine: Mapping[str, str]) -> dict[str, str]:
    """``files`` (another node's version) with this node's own settings of ``mine``."""
    out = dict(files)
    if FILE not in out or FILE not in mine:
        return out
    try:
        theirs, ours = tomlkit.parse(out[FILE]), tomlkit.parse(mine[FILE])
    except TOMLKitError:
        return out  # not TOML: the validation refuses it with its line
    for path in LOCAL:
        _drop(theirs, path)
        found = _get(ours, path)
        if found is not None:
            _put(theirs, path, found)
    out[FILE] = tomlkit.dumps(theirs)
    return out


def _without_local(text: str) -> str:
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError:
        return text
    for path in LOCAL:
        _drop(doc, path)
    return json.dumps(doc.unwrap(), sort_keys=True, default=str)


def _get(doc: object, path: tuple[str, ...]) -> object | None:
    for key in path:
        if not isinstance(doc, Mapping) or key not in doc:
            return None
        doc = doc[key]
    return doc


def _drop(doc: object, path: tuple[str, ...]) -> None:
    parent = _get(doc, path[:-1]) if len(path) > 1 else doc
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]


def _put(doc: tomlkit.TOMLDocument, path: tuple[str, ...], value: object) -> None:
    if len(path) == 1:
        doc[path[0]] = value
        return
    table = doc.get(path[0])
    if table is None:
        table = tomlkit.table()
        doc[path[0]] = table
    table[path[1]] = value
