"""Without Chromium the browser tests fail (CI installs it), saying how to install it;
they are skipped only on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import conftest


def test_without_chromium_the_browser_tests_fail_with_the_install_hint(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", f"{tmp_path}/no-chromium-here")
    monkeypatch.delenv("SMSHOST_SKIP_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match="system-packages"):
        conftest.require_chromium()
    monkeypatch.setenv("SMSHOST_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception, match="SMSHOST_SKIP_BROWSER=1"):
        conftest.require_chromium()
