"""The benchmarks find the team's shared harness beside the project (../shared/bench),
wherever the project is checked out, not at one machine's absolute path."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = "import sys; sys.path.insert(0, 'bench'); import common; print(common.HARNESS)"


def test_no_bench_file_names_an_absolute_work_path() -> None:
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "bench").rglob("*"))
             if path.is_file() and path.suffix in (".py", ".sh", ".lua", ".md", ".xml")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "/work/" in line]
    assert found == []
    assert "/work/" not in (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")


def test_the_harness_is_found_beside_the_project_or_where_harness_says() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS"}

    def harness(**extra: str) -> str:
        return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**env, **extra},
                              capture_output=True, text=True, check=True).stdout.strip()
    assert harness() == str(ROOT.parent / "shared" / "bench" / "run.sh")
    assert harness(HARNESS="/elsewhere/run.sh") == "/elsewhere/run.sh"
    script = (ROOT / "bench" / "kannel_mo.sh").read_text(encoding="utf-8")
    assert 'HARNESS="${HARNESS:-$(dirname "$ROOT")/shared/bench/run.sh}"' in script
