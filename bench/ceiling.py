"""The ceiling for the ingest benchmark: a bare aiohttp app that only parses JSON.

It runs on the same event loop the forwarder uses (uvloop when installed) and
parses with the standard library's ``json``, which is what "an aiohttp handler
that only parses the JSON" means in plain Python. Run as
``python -m bench.ceiling --port N``; it prints ``READY`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    """Parse the body and answer 200, nothing else."""
    try:
        json.loads(await request.read())
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=400)
    return web.json_response({"accepted": 1})


async def serve(port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    app = web.Application()
    app.router.add_post("/kapacitor", handle)
    app.router.add_post("/kapacitor/{task}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Parse arguments and run the server on the forwarder's event loop kind."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
