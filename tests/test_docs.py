"""Docs that are generated from code must match it."""

from __future__ import annotations

from host.config.docs import END, START, render
from tests.conftest import ROOT


def test_operators_reference_is_up_to_date() -> None:
    text = (ROOT / "docs" / "operators.md").read_text()
    current = text[text.index(START):text.index(END) + len(END)]
    assert current == render(), "run `make docs` to regenerate docs/operators.md"


def test_every_setting_appears_in_the_reference() -> None:
    import dataclasses
    import typing

    from host.config.settings import Settings

    text = render()

    def walk(cls: type, prefix: str) -> None:  # noqa: C901
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if field.metadata.get("internal"):
                continue
            tp = hints[field.name]
            inner = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{prefix}{field.name}.")  # type: ignore[arg-type]
            elif field.name == "attrs" and cls is Settings:
                assert "### `[attrs]`" in text  # a table of the user's own names
            elif typing.get_origin(tp) is dict and cls is Settings:
                assert f"config/{field.name}.toml" in text  # a whole file of tables
            else:
                assert f"| `{field.name}` |" in text, f"{prefix}{field.name} is not documented"

    walk(Settings, "")
