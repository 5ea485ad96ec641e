"""Benchmark harness: ingest ceiling ratio (dedup off, on), end-to-end, light, memory, cold start.

Run from the repository root::

    python -m bench.run              # full run (about 5 minutes), appends to bench/results.md
    python -m bench.run --smoke      # a few seconds, records nothing (part of the test suite)

Everything runs on 127.0.0.1 and is started and stopped by the harness: the
daemon (``forwarder run``) as a subprocess with a durable queue
(``synchronous: full``), a fake BigPanda subprocess, and the bare-aiohttp
ceiling app. The ``pg_*`` scenarios run the daemon on a PostgreSQL queue, on a
throwaway server the harness starts (``tests/pg/cluster.py``; or the server
``FORWARDER_TEST_POSTGRES_DSN`` names).

The parts live in :mod:`bench.harness` (processes, daemon, alerts),
:mod:`bench.load` (load generators), :mod:`bench.scenarios` and
:mod:`bench.postgres` (what is measured) and :mod:`bench.report` (output).
Every figure is measured ``--repeat`` times (default 3) and the
median is reported, because absolute numbers on a shared 2-core machine are
noisy; judge by the same-run ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import REPO, RESULTS
from bench.load import py_load, wrk_load
from bench.postgres import (
    scenario_pg_cold_start,
    scenario_pg_e2e,
    scenario_pg_ingest,
    stop_server,
)
from bench.report import COLUMNS, append_results, print_table
from bench.scenarios import (
    Figures,
    Settings,
    scenario_cold_start,
    scenario_e2e,
    scenario_ingest,
    scenario_light,
    scenario_memory,
    scenario_state_ingest,
)

__all__ = [
    "COLUMNS",
    "SCENARIOS",
    "Figures",
    "Settings",
    "append_results",
    "main",
    "smoke_settings",
]


SCENARIOS: dict[str, Callable[[Settings, Path, Figures], None]] = {
    "ingest": scenario_ingest,
    "state_ingest": scenario_state_ingest,
    "e2e": scenario_e2e,
    "light": scenario_light,
    "memory": scenario_memory,
    "cold": scenario_cold_start,
    "pg_ingest": scenario_pg_ingest,
    "pg_e2e": scenario_pg_e2e,
    "pg_cold": scenario_pg_cold_start,
}


def smoke_settings(tool: str) -> Settings:
    """The few-second sizes of ``--smoke`` (the test suite's run of the harness)."""
    return Settings(
        repeat=1,
        duration=1.0,
        connections=8,
        e2e_alerts=300,
        light_seconds=1.0,
        light_rate=20,
        memory_alerts=2000,
        load=py_load if tool == "python" else wrk_load,
        load_tool=tool,
        mix_identities=100,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table, and record the run."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds, no record")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per ingest load run")
    parser.add_argument("--only", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--no-record", action="store_true", help="do not append to results.md")
    parser.add_argument("--load-tool", choices=["wrk", "python"], help="default: wrk if installed")
    args = parser.parse_args(argv)

    tool = args.load_tool or ("wrk" if shutil.which("wrk") else "python")
    if tool == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if args.smoke:
        s = smoke_settings(tool)
    else:
        s = Settings(
            repeat=args.repeat,
            duration=args.duration,
            connections=32,
            e2e_alerts=50_000,
            light_seconds=10.0,
            light_rate=50,
            memory_alerts=200_000,
            load=wrk_load if tool == "wrk" else py_load,
            load_tool=tool,
        )
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    fig = Figures()
    with tempfile.TemporaryDirectory(prefix="forwarder-bench-") as tmp:
        work = Path(tmp)
        try:
            for name in chosen:
                started = time.monotonic()
                print(f"running {name} ...", file=sys.stderr, flush=True)
                SCENARIOS[name](s, work, fig)
                took = time.monotonic() - started
                print(f"  {name} took {took:.0f}s", file=sys.stderr, flush=True)
        finally:
            stop_server()  # the PostgreSQL scenarios' throwaway server, if one was started
    print_table(fig, s)
    if not args.smoke and not args.no_record:
        append_results(fig, s)
        print(f"\nrecorded in {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
