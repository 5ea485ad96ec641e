"""A fake BigPanda alert-ingest service: a real aiohttp HTTP server on localhost.

Why: the forwarder's delivery guarantees (retries, backoff, batch splitting, idempotence,
timeouts, outage handling) can only be proven against something that speaks HTTP over a
real TCP socket, enforces BigPanda's ingest contract and misbehaves on demand.  Every fault
is drawn from a seeded ``random.Random`` so a failing run can be replayed exactly.

Contract enforced on ``POST /data/v2/alerts`` (v2 Alerts API) and ``POST /oim/api/alerts``
(Open Integration Manager), for a single alert object or a batch
``{"app_key": K, "alerts": [...]}``: bearer token (plus ``x-auth-token`` on OIM) -> 401;
``Content-Type: application/json`` -> 400; body a JSON object -> 400; app_key present (body,
or the ``x-app-key`` header on OIM) and, if configured, allowed -> 400; each alert has a
valid ``status``, a primary property and a description of at most 2048 characters -> 400;
``max_body_bytes`` -> 413.  Accepted: 201; every alert an exact duplicate: 204.  A batch is
all or nothing: one bad alert gets the whole request 400, naming ``alerts[i]``.

Faults beyond errors and latency: refusing chosen alerts (by ``check``) as if they broke the
contract, redirecting (3xx with ``Location``, to the fake's own ``/_fake/elsewhere``, which
records whatever reaches it), a 201 whose body does not match its ``Content-Encoding``, and
error answers of any text, echoing the request's ``Authorization`` header if asked.

Run standalone for benchmarks and subprocess tests::

    python -m tests.fakes.bigpanda --port 0 --token T --p-503 0.2 --stats-file stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

ALERTS_PATH = "/data/v2/alerts"
OIM_PATH = "/oim/api/alerts"
STATS_PATH = "/_fake/stats"
ELSEWHERE_PATH = "/_fake/elsewhere"
VALID_STATUSES = frozenset({"ok", "critical", "warning", "unknown", "acknowledged"})
DEFAULT_PRIMARY_PROPERTIES = ("host", "service", "application", "device")
MAX_DESCRIPTION_CHARS = 2048
NO_ANSWER = 0
"""``RequestLog.status`` of a request that got no HTTP answer (reset, hang)."""

_INVALID_JSON = object()


@dataclass
class FaultPlan:
    """Misbehaviour applied to each request before the contract checks; zero means off.

    One ``rng.random()`` roll per request picks, in this order, among ``p_reset``,
    ``p_500``, ``p_503`` and ``p_429`` (their sum should stay <= 1).
    """

    p_500: float = 0.0  # answer 500
    p_503: float = 0.0  # answer 503
    p_429: float = 0.0  # answer 429, with a Retry-After header if retry_after is set
    retry_after: str = ""  # delay-seconds ("1") or an HTTP date
    p_reset: float = 0.0  # abort the TCP connection (RST) without answering
    latency: float = 0.0  # fixed seconds added before answering
    latency_jitter: float = 0.0  # plus uniform random seconds in [0, latency_jitter]
    hang: bool = False  # never answer (until the client gives up or the fake stops)
    force_status: int = 0  # answer every request with this status; nothing is recorded
    reject_auth: int = 0  # 401 or 403: behave as if the client's token were wrong
    max_alerts_per_request: int = 0  # a batch with more alerts gets 413
    # A batch holding an alert whose ``check`` is here gets 400 naming it, as for a contract
    # violation (BigPanda refusing an alert for a reason the sender could not foresee).
    refuse_checks: frozenset[str] = frozenset()
    redirect_to: str = ""  # answer every request with redirect_status and this Location
    redirect_status: int = 307
    bad_encoding: bool = False  # accepted requests get 201, Content-Encoding gzip, plain body
    # Body of every error answer, as text/plain; "{authorization}" becomes the request's
    # Authorization header (a server echoing the credentials it refused).
    error_body: str = ""


@dataclass
class Received:
    """One accepted alert (duplicates too, flagged), for counting deliveries."""

    alert: dict[str, Any]  # the alert merged with the batch-level app_key
    path: str
    duplicate: bool
    at: float  # time.monotonic() when accepted


@dataclass
class RequestLog:
    """One request to an ingest endpoint, whatever its outcome."""

    path: str
    status: int  # NO_ANSWER (0) if the connection was dropped or the request hung
    n_alerts: int  # alerts in the body, 0 if unparsable
    headers: dict[str, str]
    at: float  # time.monotonic() when answered (or dropped / started hanging)
    fault: str | None = None  # "reset", "hang", "500", "503", "429", "force_status", ...


class _Reject(Exception):
    """A contract violation, answered with ``status`` and a JSON error message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse(body: bytes) -> tuple[Any, int]:
    """Decode the body once; return (payload or _INVALID_JSON, number of alerts in it)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return _INVALID_JSON, 0
    if not isinstance(payload, dict):
        return payload, 0
    alerts = payload.get("alerts")
    if "alerts" in payload:
        return payload, len(alerts) if isinstance(alerts, list) else 0
    return payload, 1


class FakeBigPanda:
    """A BigPanda stand-in: enforces the ingest contract, records alerts, injects faults."""

    def __init__(
        self,
        *,
        token: str,
        app_keys: set[str] | None = None,
        primary_property: str | None = None,
        faults: FaultPlan | None = None,
        seed: int = 0,
        max_body_bytes: int | None = None,
        keep_log: bool = True,
    ) -> None:
        """Configure the fake; ``keep_log=False`` skips ``requests`` (used by the CLI)."""
        self._token = token
        self._app_keys = app_keys
        self._primary = (primary_property,) if primary_property else DEFAULT_PRIMARY_PROPERTIES
        self._faults = faults or FaultPlan()
        self._rng = random.Random(seed)
        self._max_body_bytes = max_body_bytes
        self._keep_log = keep_log
        self.received: list[Received] = []
        self.requests: list[RequestLog] = []
        self.elsewhere: list[RequestLog] = []  # requests that followed a redirect
        self._seen: set[str] = set()
        self._duplicates = 0
        self._n_requests = 0
        self._status_counts: Counter[int] = Counter()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        # While "down", the port stays bound without listening: connections are refused,
        # and no other socket (a client's ephemeral port, say) can take it meanwhile.
        self._reserved: socket.socket | None = None
        self._host = "127.0.0.1"
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on ``host:port`` (0 picks a free port, kept across outages)."""
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post(ALERTS_PATH, self._handle)
        app.router.add_post(OIM_PATH, self._handle)
        app.router.add_get(STATS_PATH, self._handle_stats)
        app.router.add_route("*", ELSEWHERE_PATH, self._handle_elsewhere)
        # handler_cancellation: a handler sleeping on latency/hang ends when its client leaves.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        self._closing.clear()
        self._host, self._port = host, port
        await self.start_listening()

    async def stop(self) -> None:
        """Stop serving; hanging requests are dropped so shutdown is quick."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    async def stop_listening(self) -> None:
        """Simulate an outage: close the listening socket and every open connection.

        New connections are refused and keep-alive connections die, as when the real
        service is unreachable; ``start_listening`` comes back on the same port.
        """
        if self._site is None:
            return
        await self._site.stop()
        self._site = None
        reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.bind((self._host, self._port))
        self._reserved = reserved
        server = self._runner.server if self._runner else None
        for conn in server.connections if server else []:
            conn.force_close()

    async def start_listening(self) -> None:
        """Listen again (on the same port after an outage)."""
        if self._runner is None:
            raise RuntimeError("FakeBigPanda.start() was not called")
        if self._site is not None:
            return
        if self._reserved is not None:
            sock, self._reserved = self._reserved, None
            sock.listen(128)
            sock.setblocking(False)
            self._site = web.SockSite(self._runner, sock)
        else:
            self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await self._site.start()
        if self._port == 0:
            self._port = int(self._runner.addresses[0][1])

    async def __aenter__(self) -> FakeBigPanda:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        if self._port == 0:
            raise RuntimeError("FakeBigPanda is not started")
        return f"http://{self._host}:{self._port}"

    @property
    def alerts_url(self) -> str:
        """URL of the v2 Alerts API."""
        return self.url + ALERTS_PATH

    @property
    def oim_url(self) -> str:
        """URL of the Open Integration Manager alerts endpoint."""
        return self.url + OIM_PATH

    @property
    def elsewhere_url(self) -> str:
        """A URL on the fake that only records what reaches it (a redirect's destination)."""
        return self.url + ELSEWHERE_PATH

    # -- control and inspection --------------------------------------------------------

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan; applies to requests arriving from now on."""
        self._faults = plan

    def set_token(self, token: str) -> None:
        """Change the accepted token, e.g. to simulate a rotated/revoked credential."""
        self._token = token

    def checks(self, *, include_duplicates: bool = True) -> list[str]:
        """The ``check`` of each accepted alert in arrival order ("" if it had none)."""
        return [
            str(r.alert.get("check", ""))
            for r in self.received
            if include_duplicates or not r.duplicate
        ]

    def stats(self, *, include_checks: bool = False, include_times: bool = False) -> dict[str, Any]:
        """Counters: accepted alerts (incl. duplicates), duplicates, requests, statuses.

        ``include_times`` adds ``arrivals``: ``[check, time.monotonic()]`` per accepted
        alert. CLOCK_MONOTONIC is system-wide, so another process on this machine can
        subtract its own ``time.monotonic()`` readings (the benchmarks do).
        """
        data: dict[str, Any] = {
            "accepted": len(self.received),
            "duplicates": self._duplicates,
            "unique": len(self.received) - self._duplicates,
            "requests": self._n_requests,
            "status_counts": {str(k): v for k, v in sorted(self._status_counts.items())},
        }
        if include_checks:
            data["checks"] = self.checks()
        if include_times:
            data["arrivals"] = [[str(r.alert.get("check", "")), r.at] for r in self.received]
        return data

    async def wait_for(
        self,
        predicate: Callable[[FakeBigPanda], bool],
        timeout: float,
    ) -> None:
        """Wait until ``predicate(self)`` holds, re-checking after every request.

        Raises TimeoutError describing what the fake saw if ``timeout`` seconds pass first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()  # cleared before checking, so no wake-up is lost
            if predicate(self):
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                name = getattr(predicate, "__qualname__", repr(predicate))
                recent = [(r.path, r.status, r.fault) for r in self.requests[-5:]]
                raise TimeoutError(
                    f"FakeBigPanda: {name} still false after {timeout}s; "
                    f"stats={self.stats()}; last requests={recent}"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    # -- request handling -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Apply faults, then the contract, then record the accepted alerts."""
        body = await request.read()
        payload, n_alerts = _parse(body)
        plan = self._faults
        delay = plan.latency
        if plan.latency_jitter > 0:
            delay += self._rng.uniform(0.0, plan.latency_jitter)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
        if plan.hang:
            self._log(request, NO_ANSWER, n_alerts, "hang")
            await self._closing.wait()
            return self._drop(request)
        if plan.redirect_to:
            self._log(request, plan.redirect_status, n_alerts, "redirect")
            return web.Response(status=plan.redirect_status, headers={"Location": plan.redirect_to})
        if plan.force_status:
            return self._error(request, plan.force_status, n_alerts, "forced", "force_status")
        if plan.reject_auth:
            return self._error(request, plan.reject_auth, n_alerts, "bad token", "reject_auth")
        roll = self._rng.random()
        for p, outcome in ((plan.p_reset, 0), (plan.p_500, 500), (plan.p_503, 503)):
            if roll < p:
                if outcome == 0:
                    self._log(request, NO_ANSWER, n_alerts, "reset")
                    return self._drop(request)
                return self._error(request, outcome, n_alerts, "injected", str(outcome))
            roll -= p
        if roll < plan.p_429:
            resp = self._error(request, 429, n_alerts, "rate limited", "429")
            if plan.retry_after:
                resp.headers["Retry-After"] = plan.retry_after
            return resp
        if plan.max_alerts_per_request and n_alerts > plan.max_alerts_per_request:
            msg = f"at most {plan.max_alerts_per_request} alerts per request"
            return self._error(request, 413, n_alerts, msg, "max_alerts_per_request")
        try:
            alerts = self._check_contract(request, body, payload)
        except _Reject as exc:
            return self._error(request, exc.status, n_alerts, exc.message)
        duplicates = self._accept(alerts, request.path)
        if plan.bad_encoding:
            # The status line says created; the body claims gzip and is not.
            self._log(request, 201, n_alerts, "bad_encoding")
            return web.Response(
                status=201,
                body=b'{"status": "created"} (not gzip)',
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        if duplicates == len(alerts):
            self._log(request, 204, n_alerts)
            return web.Response(status=204)
        self._log(request, 201, n_alerts)
        return web.json_response({"status": "created", "alerts": len(alerts)}, status=201)

    def _check_contract(
        self, request: web.Request, body: bytes, payload: Any
    ) -> list[dict[str, Any]]:
        """Validate one request; return its alerts, each carrying its ``app_key``."""
        oim = request.path == OIM_PATH
        if self._max_body_bytes is not None and len(body) > self._max_body_bytes:
            raise _Reject(413, f"body exceeds {self._max_body_bytes} bytes")
        tokens = [request.headers.get("Authorization", "")]
        if oim and "x-auth-token" in request.headers:
            tokens.append("Bearer " + request.headers["x-auth-token"])
        if f"Bearer {self._token}" not in tokens:
            raise _Reject(401, "missing or invalid bearer token")
        if request.content_type != "application/json":
            raise _Reject(400, "Content-Type must be application/json")
        if not isinstance(payload, dict):
            raise _Reject(400, "body must be a JSON object")
        batch_key = payload.get("app_key", request.headers.get("x-app-key") if oim else None)
        items = payload.get("alerts", [payload])
        if not isinstance(items, list) or not items:
            raise _Reject(400, "alerts must be a non-empty array")
        alerts: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise _Reject(400, f"alerts[{i}] must be an object")
            alert = dict(item)
            key = alert.get("app_key", batch_key)
            if not isinstance(key, str) or not key:
                raise _Reject(400, f"alerts[{i}]: missing app_key")
            if self._app_keys is not None and key not in self._app_keys:
                raise _Reject(400, f"alerts[{i}]: invalid app_key")
            alert["app_key"] = key
            self._check_alert(i, alert)
            if alert.get("check") in self._faults.refuse_checks:
                raise _Reject(400, f"alerts[{i}]: refused (check {alert['check']!r})")
            alerts.append(alert)
        return alerts

    def _check_alert(self, i: int, alert: dict[str, Any]) -> None:
        """Per-alert rules: status, primary property, description length."""
        if alert.get("status") not in VALID_STATUSES:
            raise _Reject(400, f"alerts[{i}].status must be one of {sorted(VALID_STATUSES)}")
        if not any(isinstance(alert.get(p), str) and alert[p] for p in self._primary):
            raise _Reject(400, f"alerts[{i}] needs a primary property, one of {self._primary}")
        description = alert.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS
        ):
            raise _Reject(400, f"alerts[{i}].description: at most {MAX_DESCRIPTION_CHARS} chars")

    def _accept(self, alerts: list[dict[str, Any]], path: str) -> int:
        """Record accepted alerts; return how many were exact duplicates."""
        now = time.monotonic()
        duplicates = 0
        for alert in alerts:
            key = json.dumps(alert, sort_keys=True, separators=(",", ":"))
            duplicate = key in self._seen
            self._seen.add(key)
            duplicates += duplicate
            self.received.append(Received(alert=alert, path=path, duplicate=duplicate, at=now))
        self._duplicates += duplicates
        return duplicates

    def _log(
        self, request: web.Request, status: int, n_alerts: int, fault: str | None = None
    ) -> None:
        """Count the request (and keep it if logging) and wake ``wait_for``."""
        self._n_requests += 1
        self._status_counts[status] += 1
        if self._keep_log:
            headers = dict(request.headers)
            self.requests.append(
                RequestLog(request.path, status, n_alerts, headers, time.monotonic(), fault)
            )
        self._changed.set()

    def _error(
        self,
        request: web.Request,
        status: int,
        n_alerts: int,
        message: str,
        fault: str | None = None,
    ) -> web.Response:
        """Log and build a JSON error answer."""
        self._log(request, status, n_alerts, fault)
        if status == 204:
            return web.Response(status=204)
        if self._faults.error_body:
            auth = request.headers.get("Authorization", "")
            text = self._faults.error_body.replace("{authorization}", auth)
            return web.Response(status=status, text=text)
        return web.json_response({"status": "error", "message": message}, status=status)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        """Reset the TCP connection (SO_LINGER 0 + abort => RST) instead of answering.

        The returned response is never written: aiohttp fails quietly on the dead transport.
        """
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)

    async def _handle_elsewhere(self, request: web.Request) -> web.Response:
        """Record a request that reached the redirect destination, and accept it."""
        await request.read()
        if self._keep_log:
            self.elsewhere.append(
                RequestLog(request.path, 201, 0, dict(request.headers), time.monotonic())
            )
        self._changed.set()
        return web.json_response({"status": "created"}, status=201)

    async def _handle_stats(self, request: web.Request) -> web.Response:
        """``GET /_fake/stats[?checks=1][&times=1]`` for out-of-process users."""
        yes = ("1", "true", "yes")
        include = request.query.get("checks", "") in yes
        times = request.query.get("times", "") in yes
        return web.json_response(self.stats(include_checks=include, include_times=times))


# -- standalone process -------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run a fake BigPanda ingest server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    parser.add_argument("--app-key", action="append", default=[], help="allowed app key")
    parser.add_argument("--primary-property")
    parser.add_argument("--max-body-bytes", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stats-file", help="write final stats JSON here on exit")
    plan = FaultPlan()
    for name in ("latency", "latency_jitter", "p_500", "p_503", "p_429", "p_reset"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(plan, name))
    parser.add_argument("--retry-after", default="")
    parser.add_argument("--max-alerts-per-request", type=int, default=0)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    """Serve until SIGTERM/SIGINT; return the final stats."""
    plan = FaultPlan(
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        p_500=args.p_500,
        p_503=args.p_503,
        p_429=args.p_429,
        p_reset=args.p_reset,
        retry_after=args.retry_after,
        max_alerts_per_request=args.max_alerts_per_request,
    )
    fake = FakeBigPanda(
        token=args.token,
        app_keys=set(args.app_key) or None,
        primary_property=args.primary_property,
        faults=plan,
        seed=args.seed,
        max_body_bytes=args.max_body_bytes,
        keep_log=False,
    )
    await fake.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {fake.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()
    return fake.stats(include_checks=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tests.fakes.bigpanda``."""
    args = _parse_args(argv)
    stats = asyncio.run(_serve(args))
    if args.stats_file:
        with open(args.stats_file, "w", encoding="utf-8") as f:
            json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
