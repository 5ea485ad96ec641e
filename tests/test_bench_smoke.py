"""The benchmark harness runs end to end (tiny sizes) and reports every figure."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

from bench import run
from tests.conftest import REPO

FIGURES = (
    "ingest forwarder alerts/s",
    "ingest ceiling req/s",
    "ratio forwarder/ceiling",
    "end-to-end delivered alerts/s",
    "light load ingest→delivery p50 ms",
    "RSS idle MiB",
    "RSS with alerts queued, target down MiB",
    "cold start to /-/ready ms",
    "pg ingest alerts/s",
    "pg ratio/ceiling",
    "pg e2e delivered alerts/s",
    "pg cold start to /-/ready ms",
)


def test_bench_smoke_mode_reports_every_figure() -> None:
    """``python -m bench.run --smoke`` starts and stops everything itself and prints each figure."""
    tool = "wrk" if shutil.which("wrk") else "python"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--load-tool", tool],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for figure in FIGURES:
        line = next((ln for ln in result.stdout.splitlines() if figure in ln), None)
        assert line is not None, f"{figure!r} missing:\n{result.stdout}"
        value = float(line.split()[-1])
        assert not math.isnan(value), line
        assert value >= 0, line


def test_a_recorded_run_goes_into_the_results_table(tmp_path: Path) -> None:
    """A new row joins the results table even when a later section has a table of its own."""
    results = tmp_path / "results.md"
    results.write_text(
        "# Benchmark results\n\n"
        "| date | commit | ratio |\n|---|---|---|\n| 2026-01-01 00:00 | abc | 0.5 |\n"
        "<!-- 2026-01-01 00:00 abc: notes -->\n\n"
        "## A profile\n\n| build | instructions |\n|---|---|\n| x | 1 |\n"
    )
    settings = run.smoke_settings("python")
    run.append_results(run.Figures(values={"ingest_ratio": 0.75}), settings, results)
    lines = results.read_text().splitlines()
    assert lines[4].startswith("| 2026-01-01 00:00 | abc |")
    assert lines[5].startswith("| 20")
    assert "| 0.75 |" in lines[5]
    assert lines[6] == "<!-- 2026-01-01 00:00 abc: notes -->"
    assert lines[-2] == "| x | 1 |"  # the other table is left alone
    assert lines[-1].startswith("<!-- ")
    assert "repeat=1" in lines[-1]
