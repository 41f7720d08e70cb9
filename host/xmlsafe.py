"""Parsing XML from files and requests without DTDs, entities or network access."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from host.errors import PluginError


def safe_parser() -> etree.XMLParser:
    """An XML parser that loads no DTD, expands no entity and never touches the network."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False)


def check_xml(path: Path) -> etree._ElementTree:
    """Parse ``path`` safely; a DOCTYPE is refused (no entities, no XXE)."""
    try:
        tree = etree.parse(str(path), safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or (exc.position[0] if exc.position else None)
        raise PluginError(f"{path}:{line}: malformed XML: {exc.msg}", name=path.stem,
                          source=str(path)) from None
    except OSError as exc:
        raise PluginError(f"{path}: cannot read: {exc}", name=path.stem,
                          source=str(path)) from None
    if tree.docinfo.doctype:
        raise PluginError(f"{path}:1: a DOCTYPE is not allowed in a broker definition",
                          name=path.stem, source=str(path))
    return tree
