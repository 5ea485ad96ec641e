"""The listener serves HTTPS when ``server.tls`` names a certificate and key.

The certificate is self-signed, made by ``openssl`` in the test (the
``cryptography`` package is not a dependency), and the client trusts exactly it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import BASE_CONFIG, Daemon, example


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written to ``directory``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def tls_config(cert: Path, key: Path) -> str:
    """The dry-run base config with ``server.tls`` set."""
    return BASE_CONFIG.replace(
        "  shutdown_timeout: 2s\n",
        f"  shutdown_timeout: 2s\n  tls:\n    cert_file: {cert}\n    key_file: {key}\n",
        1,
    )


async def wait_https(session: aiohttp.ClientSession, url: str, daemon: Daemon) -> None:
    """Poll ``url`` over HTTPS until it answers 200, with a deadline."""
    assert daemon.proc is not None
    deadline = time.monotonic() + 20
    while True:
        assert daemon.proc.poll() is None, daemon.log()
        try:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectorError:
            pass
        assert time.monotonic() < deadline, daemon.log()
        await asyncio.sleep(0.05)  # poll interval


async def test_daemon_serves_https_with_the_configured_certificate(
    tmp_path: Path, daemon_factory: Callable[[str], Daemon]
) -> None:
    """With ``server.tls``, probes and ingest work over HTTPS for a client that trusts the
    certificate, plain HTTP gets no answer, and the start-up log says https."""
    cert, key = self_signed(tmp_path)
    daemon = daemon_factory(tls_config(cert, key))
    daemon.start()
    https = f"https://127.0.0.1:{daemon.port}"
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        await wait_https(session, f"{https}/-/healthy", daemon)
        async with session.get(f"{https}/-/ready") as resp:
            assert resp.status == 200
        async with session.post(
            f"{https}/kapacitor", data=example("kapacitor-alert-critical.json")
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"accepted": 1, "suppressed": 0}
        async with session.get(f"{https}/metrics") as resp:
            assert "forwarder_events_received_total" in await resp.text()

    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{daemon.port}/-/healthy") as resp:
                await resp.read()

    async with aiohttp.ClientSession() as untrusting:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with untrusting.get(f"{https}/-/healthy") as resp:
                await resp.read()

    assert daemon.terminate() == 0
    started = [
        json.loads(line)
        for line in daemon.log().splitlines()
        if line.startswith("{") and '"started"' in line
    ]
    assert started
    assert started[0]["listen"] == f"https://127.0.0.1:{daemon.port}"
