"""What every step of reading a broker definition shares (see ``definition.py``): the
file, the options declared so far, the element being read, and the checks that end in
a :class:`DefinitionError` naming the file and the element's line."""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Concatenate, TypeVar

from lxml import etree

from host.brokers.specs import OptionSpec, SignatureSpec
from host.brokers.templates import Template, TemplateError
from host.errors import DefinitionError
from host.quoting import quoted

_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_R = TypeVar("_R")
_P = typing.ParamSpec("_P")
_E = TypeVar("_E", bound="ElementReader")


def at(method: Callable[Concatenate[_E, Any, _P], _R]) -> Callable[Concatenate[_E, Any, _P], _R]:
    """A reader step for element ``el``: while it runs, ``where`` is ``el``, so that an
    unexpected failure inside names the innermost element being read."""
    @functools.wraps(method)
    def step(self: _E, el: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        outer = self.where
        if el is not None:
            self.where = el
        result = method(self, el, *args, **kwargs)
        self.where = outer
        return result
    return step


def elements(el: etree._Element | None) -> list[etree._Element]:
    """Child elements, without comments and processing instructions."""
    return [] if el is None else [c for c in el if isinstance(c.tag, str)]


class ElementReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.options: frozenset[str] = frozenset()
        self.option_specs: dict[str, OptionSpec] = {}
        self.signed: SignatureSpec | None = None  # the scheme inbound sources must obey
        self.body = "auto"  # the body format of the <mo>, <receipt> or <ignore> being read
        self.where: etree._Element | None = None  # the element being read (see ``at``)

    def fail(self, el: etree._Element, message: str) -> DefinitionError:
        return DefinitionError(message, file=str(self.path), line=el.sourceline)

    @at
    def template(self, el: etree._Element, text: str | None,
                 options: Iterable[str] | None = None) -> Template:
        try:
            return Template(text or "", self.options if options is None else options)
        except TemplateError as exc:
            raise self.fail(el, str(exc)) from None

    def header_name(self, el: etree._Element, name: str | None) -> None:
        if name is not None and not _HTTP_TOKEN.fullmatch(name):
            raise self.fail(el, f"{quoted(name, 80)} is not an HTTP header name (letters, "
                            "digits and !#$%&'*+-.^_`|~, at least one)")
