"""Structured logs: JSON off a TTY, console on request, events with fields, secrets redacted.

The redaction proof runs ``forwarder run`` as a real process with a BigPanda
token, an app key, an ingest bearer token and a basic-auth password, drives a
full run through it (ingest, delivery, retries, an auth failure, a rejected
request, metrics, the dead-letter API and CLI, reloads), then greps every byte
of output for each secret.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yarl

from forwarder.obs import logs
from forwarder.obs.logs import REDACTED, Redactor
from tests.conftest import APP_KEY, REPO, TOKEN, Daemon, example, free_port
from tests.fakes.bigpanda import FakeBigPanda, FaultPlan

BP_TOKEN = "bp-token-S3CRET-4f1d9a07"
BP_APP_KEY = "bp-appkey-S3CRET-77c2e1b5"
INGEST_BEARER = "ingest-bearer-S3CRET-0a9b3c"
BASIC_USER = "kapacitor"
BASIC_PASSWORD = "basic-pw-S3CRET-5e6f1122"
WRONG_SECRET = "wrong-bearer-S3CRET-c0ffee99"  # what a misconfigured client sends
SECRETS = (BP_TOKEN, BP_APP_KEY, INGEST_BEARER, BASIC_PASSWORD, WRONG_SECRET)
RETRIES = 3  # 503 answers before the fake accepts the retried alert


def basic(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BEARER_H = {"Authorization": f"Bearer {INGEST_BEARER}"}
BASIC_H = {"Authorization": basic(BASIC_USER, BASIC_PASSWORD)}
# Secret-looking encodings that must not appear either.
ENCODED = (
    base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
    base64.b64encode(f"{BASIC_USER}:{WRONG_SECRET}".encode()).decode(),
)


def run_config(port: int, url: str) -> str:
    """A config carrying every kind of secret: token from the environment, app key inline,
    ingest bearer inline, basic password from a file."""
    return f"""\
server:
  listen: 127.0.0.1:{port}
  shutdown_timeout: 2s
  access_log: true
  auth:
    bearer_token: {INGEST_BEARER}
    basic:
      username: {BASIC_USER}
      password_file: basic.pw
queue:
  path: queue.db
  synchronous: normal
batch:
  max_alerts: 100
  linger: 10ms
retry:
  initial: 20ms
  max: 200ms
targets:
  bigpanda:
    kind: alerts_v2
    url: {url}
    token: ${{BP_TOKEN}}
    app_key: {BP_APP_KEY}
    rate_limit: 1000
    burst: 1000
    timeout: 2s
routes:
  - name: default
    target: bigpanda
"""


def kapacitor_alert(alert_id: str) -> bytes:
    """A Kapacitor alert with its own id."""
    doc: dict[str, Any] = json.loads(example("kapacitor-alert-critical.json"))
    doc["id"] = alert_id
    return json.dumps(doc).encode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a JSON-lines log, parsed (fails on a line that is not JSON)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        out.append(doc)
    return out


def delivered(check: str) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: an alert with ``check`` was accepted."""

    def predicate(fake: FakeBigPanda) -> bool:
        return check in fake.checks()

    return predicate


def answered(status: int, count: int = 1) -> Callable[[FakeBigPanda], bool]:
    """A ``wait_for`` predicate: the fake gave ``status`` at least ``count`` times."""

    def predicate(fake: FakeBigPanda) -> bool:
        return sum(r.status == status for r in fake.requests) >= count

    return predicate


@dataclass
class FullRun:
    """Everything a full run printed or answered, and what the fake saw."""

    log: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    fake_auth_headers: set[str] = field(default_factory=set)
    fake_app_keys: set[str] = field(default_factory=set)
    exit_code: int | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


async def wait_log(daemon: Daemon, event: str, count: int, timeout: float = 20.0) -> None:
    """Poll the daemon's log until ``event`` appeared ``count`` times."""
    deadline = time.monotonic() + timeout
    while sum(f'"event": "{event}"' in line for line in daemon.log().splitlines()) < count:
        assert time.monotonic() < deadline, f"no {count}x {event}:\n{daemon.log()}"
        await asyncio.sleep(0.05)  # poll interval


