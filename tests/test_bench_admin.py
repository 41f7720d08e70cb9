"""bench/admin_pages.py at a tiny size, so it cannot rot: it makes its database,
starts the app, signs in and times every page, and each answers 200 (or 501, a
section's placeholder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.sqlite_only  # the bench fills a SQLite file directly (bench/bigdb.py)
def test_the_admin_pages_bench_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("admin_pages", None)
    import admin_pages  # type: ignore[import-not-found]
    assert admin_pages.main(["--dir", str(tmp_path / "db"), "--messages", "300",
                             "--requests", "2"]) == 0
    out = capsys.readouterr().out
    assert "300 messages in" in out
    for page in ("/admin/messages ", "/admin/conversations ", "message page", "thread page",
                 "search: number", "search: text", "search: status", "search: one day",
                 "CSV export"):
        assert page in out, out
    assert out.count(" 200  ") >= 12, out
