"""The demo's report in a real browser: headless Chromium opens report.html from a ``--quick``
run; every video plays (readyState >= 2, positive duration), every image loads, the console
stays clean, and a screenshot lands in the run folder.

Marked ``slow`` (it runs the quick demo and needs Chromium); ``.ci/run`` installs Debian's
``chromium`` when absent and runs it. Outside CI it skips when no Chromium is installed.
"""

from __future__ import annotations

import os

import pytest

from armlab_scripts.cli import main as cli
from armlab_scripts.report import browser_check, chromium_path

pytestmark = pytest.mark.slow


def test_report_plays_and_loads_in_chromium(tmp_path):
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Chromium (apt-get install chromium) before this test.")
        pytest.skip("no Chromium installed (apt-get install chromium)")
    pytest.importorskip("playwright", reason="pip install -e '.[dev]' installs playwright")
    out = tmp_path / "demo"
    assert cli(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    shot = out / "report.png"
    state = browser_check(out / "report.html", screenshot=shot)
    assert state["videos"], "the report shows no video"
    for v in state["videos"]:
        assert v["readyState"] >= 2 and v["duration"] > 0 and v["width"] > 0, v
    assert len(state["images"]) >= 3
    for img in state["images"]:
        assert img["complete"] and img["naturalWidth"] > 0, img
    assert state["console_errors"] == []
    assert shot.stat().st_size > 50_000