async def ready_until(
    session: aiohttp.ClientSession, url: str, status: int, timeout: float = 20.0
) -> str:
    """Poll ``/-/ready`` until it answers ``status``; return the body."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{url}/-/ready") as resp:
            text = await resp.text()
            if resp.status == status:
                return text
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.05)  # poll interval


def cli(run: FullRun, name: str, config: Path, *args: str) -> None:
    """Run ``forwarder ARGS`` and keep its stdout and stderr under ``name``."""
    proc = subprocess.run(
        [sys.executable, "-m", "forwarder", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "BP_TOKEN": BP_TOKEN},
        cwd=str(config.parent),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    run.outputs[f"cli {name} stdout"] = proc.stdout
    run.outputs[f"cli {name} stderr"] = proc.stderr


async def drive(directory: Path) -> FullRun:
    """The scripted run against a real daemon process and a fake BigPanda."""
    run = FullRun()
    fake = FakeBigPanda(token=BP_TOKEN, app_keys={BP_APP_KEY})
    await fake.start()
    port = free_port()
    config = directory / "forwarder.yaml"
    config.write_text(run_config(port, fake.alerts_url))
    (directory / "basic.pw").write_text(BASIC_PASSWORD + "\n")
    daemon = Daemon(config, port, directory / "daemon.log")
    # No --log-format: stdout is a file, so the daemon must choose JSON itself.
    daemon.start("--log-level", "debug", env={"BP_TOKEN": BP_TOKEN}, log_format=None)
    try:
        await daemon.wait_ready()
        async with aiohttp.ClientSession() as s:
            url = daemon.url

            async def post(path: str, body: bytes, headers: dict[str, str], status: int) -> None:
                async with s.post(f"{url}{path}", data=body, headers=headers) as resp:
                    text = await resp.text()
                    assert resp.status == status, text
                    run.outputs[f"POST {path} {status} {len(run.outputs)}"] = text + str(
                        dict(resp.headers)
                    )

            async def get(path: str, headers: dict[str, str], status: int = 200) -> str:
                async with s.get(f"{url}{path}", headers=headers) as resp:
                    text = await resp.text()
                    assert resp.status == status, text
                    run.outputs[f"GET {path}"] = text
                    return text

            # Ingest with each credential; both delivered.
            await post("/kapacitor", kapacitor_alert("ok-bearer"), BEARER_H, 200)
            await fake.wait_for(delivered("ok-bearer"), timeout=10)
            influx = json.loads(example("influxdb-notification-crit.json"))
            influx["_check_name"] = "ok-basic"
            await post("/influxdb", json.dumps(influx).encode(), BASIC_H, 200)
            await fake.wait_for(delivered("ok-basic"), timeout=10)

            # A retry episode: 503 three times, then accepted.
            fake.set_faults(FaultPlan(p_503=1.0))
            await post("/kapacitor", kapacitor_alert("retry-me"), BEARER_H, 200)
            await fake.wait_for(answered(503, RETRIES), timeout=10)
            fake.set_faults(FaultPlan())
            await fake.wait_for(delivered("retry-me"), timeout=10)

            # BigPanda refuses the token: dead letter, not ready.
            fake.set_faults(FaultPlan(reject_auth=401))
            await post("/kapacitor", kapacitor_alert("auth-refused"), BEARER_H, 200)
            await fake.wait_for(answered(401), timeout=10)
            fake.set_faults(FaultPlan(force_status=400))
            run.outputs["ready during auth failure"] = await ready_until(s, url, 503)

            # BigPanda refuses the alert: dead letter.
            await post("/kapacitor", kapacitor_alert("bad-request"), BEARER_H, 200)
            await fake.wait_for(answered(400), timeout=10)
            fake.set_faults(FaultPlan())
            await post("/kapacitor", kapacitor_alert("ok-after"), BEARER_H, 200)
            await fake.wait_for(delivered("ok-after"), timeout=10)
            run.outputs["ready after recovery"] = await ready_until(s, url, 200)

            # A client with wrong, secret-looking credentials.
            await post("/kapacitor", kapacitor_alert("x"), {"Authorization": WRONG_SECRET}, 401)
            wrong_bearer = {"Authorization": f"Bearer {WRONG_SECRET}"}
            await post("/kapacitor", kapacitor_alert("x"), wrong_bearer, 401)
            wrong_basic = {"Authorization": basic(BASIC_USER, WRONG_SECRET)}
            await post("/influxdb", json.dumps(influx).encode(), wrong_basic, 401)
            await get("/api/v1/dead-letters", wrong_bearer, 401)

            # Metrics, the dead-letter API and CLI, config tools.
            await get("/metrics", {})
            listing = json.loads(await get("/api/v1/dead-letters", BEARER_H))
            ids = [d["id"] for d in listing["dead_letters"]]
            assert len(ids) == 2, listing
            for dl_id in ids:
                run.outputs[f"GET dead letter {dl_id}"] = await get(
                    f"/api/v1/dead-letters/{dl_id}", BEARER_H
                )
            cli(run, "dlq list", config, "dlq", "list")
            cli(run, "dlq list --json", config, "dlq", "list", "--json")
            for dl_id in ids:
                cli(run, f"dlq show {dl_id}", config, "dlq", "show", str(dl_id))
            cli(run, "check-config", config, "check-config")
            cli(
                run,
                "render",
                config,
                "render",
                str(REPO / "examples" / "kapacitor-alert-critical.json"),
            )

            # Reload by API and by signal.
            await post("/-/reload", b"", BEARER_H, 200)
            assert daemon.proc is not None
            os.kill(daemon.proc.pid, signal.SIGHUP)
            await wait_log(daemon, "config_reloaded", 2)
        run.exit_code = await asyncio.to_thread(daemon.terminate)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        run.log = daemon.log()
        run.fake_auth_headers = {r.headers.get("Authorization", "") for r in fake.requests}
        run.fake_app_keys = {r.alert["app_key"] for r in fake.received}
        await fake.stop()
    return run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> FullRun:
    """One full run of the daemon, shared by the tests that read its output."""
    return asyncio.run(drive(tmp_path_factory.mktemp("full-run")))


# --------------------------------------------------------------------------- the full run


def test_full_run_exercised_every_path(full_run: FullRun) -> None:
    """The run really sent the secrets and went through delivery, retry, auth failure,
    dead letters, refused ingest and reloads (so the grep below proves something)."""
    assert full_run.exit_code == 0
    assert full_run.fake_auth_headers == {f"Bearer {BP_TOKEN}"}
    assert full_run.fake_app_keys == {BP_APP_KEY}
    counts = {
        "delivered": 4,
        "delivery_retrying": 1,
        "delivery_recovered": 1,
        "target_auth_failed": 1,
        "dead_lettered": 2,
        "ingest_rejected": 3,
        "config_reloaded": 2,
    }
    for event, n in counts.items():
        assert len(full_run.named(event)) == n, (event, full_run.log)
    assert any(e["event"] == "http_request" for e in full_run.events)


def test_no_secret_appears_in_any_output_of_a_full_run(full_run: FullRun) -> None:
    """No token, app key, ingest password or client-sent credential appears in the daemon's
    log, the CLI's output, ``/metrics``, readiness, or the dead-letter API."""
    everything = {"daemon log": full_run.log, **full_run.outputs}
    assert len(everything) > 15
    for where, text in everything.items():
        for secret in (*SECRETS, *ENCODED):
            assert secret not in text, f"{secret!r} leaked into {where}:\n{text}"


