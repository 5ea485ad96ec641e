"""The benchmark harness runs end to end (tiny sizes) and reports every figure."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

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
