"""Plugin discovery: every item loads in isolation; broken ones are recorded (SPEC B3)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.core import Host
from tests.conftest import base_config, run_cli

GOOD_SINK = '''
from host import hookimpl
from host.sinks.base import Sink

class QueueLike(Sink):
    kind = "{kind}"

@hookimpl
def register_sinks(register):
    register(QueueLike)
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def by_name(host: Host) -> dict[str, object]:
    return {r.name: r for r in host.plugins.records}


def test_broken_items_are_recorded_and_the_rest_load(
        host_factory: Callable[..., Host], plugins_dir: Path) -> None:
    write(plugins_dir / "sinks" / "good.py", GOOD_SINK.format(kind="good"))
    write(plugins_dir / "sinks" / "raises.py", "x = 1\nraise RuntimeError('bad import')\n")
    write(plugins_dir / "sinks" / "exits.py", "import sys\nsys.exit(3)\n")
    write(plugins_dir / "sinks" / "syntax.py", "def broken(:\n")
    write(plugins_dir / "sinks" / "typo.py",
          "from host import hookimpl\n@hookimpl\ndef register_sinkz(register):\n    pass\n")
    write(plugins_dir / "brokers" / "ok.xml", "<broker name='ok'/>\n")
    write(plugins_dir / "brokers" / "malformed.xml", "<broker>\n  <unclosed>\n</broker>\n")
    write(plugins_dir / "handlers" / "Hello.py", "def handle(ctx):\n    return None\n")
    write(plugins_dir / "handlers" / "Broken.py", "import does_not_exist_anywhere\n")
    host = host_factory()
    found = host.load_plugins()

    failures = {r.name: r.error for r in host.plugins.failures}
    failures.update({name: e.error for name, e in host.handlers.failed.items()})
    assert set(failures) == {"raises", "exits", "syntax", "typo", "malformed", "Broken"}
    sinks = plugins_dir / "sinks"
    assert failures["raises"] == f"{sinks / 'raises.py'}:2: RuntimeError: bad import"
    assert failures["exits"] == f"{sinks / 'exits.py'}:2: SystemExit: 3"
    assert failures["syntax"].startswith(f"{sinks / 'syntax.py'}:1: SyntaxError")
    assert "register_sinkz" in failures["typo"] and "unknown hook" in failures["typo"]
    assert failures["malformed"].startswith(f"{plugins_dir / 'brokers' / 'malformed.xml'}:3: "
                                            "malformed XML")
    assert "ModuleNotFoundError" in failures["Broken"]

    assert set(found.sinks) == {"good", "handler"}  # handler: a default sink
    assert set(found.brokers) == {"ok"}
    assert set(host.handlers.entries) == {"Hello"}
    assert host.plugins.pm.has_plugin("sink:good")
    assert not host.plugins.pm.has_plugin("sink:typo")  # nothing half-registered
    assert "smshost_plugins.sinks.raises" not in sys.modules
    assert "smshost_plugins.sinks.typo" not in sys.modules


def test_a_plugin_package_loads_and_a_broken_one_names_its_file(
        host_factory: Callable[..., Host], plugins_dir: Path) -> None:
    sinks = plugins_dir / "sinks"
    write(sinks / "acme" / "__init__.py", """
        from host.api import hookimpl

        from . import kinds  # the plain relative form too (it failed: no smshost_plugins)
        from .kinds import Acme

        assert kinds.Acme is Acme

        @hookimpl
        def register_sinks(register):
            register(Acme)
        """)
    write(sinks / "acme" / "kinds.py", "from host.api import Sink\n\n\n"
          "class Acme(Sink):\n    kind = 'acme'\n")
    write(sinks / "broken" / "__init__.py", "from . import parts\n")
    write(sinks / "broken" / "parts.py", "x = 1\nraise RuntimeError('bad part')\n")
    write(sinks / "notes" / "readme.txt", "a folder without __init__.py is no plugin\n")
    host = host_factory()
    found = host.load_plugins()

    assert "acme" in found.sinks and host.plugins.pm.has_plugin("sink:acme")
    assert found.sinks["acme"].__module__ == "smshost_plugins.sinks.acme.kinds"
    failures = {r.name: r.error for r in host.plugins.failures}
    assert failures["broken"] == f"{sinks / 'broken' / 'parts.py'}:2: RuntimeError: bad part"
    assert "notes" not in by_name(host)
    assert not [name for name in sys.modules if name.startswith("smshost_plugins.sinks.broken")]


def test_a_broker_adapter_may_be_a_package(host_factory: Callable[..., Host],
                                           plugins_dir: Path) -> None:
    write(plugins_dir / "brokers" / "pkg.xml", "<broker name='pkg'/>\n")
    write(plugins_dir / "brokers" / "pkg" / "__init__.py", "from .steps import *  # noqa\n")
    write(plugins_dir / "brokers" / "pkg" / "steps.py", "raise ValueError('adapter step')\n")
    host = host_factory()
    host.load_plugins()
    failures = {r.name: r.error for r in host.plugins.failures}
    steps = plugins_dir / "brokers" / "pkg" / "steps.py"
    assert failures["pkg"] == f"{steps}:1: ValueError: adapter step"


def test_xml_with_external_entity_is_refused(host_factory: Callable[..., Host],
                                             plugins_dir: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "top secret")
    write(plugins_dir / "brokers" / "xxe.xml", f'''<?xml version="1.0"?>
<!DOCTYPE broker [<!ENTITY leak SYSTEM "file://{secret}">]>
<broker name="x">&leak;</broker>
''')
    host = host_factory()
    host.load_plugins()
    (record,) = host.plugins.failures
    assert record.name == "xxe"
    assert "DOCTYPE is not allowed" in (record.error or "")
    assert "top secret" not in (record.error or "")


def test_broker_adapter_that_fails_to_import_is_recorded(
        host_factory: Callable[..., Host], plugins_dir: Path) -> None:
    write(plugins_dir / "brokers" / "acme.xml", "<broker name='acme'/>\n")
    write(plugins_dir / "brokers" / "acme.py", "raise ImportError('adapter broken')\n")
    host = host_factory()
    found = host.load_plugins()
    assert "acme" not in found.brokers
    (record,) = host.plugins.failures
    assert record.source.endswith("acme.py") and "adapter broken" in (record.error or "")


def test_disabled_items_are_skipped(host_factory: Callable[..., Host], plugins_dir: Path,
                                    tmp_path: Path) -> None:
    write(plugins_dir / "sinks" / "raises.py", "raise RuntimeError('never loaded')\n")
    host = host_factory(smshost=base_config(tmp_path, extra="") .replace(
        "entry_points = false", 'entry_points = false\ndisabled = ["raises"]'))
    host.load_plugins()
    assert host.plugins.failures == []


def test_later_folder_replaces_a_file_of_the_same_name(
        host_factory: Callable[..., Host], plugins_dir: Path, tmp_path: Path) -> None:
    second = tmp_path / "more"
    write(plugins_dir / "sinks" / "dup.py", GOOD_SINK.format(kind="first"))
    write(second / "sinks" / "dup.py", GOOD_SINK.format(kind="second"))
    config = base_config(tmp_path).replace(
        f'dirs = ["{plugins_dir}"]', f'dirs = ["{plugins_dir}", "{second}"]')
    host = host_factory(smshost=config)
    assert set(host.load_plugins().sinks) == {"second", "handler"}  # handler: a default


def test_a_plugin_sink_replaces_the_default_of_its_kind_without_a_failure(
        host_factory: Callable[..., Host], plugins_dir: Path) -> None:
    """The handler sink is a default of the core now; a plugin of kind "handler" replaces
    it as a plugin file replaces a shipped one, and that is no load failure."""
    write(plugins_dir / "sinks" / "mine.py", GOOD_SINK.format(kind="handler"))
    host = host_factory()
    found = host.load_plugins().sinks
    assert found["handler"].__module__ != "host.defaults.handler"
    assert host.plugins.failures == []


def test_disabling_handler_leaves_out_the_default_handler_sink(
        host_factory: Callable[..., Host], tmp_path: Path) -> None:
    """`plugins.disabled = ["handler"]` removed the shipped handler sink before it became
    a default of the core; it still does, without a failure."""
    host = host_factory(smshost=base_config(tmp_path).replace(
        "entry_points = false", 'entry_points = false\ndisabled = ["handler"]'))
    assert "handler" not in host.load_plugins().sinks
    assert host.plugins.failures == []


def test_duplicate_sink_kind_is_a_recorded_error(host_factory: Callable[..., Host],
                                                 plugins_dir: Path) -> None:
    write(plugins_dir / "sinks" / "one.py", GOOD_SINK.format(kind="same"))
    write(plugins_dir / "sinks" / "two.py", GOOD_SINK.format(kind="same"))
    host = host_factory()
    host.load_plugins()
    (record,) = host.plugins.failures
    assert "sink kind 'same' is already registered" in (record.error or "")


def make_distribution(site: Path, dist: str, entry_points: str,
                      modules: dict[str, str]) -> None:
    """A real installed distribution: *.dist-info with METADATA and entry_points.txt."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, text in modules.items():
        write(site / f"{name}.py", text)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    make_distribution(site, "smshost_throwaway", """
        [smshost.sinks]
        tw_good = tw_good_sink
        tw_broken = tw_broken_sink

        [smshost.brokers]
        tw_acme = tw_acme_broker
        """, {
        "tw_good_sink": GOOD_SINK.format(kind="throwaway"),
        "tw_broken_sink": "raise ImportError('entry point exploded')\n",
        "tw_acme_broker": '''
            from pathlib import Path
            from host import hookimpl

            @hookimpl
            def register_brokers(register):
                register(Path(__file__).with_name("tw_acme.xml"))
            ''',
    })
    write(site / "tw_acme.xml", "<broker name='tw_acme'/>\n")
    return site