def test_logs_are_json_lines_when_stdout_is_not_a_tty(full_run: FullRun) -> None:
    """Without ``--log-format`` and with stdout a file, every line is a JSON object with
    ``event``, ``level`` and ``timestamp``."""
    events = full_run.events
    assert len(events) > 20
    for e in events:
        assert {"event", "level", "timestamp"} <= e.keys(), e
        assert e["level"] in {"debug", "info", "warning", "error", "critical"}


def test_debug_level_logs_each_ingest_with_its_alert_id(full_run: FullRun) -> None:
    """With ``--log-level debug`` every accepted request is one ``ingested`` event carrying
    the alert id and status 200."""
    ingested = full_run.named("ingested")
    assert [e["alert_id"] for e in ingested] == [
        "ok-bearer",
        "ok-basic",
        "retry-me",
        "auth-refused",
        "bad-request",
        "ok-after",
    ]
    for e in ingested:
        assert e["status"] == 200
        assert e["target"] == "bigpanda"


def test_delivery_events_carry_alert_id_target_attempt_and_status(full_run: FullRun) -> None:
    """``delivered``, ``delivery_retrying`` and ``dead_lettered`` each carry ``alert_id``,
    ``target``, ``attempt`` and ``status`` with the values of what happened."""
    fields = ("alert_id", "target", "attempt", "status")
    delivered_ = {e["alert_id"]: e for e in full_run.named("delivered")}
    assert set(delivered_) == {"ok-bearer", "ok-basic", "retry-me", "ok-after"}
    for e in delivered_.values():
        assert all(f in e for f in fields), e
        assert e["target"] == "bigpanda"
        assert e["status"] == 201
    assert delivered_["ok-bearer"]["attempt"] == 1
    assert delivered_["retry-me"]["attempt"] == RETRIES + 1

    (retrying,) = full_run.named("delivery_retrying")
    assert {k: retrying[k] for k in fields} == {
        "alert_id": "retry-me",
        "target": "bigpanda",
        "attempt": 1,
        "status": 503,
    }
    assert retrying["reason"] == "serverError"
    assert retrying["level"] == "warning"

    dead = {e["alert_id"]: e for e in full_run.named("dead_lettered")}
    assert {k: dead["auth-refused"][k] for k in fields} == {
        "alert_id": "auth-refused",
        "target": "bigpanda",
        "attempt": 1,
        "status": 401,
    }
    assert dead["auth-refused"]["reason"] == "authError"
    assert {k: dead["bad-request"][k] for k in fields} == {
        "alert_id": "bad-request",
        "target": "bigpanda",
        "attempt": 1,
        "status": 400,
    }
    assert dead["bad-request"]["reason"] == "clientError"


