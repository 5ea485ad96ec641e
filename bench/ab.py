"""Interleaved A/B of two source trees: ingest rate, ratio to the ceiling, CPU per request.

On a shared machine one scenario's figure moves with the neighbours' load by
more than most changes are worth; comparing two builds measured minutes
apart says little. This runs them in rounds instead: each round measures the
ceiling, then the daemon of each tree, back to back against the same fake
BigPanda, and reports each round and the medians. The CPU the daemon spent
per answered request (from ``/proc``) is the steadiest of the figures.

Compare the working tree with the last commit, on the dedup storm::

    git archive HEAD | tar -x -C /tmp/base
    python -m bench.ab --other /tmp/base --rounds 3

``--load same`` posts one alert over and over instead (the ``ingest``
scenario's load). ``--state`` is the ``state`` section of this tree's
daemon, one ``key: value`` a line; the other tree's config gets none (a tree
from before issue 13 does not know the key).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.harness import (
    PAYLOAD,
    REPO,
    daemon,
    daemon_config,
    fake_bigpanda,
    free_port,
    process,
    python,
)
from bench.load import Body, Mix, wrk_load


@dataclass
class Run:
    """One daemon's run in one round."""

    rps: float
    ratio: float
    cpu_us: float  # daemon CPU per answered request, µs


def measure(
    tree: Path, fake: str, work: Path, body: Body, duration: float, state: str, ceiling: float
) -> Run:
    """One load run against the daemon of ``tree``."""
    port = free_port()
    cfg = daemon_config(work, port, fake, state=state)
    with daemon(cfg, port, work / f"ab-{port}.log", tree=tree) as d:
        cpu0 = d.cpu_seconds()
        r = wrk_load(f"{d.url}/kapacitor", body, duration, 32, work)
        cpu = d.cpu_seconds() - cpu0
    return Run(r.rps, r.rps / ceiling, cpu / max(1, r.requests) * 1e6)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print them, then the medians."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--other", type=Path, required=True, help="the other source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--load", choices=["mix", "same"], default="mix")
    parser.add_argument("--identities", type=int, default=1000, help="of the mix")
    parser.add_argument("--state", default="", help="this tree's state section")
    args = parser.parse_args(argv)
    body: Body = Mix(identities=args.identities) if args.load == "mix" else PAYLOAD.read_bytes()
    trees = {"other": args.other.resolve(), "this": REPO}
    runs: dict[str, list[Run]] = {name: [] for name in trees}
    with TemporaryDirectory(prefix="forwarder-ab-") as tmp:
        work = Path(tmp)
        with fake_bigpanda(work) as fake:
            for n in range(args.rounds):
                cport = free_port()
                ceiling_cmd = [python(), "-m", "bench.ceiling", "--port", str(cport)]
                with process(ceiling_cmd, ready="READY", log=work / "ceiling.log"):
                    url = f"http://127.0.0.1:{cport}/kapacitor"
                    ceiling = wrk_load(url, body, args.duration, 32, work).rps
                line = [f"round {n + 1}: ceiling {ceiling:,.0f}/s"]
                for name, tree in trees.items():
                    state = args.state if name == "this" else ""
                    run = measure(tree, fake, work, body, args.duration, state, ceiling)
                    runs[name].append(run)
                    line.append(f"{name} {run.rps:,.0f}/s ({run.ratio:.2f}, {run.cpu_us:.0f} µs)")
                print("; ".join(line), flush=True)
    med = statistics.median
    for name, rs in runs.items():
        print(
            f"{name:>5}: ratio {med(r.ratio for r in rs):.2f}, {med(r.rps for r in rs):,.0f}/s,"
            f" CPU {med(r.cpu_us for r in rs):.0f} µs/request (median of {len(rs)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
