"""Broker definitions: schema validation with file and line, safe parsing, adapters."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from host.brokers.definition import load_definition
from host.brokers.registry import adapter_class, load_broker_type
from host.errors import DefinitionError, PluginError
from host.loader import load_module

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """<?xml version="1.0"?>
<broker name="{name}">
{body}
</broker>
"""


def write(tmp_path: Path, body: str, name: str = "acme") -> Path:
    path = tmp_path / f"{name}.xml"
    path.write_text(MINIMAL.format(name=name, body=textwrap.dedent(body)))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    return str(info.value)


def test_every_shipped_definition_is_valid() -> None:
    names = {load_definition(p).name for p in (ROOT / "plugins" / "brokers").glob("*.xml")}
    assert {"generic", "simulator"} <= names


def test_schema_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        <mo>
          <field name="sender" param="From"/>
        </mo>""")
    message = error_of(path)
    assert message.startswith(f"{path}:4: ")
    assert "sender" in message and "not an element of the set" in message


def test_children_in_the_wrong_order(tmp_path: Path) -> None:
    path = write(tmp_path, "<mt><request/></mt>\n<mo/>")
    assert error_of(path).startswith(f"{path}:4: element 'mo': This element is not expected")


def test_malformed_xml(tmp_path: Path) -> None:
    path = tmp_path / "acme.xml"
    path.write_text("<broker name='acme'>\n<mo>\n</broker>\n")
    assert re.match(rf"{re.escape(str(path))}:3: malformed XML: ", error_of(path))


def test_external_entities_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("classified")
    path = tmp_path / "acme.xml"
    path.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE broker [<!ENTITY x SYSTEM "file://{secret}">]>\n'
                    '<broker name="acme"><description>&x;</description></broker>\n')
    message = error_of(path)
    assert "DOCTYPE is not allowed" in message and "classified" not in message


def test_name_must_match_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "", name="acme")
    path.write_text(path.read_text().replace('name="acme"', 'name="other"'))
    assert "broker name 'other' must match the file name 'acme'" in error_of(path)


@pytest.mark.parametrize(("body", "line", "fragment"), [
    ('<mt><request><param name="to">{message.recipient}</param></request></mt>', 3,
     "unknown name 'message.recipient'"),
    ('<mt><request><param name="x">{options.Nope}</param></request></mt>', 3,
     "refers to option 'Nope', which is not declared"),
    ('<mt><request><param name="x">{message.to|shout}</param></request></mt>', 3,
     "unknown filter 'shout'"),
    ('<mo>\n<field name="from" param="a" pointer="/b"/>\n</mo>', 4, "takes one source"),
    ('<mo>\n<field name="from"/>\n</mo>', 4, "needs a source"),
    ('<mo>\n<field name="from" regex="(unclosed"/>\n</mo>', 4, "bad regex"),
    ('<mo>\n<field name="from" xpath="//[bad"/>\n</mo>', 4, "bad xpath"),
    ('<mo>\n<field name="from" pointer="no-slash"/>\n</mo>', 4, "a JSON pointer starts with '/'"),
    ('<mt><request body="xml"/></mt>', 3, 'body="xml" needs a <template>'),
    ('<mt><request><auth type="basic" user="u"/></request></mt>', 3,
     "auth type 'basic' needs password"),
    ('<mo>\n<field name="id" param="i" pattern="[0-9"/>\n</mo>', 4, "bad pattern '[0-9'"),
    ('<signature scheme="twilio" key="{account.password}"\n broker-key="{account.login}"/>',
     4, "broker-key '{account.login}' is one key for every request"),
])
def test_semantic_errors_name_the_line(tmp_path: Path, body: str, line: int,
                                       fragment: str) -> None:
    path = write(tmp_path, body)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message


def test_profiles_override_defaults_and_options(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        <defaults><gateway>https://api.example</gateway></defaults>
        <options><option name="Region" default="us"/></options>
        <profile name="eu">
          <defaults><gateway>https://eu.api.example</gateway></defaults>
          <options><option name="Region" default="eu"/></options>
        </profile>""")
    definition = load_definition(path)
    eu = definition.with_profile("eu")
    assert eu.defaults.gateway == "https://eu.api.example"
    assert eu.options["Region"].default == "eu"
    assert definition.with_profile(None).defaults.gateway == "https://api.example"


def test_docs_example_is_a_valid_definition(tmp_path: Path) -> None:
    """The complete example of docs/broker-plugins.md loads as written."""
    text = (ROOT / "docs" / "broker-plugins.md").read_text()
    example = re.search(r"```xml\n(<\?xml.*?</broker>)\n```", text, re.S)
    assert example is not None
    path = tmp_path / "acme.xml"
    path.write_text(example.group(1))
    definition = load_definition(path)
    assert definition.name == "acme" and "eu" in definition.profiles
    assert definition.mo is not None and definition.receipt is not None
    assert definition.receipt.status_map["delivered"] == "delivered"


ADAPTER = '''
from host.brokers.engine import XmlBroker


class Acme(XmlBroker):
    def _helper(self):
        return 1

    {extra}
'''


def test_adapter_overriding_an_unknown_step_is_refused(tmp_path: Path) -> None:
    xml = write(tmp_path, "")
    py = tmp_path / "acme.py"
    py.write_text(ADAPTER.format(extra="def parse_sms(self, request):\n        return None\n"))
    module = load_module(py, "brokers").module
    with pytest.raises(DefinitionError) as info:
        load_broker_type(xml, module, str(py))
    assert str(info.value).startswith(f"{py}:9: Acme.parse_sms is not a broker step")


def test_adapter_with_known_steps_is_accepted(tmp_path: Path) -> None:
    py = tmp_path / "acme.py"
    py.write_text(ADAPTER.format(extra="def parse_mo(self, request):\n"
                                 "        return super().parse_mo(request)\n"))
    module = load_module(py, "brokers").module
    assert adapter_class(module, str(py)).__name__ == "Acme"


def test_adapter_without_a_subclass_is_refused(tmp_path: Path) -> None:
    py = tmp_path / "acme.py"
    py.write_text("x = 1\n")
    module = load_module(py, "brokers").module
    with pytest.raises(PluginError, match="exactly one subclass of XmlBroker"):
        adapter_class(module, str(py))