def test_retries_are_logged_once_per_backoff_episode(full_run: FullRun) -> None:
    """Three 503s in a row for one alert log one ``delivery_retrying`` (no event per
    attempt), then one ``delivery_recovered`` counting the failed attempts."""
    names = [e["event"] for e in full_run.events]
    assert names.count("delivery_retrying") == 1
    assert names.count("delivery_retrying_new_error") == 0
    (recovered,) = full_run.named("delivery_recovered")
    assert recovered["attempts"] == RETRIES
    assert recovered["target"] == "bigpanda"
    assert names.index("delivery_retrying") < names.index("delivery_recovered")


def test_refused_ingest_is_logged_without_the_credentials(full_run: FullRun) -> None:
    """A request with wrong credentials is one ``ingest_rejected`` event with the reason and
    status, and the credentials it carried are not in it."""
    rejected = full_run.named("ingest_rejected")
    assert {(e["source"], e["reason"], e["status"]) for e in rejected} == {
        ("kapacitor", "unauthorized", 401),
        ("influxdb", "unauthorized", 401),
    }


# --------------------------------------------------------------------------- formats


async def test_console_format_is_human_readable_and_info_hides_ingests(
    tmp_path: Path, fake_bigpanda: FakeBigPanda
) -> None:
    """``--log-format console`` prints non-JSON lines; at the default info level the
    per-request ``ingested`` event is not logged."""
    port = free_port()
    config = tmp_path / "forwarder.yaml"
    text = run_config(port, fake_bigpanda.alerts_url)
    text = text.replace("${BP_TOKEN}", TOKEN).replace(BP_APP_KEY, APP_KEY)
    config.write_text(text.replace("password_file: basic.pw", f"password: {BASIC_PASSWORD}"))
    daemon = Daemon(config, port, tmp_path / "console.log")
    daemon.start(log_format="console")
    try:
        await daemon.wait_ready()
        async with aiohttp.ClientSession() as s:
            body = kapacitor_alert("quiet")
            async with s.post(f"{daemon.url}/kapacitor", data=body, headers=BEARER_H) as resp:
                assert resp.status == 200
        await fake_bigpanda.wait_for(delivered("quiet"), timeout=10)
        await wait_log_text(daemon, "delivered")
        assert await asyncio.to_thread(daemon.terminate) == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
    lines = daemon.log().splitlines()
    assert any("started" in line for line in lines)
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
    assert not any("ingested" in line for line in lines)
    assert all(BASIC_PASSWORD not in line and INGEST_BEARER not in line for line in lines)


async def wait_log_text(daemon: Daemon, text: str, timeout: float = 20.0) -> None:
    """Poll the daemon's log until ``text`` appears in it."""
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        await asyncio.sleep(0.05)  # poll interval


