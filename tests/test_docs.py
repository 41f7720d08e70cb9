"""Docs that are generated from code must match it."""

from __future__ import annotations

from pathlib import Path

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


def test_deployment_guide_settings_exist_and_its_example_loads(tmp_path: Path) -> None:
    """docs/deployment.md names only real `server.*` settings, and its smshost.toml
    example is a valid configuration."""
    import dataclasses
    import re

    from host.config import load_settings
    from host.config.settings import ServerSettings

    text = (ROOT / "docs" / "deployment.md").read_text()
    named = set(re.findall(r"`server\.([a-z_]+)`", text))
    known = {f.name for f in dataclasses.fields(ServerSettings)}
    assert named and named <= known, named - known
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "smshost.toml").write_text(example)
    server = load_settings(tmp_path).server
    assert (server.public_url, server.drain_seconds) == ("https://sms.example.com", 5)