def test_entry_points_load_each_in_isolation(site: Path, host_factory: Callable[..., Host],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    config = base_config(tmp_path).replace("entry_points = false", "entry_points = true")
    host = host_factory(smshost=config)
    found = host.load_plugins()
    records = {r.name: r for r in host.plugins.records}
    assert records["tw_good"].ok
    assert records["tw_good"].source == "entry point smshost.sinks:tw_good (smshost_throwaway)"
    assert not records["tw_broken"].ok
    assert records["tw_broken"].error == "ImportError: entry point exploded"
    assert "throwaway" in found.sinks
    assert found.brokers["tw_acme"].origin == "entry point"
    for module in ("tw_good_sink", "tw_acme_broker"):
        sys.modules.pop(module, None)


def test_check_reports_entry_point_failure_from_a_real_install(site: Path,
                                                               tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(
        base_config(tmp_path).replace("entry_points = false", "entry_points = true"))
    result = run_cli("check", "--config", str(cfg), env={"PYTHONPATH": str(site)})
    assert result.returncode == 1
    assert "error: ImportError: entry point exploded" in result.stdout
    assert "ok: entry point tw_good (entry point smshost.sinks:tw_good" in result.stdout
    assert "ok: broker tw_acme" in result.stdout


def test_health_lists_load_failures(host_factory: Callable[..., Host],
                                    plugins_dir: Path) -> None:
    write(plugins_dir / "sinks" / "raises.py", "raise RuntimeError('bad import')\n")
    write(plugins_dir / "sinks" / "good.py", GOOD_SINK.format(kind="good"))
    host = host_factory()
    with TestClient(host.app_for()) as client:
        body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["plugins"]["loaded"] == 1  # good.py (defaults are not records)
    (failure,) = body["plugins"]["failures"]
    assert failure["kind"] == "sink" and failure["name"] == "raises"
    assert failure["source"] == str(plugins_dir / "sinks" / "raises.py")
    assert "RuntimeError: bad import" in failure["error"]