class _TTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo :func:`forwarder.obs.logs.configure` (global structlog and root-logger state)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_auto_format_is_console_on_a_tty_and_json_otherwise() -> None:
    """``--log-format auto`` renders for a person on a terminal and JSON elsewhere."""
    tty = _TTY()
    logs.configure("info", "auto", tty, redactor=Redactor())
    logs.get_logger().info("hello_tty", answer=42)
    line = tty.getvalue().strip()
    assert "hello_tty" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)

    pipe = io.StringIO()
    logs.configure("info", "auto", pipe, redactor=Redactor())
    logs.get_logger().info("hello_pipe", answer=42)
    doc = json.loads(pipe.getvalue())
    assert doc["event"] == "hello_pipe"
    assert doc["answer"] == 42


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_records_are_json_with_timestamp_and_redacted() -> None:
    """Warnings from aiohttp or asyncio (stdlib logging) come out as the same JSON lines,
    with ``timestamp``, and with secrets masked in the message and the traceback."""
    out = io.StringIO()
    redactor = Redactor()
    logs.configure("info", "json", out, redactor=redactor)
    redactor.set_secrets([BP_TOKEN])
    try:
        raise RuntimeError(f"boom with {BP_TOKEN}")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("request failed: Bearer %s", BP_TOKEN)
    (doc,) = json_lines(out.getvalue())
    assert {"event", "level", "timestamp"} <= doc.keys()
    assert doc["level"] == "error"
    assert doc["logger"] == "aiohttp.server"
    assert BP_TOKEN not in out.getvalue()
    assert f"Bearer {REDACTED}" in doc["event"]


@pytest.mark.usefixtures("restore_logging")
def test_level_filter_drops_debug_at_info() -> None:
    """At ``info`` a debug event is not written; at ``debug`` it is."""
    out = io.StringIO()
    logs.configure("info", "json", out, redactor=Redactor())
    logs.get_logger().debug("hidden")
    assert out.getvalue() == ""
    logs.configure("debug", "json", out, redactor=Redactor())
    logs.get_logger().debug("shown")
    assert json.loads(out.getvalue())["event"] == "shown"


# --------------------------------------------------------------------------- Redactor


def redact(redactor: Redactor, **event: Any) -> dict[str, Any]:
    """Run the processor on one event dict."""
    return dict(redactor(None, "info", dict(event)))


def test_redactor_masks_secret_values_anywhere() -> None:
    """A registered secret is masked inside strings, nested dicts and lists, tuples, bytes
    and exception texts, and the rest of the text is kept."""
    r = Redactor()
    r.set_secrets([BP_TOKEN, BP_APP_KEY, ""])
    out = redact(
        r,
        event=f"sent {BP_TOKEN}",
        nested={"a": [1, {"b": f"x{BP_APP_KEY}y"}], "n": 3},
        pair=("ok", BP_TOKEN),
        raw=f"key={BP_APP_KEY}".encode(),
        error=ValueError(f"refused {BP_TOKEN}"),
        errors=[OSError(f"at {BP_APP_KEY}")],
        count=7,
        flag=True,
        nothing=None,
    )
    assert out == {
        "event": f"sent {REDACTED}",
        "nested": {"a": [1, {"b": f"x{REDACTED}y"}], "n": 3},
        "pair": ["ok", REDACTED],
        "raw": f"key={REDACTED}",
        "error": f"ValueError: refused {REDACTED}",
        "errors": [f"OSError: at {REDACTED}"],
        "count": 7,
        "flag": True,
        "nothing": None,
    }


def test_redactor_masks_other_objects_by_their_text() -> None:
    """An object that is not plain data (a URL, a set) is masked through its text rather
    than passed to the renderer with the secret inside."""
    r = Redactor()
    r.set_secrets([BP_TOKEN])
    out = redact(r, url=yarl.URL(f"https://api.example/alerts?token={BP_TOKEN}"), seen={BP_TOKEN})
    assert BP_TOKEN not in json.dumps(out, default=repr)
    assert REDACTED in str(out["url"])


def test_redactor_masks_credential_named_fields() -> None:
    """Fields named like credentials (any case, nested too) are masked whatever their value,
    even values never registered as secrets; empty ones stay empty."""
    r = Redactor()
    out = redact(
        r,
        event="request",
        Authorization="Bearer unknown-value",
        token="t0k",
        headers={"X-Auth-Token": "abc", "x-app-key": "def", "Accept": "json"},
        app_key="",
        password=None,
    )
    assert out == {
        "event": "request",
        "Authorization": REDACTED,
        "token": REDACTED,
        "headers": {"X-Auth-Token": REDACTED, "x-app-key": REDACTED, "Accept": "json"},
        "app_key": "",
        "password": None,
    }


def test_redactor_masks_a_longer_secret_whole() -> None:
    """When one secret contains another, the longer one is masked whole (no tail left)."""
    r = Redactor()
    r.set_secrets(["abc", "abc-def-ghi"])
    assert redact(r, event="x abc-def-ghi y abc")["event"] == f"x {REDACTED} y {REDACTED}"


