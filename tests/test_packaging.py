"""The shipped plugins/ and config/ folders are found from a source checkout and a wheel."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.conftest import ROOT

from host.paths import default_config_dir, shipped_plugins_dir

# Prints where `host` was imported from, then the two shipped folders it finds.
PROBE = ("import host; from host.paths import shipped_plugins_dir, default_config_dir; "
         "print(host.__file__); print(shipped_plugins_dir()); print(default_config_dir())")


def test_source_checkout_uses_top_level_folders() -> None:
    assert not (ROOT / "host" / "_shipped").exists()
    assert shipped_plugins_dir() == ROOT / "plugins"
    assert default_config_dir() == ROOT / "config"
    assert (shipped_plugins_dir() / "brokers").is_dir()
    assert (default_config_dir() / "smshost.toml").is_file()


def test_source_checkout_found_by_a_fresh_interpreter() -> None:
    # `python -c` in the checkout imports ./host whatever is installed in the venv.
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, text=True,
                           capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [
        str(ROOT / "host" / "__init__.py"), str(ROOT / "plugins"), str(ROOT / "config")]


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def _build_wheel(out: Path) -> Path:
    """Build with the venv's hatchling when it has one, else in an isolated build env."""
    out.mkdir()
    args = ["wheel", "--no-deps", "-w", str(out), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        args.insert(1, "--no-build-isolation")
    result = _pip(*args, cwd=out)
    assert result.returncode == 0, (
        f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    wheels = list(out.glob("smshost-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.mark.slow
def test_installed_wheel_finds_shipped_folders(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    # The build must not leave anything in the package folder.
    assert not (ROOT / "host" / "_shipped").exists()

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped_config = archive.read("host/_shipped/config/smshost.toml")
    assert shipped_config == (ROOT / "config" / "smshost.toml").read_bytes()
    for kind in ("brokers", "sinks", "handlers"):
        assert any(n.startswith(f"host/_shipped/plugins/{kind}/") for n in names), kind

    target = tmp_path / "site"
    result = _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel),
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    # cwd outside the repository, the installed copy first on the path.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("SMSHOST_CONFIG", None)
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=outside, env=env, text=True,
                           capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    module, plugins, config = (Path(line) for line in probe.stdout.splitlines())
    installed = target.resolve()
    assert module == installed / "host" / "__init__.py"
    assert plugins == installed / "host" / "_shipped" / "plugins"
    assert config == installed / "host" / "_shipped" / "config"
    assert (plugins / "sinks").is_dir()
    assert (config / "smshost.toml").is_file()

    # The CLI of the installed copy falls back to the embedded default configuration.
    check = subprocess.run([sys.executable, "-m", "host", "check"], cwd=outside, env=env,
                           text=True, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"configuration {config}: ok" in check.stdout
