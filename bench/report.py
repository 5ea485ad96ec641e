"""The report of a run: the table on stdout and the row appended to ``bench/results.md``."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

from bench.harness import REPO, RESULTS
from bench.scenarios import Figures, Settings

COLUMNS = [
    ("ingest_fwd_rps", "ingest forwarder alerts/s", "{:.0f}"),
    ("ingest_fwd_p50_ms", "  p50 ms", "{:.2f}"),
    ("ingest_fwd_p99_ms", "  p99 ms", "{:.2f}"),
    ("ingest_ceiling_rps", "ingest ceiling req/s", "{:.0f}"),
    ("ingest_ceiling_p50_ms", "  p50 ms", "{:.2f}"),
    ("ingest_ceiling_p99_ms", "  p99 ms", "{:.2f}"),
    ("ingest_ratio", "ratio forwarder/ceiling", "{:.2f}"),
    ("e2e_delivered_per_s", "end-to-end delivered alerts/s", "{:.0f}"),
    ("e2e_p50_ms", "  ingest→delivery p50 ms", "{:.0f}"),
    ("e2e_p99_ms", "  ingest→delivery p99 ms", "{:.0f}"),
    ("e2e_batch_mean", "  mean batch size", "{:.1f}"),
    ("light_p50_ms", "light load ingest→delivery p50 ms", "{:.0f}"),
    ("light_p99_ms", "  p99 ms", "{:.0f}"),
    ("rss_idle_mb", "RSS idle MiB", "{:.1f}"),
    ("rss_queued_mb", "RSS with alerts queued, target down MiB", "{:.1f}"),
    ("rss_peak_mb", "  peak while filling MiB", "{:.1f}"),
    ("outage_cpu_pct", "CPU while target down %", "{:.1f}"),
    ("cold_start_ms", "cold start to /-/ready ms", "{:.0f}"),
]
# The PostgreSQL backend's figures: their own table in results.md.
PG_COLUMNS = [
    ("pg_ingest_fwd_rps", "pg ingest alerts/s", "{:.0f}"),
    ("pg_ingest_fwd_p50_ms", "  p50 ms", "{:.2f}"),
    ("pg_ingest_fwd_p99_ms", "  p99 ms", "{:.2f}"),
    ("pg_ingest_ceiling_rps", "pg same-run ceiling req/s", "{:.0f}"),
    ("pg_ingest_ratio", "pg ratio/ceiling", "{:.2f}"),
    ("pg_e2e_delivered_per_s", "pg e2e delivered alerts/s", "{:.0f}"),
    ("pg_e2e_p50_ms", "  pg ingest→delivery p50 ms", "{:.0f}"),
    ("pg_e2e_p99_ms", "  pg ingest→delivery p99 ms", "{:.0f}"),
    ("pg_e2e_batch_mean", "  pg mean batch size", "{:.1f}"),
    ("pg_cold_start_ms", "pg cold start to /-/ready ms", "{:.0f}"),
]
# Ingest with alert-state deduplication on, under a storm of repeats (issue 13): its own table.
STATE_COLUMNS = [
    ("state_ingest_fwd_rps", "dedup ingest alerts/s", "{:.0f}"),
    ("state_ingest_fwd_p50_ms", "  p50 ms", "{:.2f}"),
    ("state_ingest_fwd_p99_ms", "  p99 ms", "{:.2f}"),
    ("state_ingest_ceiling_rps", "dedup same-run ceiling req/s", "{:.0f}"),
    ("state_ingest_ratio", "dedup ratio/ceiling", "{:.2f}"),
    ("state_ingest_suppressed_pct", "  posts suppressed %", "{:.1f}"),
]
STATE_SECTION = (
    "## Alert state: ingest with deduplication on\n\n"
    "`python -m bench.run --only ingest,state_ingest`: the `state_ingest` scenario posts a"
    " storm of repeats (1,000 Kapacitor alert identities re-sent every event-time minute, each"
    " `WARNING` one round in 20, a metric value that changes every post) to a daemon with the"
    " default `state` (deduplication on, `repeat_interval: 4h`), and the same bodies to the"
    " ceiling; most posts are suppressed, the first round and the status changes queued. The"
    " main table's `ingest` ratio is measured with `repeat_interval: 0` (every post queued),"
    " comparable with the rows before alert state. Goal (issue 13): dedup ratio ≥ 0.55.\n"
)
PG_SECTION = (
    "## PostgreSQL queue\n\n"
    "`queue.backend: postgres` on a throwaway local server (fsync and synchronous_commit on),"
    " same harness; the ratio is against the ceiling measured in the same run.\n"
)


def print_table(fig: Figures, s: Settings) -> None:
    """The figures as an aligned table on stdout."""
    print(f"\nforwarder benchmark (median of {s.repeat}; load tool: {s.load_tool})")
    for key, label, fmt in COLUMNS + STATE_COLUMNS + PG_COLUMNS:
        if key in fig.values:
            print(f"  {label:<44} {fmt.format(fig.values[key]):>10}")
    for key, note in fig.notes.items():
        print(f"  {key}: {note}")


def append_results(fig: Figures, s: Settings, results: Path = RESULTS) -> None:
    """Append one dated row (and its notes) to ``results`` (bench/results.md)."""
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
        or "unknown"
    )
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split("\n")
    if any(line.strip() and not line.endswith("bench/results.md") for line in changed):
        commit += "+dirty"  # the measured code is not exactly that commit
    header = _header(COLUMNS)
    if not results.exists():
        results.write_text(
            "# Benchmark results\n\nAppended by `python -m bench.run`; each figure is the median of"
            " the run's repeats. Machine: see the row's notes.\n\n"
            + header
            + "\n|"
            + "---|" * (len(COLUMNS) + 2)
            + "\n"
        )
    now = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}"
    lines = results.read_text().rstrip("\n").split("\n")
    if any(k in fig.values for k, _, _ in COLUMNS):
        _insert_row(lines, "| date | commit |", _row(fig, COLUMNS, now, commit))
    _section_row(lines, fig, STATE_COLUMNS, STATE_SECTION, now, commit)
    if any(k in fig.values for k, _, _ in PG_COLUMNS):
        pg_header = _header(PG_COLUMNS)
        if pg_header not in lines:
            lines += ["", *PG_SECTION.rstrip("\n").split("\n"), "", pg_header]
            lines.append("|" + "---|" * (len(PG_COLUMNS) + 2))
        _insert_row(lines, pg_header, _row(fig, PG_COLUMNS, now, commit))
    note = (
        f"<!-- {now} {commit}: repeat={s.repeat}, "
        f"load={s.load_tool}, cpus={os.cpu_count()}, "
        + "; ".join(f"{k}: {v}" for k, v in fig.notes.items())
        + " -->"
    )
    lines.append(note)
    results.write_text("\n".join(lines) + "\n")


Columns = list[tuple[str, str, str]]


def _header(columns: Columns) -> str:
    return "| date | commit | " + " | ".join(label.strip() for _, label, _ in columns) + " |"


def _row(fig: Figures, columns: Columns, now: str, commit: str) -> str:
    cells = [fmt.format(fig.values[k]) if k in fig.values else "-" for k, _, fmt in columns]
    return f"| {now} | {commit} | " + " | ".join(cells) + " |"


def _section_row(
    lines: list[str], fig: Figures, columns: Columns, section: str, now: str, commit: str
) -> None:
    """Add a row to the table of ``columns`` (the section and table made if missing)."""
    if not any(k in fig.values for k, _, _ in columns):
        return
    header = _header(columns)
    if header not in lines:
        lines += ["", *section.rstrip("\n").split("\n"), "", header]
        lines.append("|" + "---|" * (len(columns) + 2))
    _insert_row(lines, header, _row(fig, columns, now, commit))


def _insert_row(lines: list[str], header_start: str, row: str) -> None:
    """Insert ``row`` after the last row of the table whose header starts with ``header_start``.

    Keeps each table contiguous: other sections of the file hold tables of their own.
    """
    last = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    lines.insert(last + 1, row)