def test_redactor_follows_reloaded_secrets() -> None:
    """After ``set_secrets`` with a new config's values, the new ones are masked."""
    r = Redactor()
    r.set_secrets(["old-secret-1"])
    r.set_secrets(["new-secret-2"])
    assert redact(r, event="new-secret-2")["event"] == REDACTED


def test_redactor_masks_credentials_by_shape_unregistered() -> None:
    """Credentials nobody registered are masked by their shape: the value after ``Bearer``
    or ``Basic``, a URL's password, and query parameters named like credentials (an OIM URL
    with ``?access_token=``, as aiohttp's exceptions quote it). Prose keeps its words."""
    r = Redactor()
    url = "https://oim.example/oim/api/alerts?access_token=tok-123abc&x=1"
    text = f"ConnectionTimeoutError: Connection timeout to host {url}"
    assert r.scrub(text) == (
        "ConnectionTimeoutError: Connection timeout to host"
        " https://oim.example/oim/api/alerts?access_token=***&x=1"
    )
    assert r.scrub("echo: Authorization: Bearer abcdef0123456789") == (
        f"echo: Authorization: Bearer {REDACTED}"
    )
    assert r.scrub("Basic a2FwYWNpdG9yOnB3ZA==") == f"Basic {REDACTED}"
    assert (
        r.scrub("postgresql://fwd:pg-pass-77@db:5432/q") == f"postgresql://fwd:{REDACTED}@db:5432/q"
    )
    assert r.scrub("missing or invalid bearer token") == "missing or invalid bearer token"


@pytest.mark.parametrize("edge", [0, 1, 5, len(BP_TOKEN) - 1])
def test_cut_masks_before_cutting_a_secret_at_the_limit(edge: int) -> None:
    """A secret straddling the limit is masked whole, however far into it the limit falls:
    no character of it survives the cut."""
    r = Redactor()
    r.set_secrets([BP_TOKEN])
    head = "x" * 20
    text = head + BP_TOKEN + " tail"
    out = r.cut(text, len(head) + edge)
    assert BP_TOKEN[: max(edge, 1)] not in out
    assert out == (head + REDACTED + " tail")[: len(head) + edge]


@pytest.mark.parametrize("visible", [4, 9, len(BP_TOKEN) - 1])
def test_cut_masks_the_beginning_of_a_secret_left_by_an_earlier_cut(visible: int) -> None:
    """Text that was cut before (the first bytes of an answer) may end with the start of a
    secret, or of a ``Bearer`` value: with ``already_cut`` that tail is masked."""
    r = Redactor()
    r.set_secrets([BP_TOKEN])
    start = BP_TOKEN[:visible]
    assert r.cut("answer: " + start, 100, already_cut=True) == f"answer: {REDACTED}"
    assert r.cut("echo Bearer " + start, 100, already_cut=True) == f"echo Bearer {REDACTED}"
    # Without the flag and under the limit, the text is whole: nothing is taken for a prefix.
    assert r.cut("answer: best", 100) == "answer: best"


@pytest.mark.usefixtures("restore_logging")
def test_console_renders_nested_values_as_json() -> None:
    """On a terminal, an alert (a dict in a list) is printed as compact JSON, not a Python
    repr, so it can be pasted into ``forwarder render`` or ``curl``."""
    tty = _TTY()
    logs.configure("info", "auto", tty, redactor=Redactor(), environ={"NO_COLOR": "1"})
    alert = {"status": "critical", "host": "web-1", "ok": True, "none": None}
    logs.get_logger().info("dry_run_batch", alerts=[alert])
    line = tty.getvalue()
    assert 'alerts=[{"status":"critical","host":"web-1","ok":true,"none":null}]' in line
    assert "{'status'" not in line


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("no_color", "coloured"), [(None, True), ("", True), ("1", False)])
def test_console_honours_no_color(no_color: str | None, coloured: bool) -> None:
    """On a terminal, ANSI colours are used unless ``NO_COLOR`` is set to a non-empty value
    (https://no-color.org)."""
    tty = _TTY()
    environ = {} if no_color is None else {"NO_COLOR": no_color}
    logs.configure("info", "console", tty, redactor=Redactor(), environ=environ)
    logs.get_logger().info("hello", n=1)
    assert ("\x1b[" in tty.getvalue()) is coloured
