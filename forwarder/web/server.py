"""The HTTP server around the app: JSON answers where aiohttp would answer plain text.

Two kinds of answer never reach the forwarder's views:

* requests aiohttp's parser refuses (a bad request line, a control character
  in a header, a header over 8190 bytes, ``TRACE *``): its connection handler
  answers them itself, in ``RequestHandler.handle_error``, in plain text;
* requests the router cannot place at all (``CONNECT host:port``,
  ``OPTIONS *``): their path does not start with ``/``, so no route matches.

Both are answered in JSON by :class:`Runner`: it serves the app with a
connection handler whose ``handle_error`` answers ``{"error": ...}``, and with
a request factory that gives a target without a path (RFC 9112 §3.2.3-4) a path
no route serves, so the app's own JSON 404 answers it. The factory is one plain
call per request; an ``on_response_prepare`` hook would cost a coroutine on
every answer of the ingest hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import InvalidURLError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_request import BaseRequest
from yarl import URL

# Where a request whose target is not a path is routed: no route serves it.
NO_PATH: Final = "/-/no-path"


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering the errors it handles itself in JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's version logs (through the ``logger`` handler argument, see
        # forwarder.web.protolog) and raises ConnectionError if an answer has
        # already started; its plain-text answer is replaced.
        super().handle_error(request, status, exc, message)
        resp = web.json_response({"error": error_text(status, message, exc)}, status=status)
        resp.force_close()
        return resp


RequestFactory = Callable[..., BaseRequest]


def placeable(make_request: RequestFactory) -> RequestFactory:
    """Wrap the app's request factory so ``CONNECT host:port`` and ``OPTIONS *`` get a path."""

    def factory(message: RawRequestMessage, *args: Any, **kwargs: Any) -> BaseRequest:
        if message.path[:1] != "/":
            message = message._replace(path=NO_PATH, url=URL(NO_PATH))
        return make_request(message, *args, **kwargs)

    return factory


class _Server(web.Server):
    """aiohttp's protocol factory, making :class:`JsonErrorHandler`s."""

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parser errors in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=placeable(server.request_factory),
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def error_text(status: int, message: str | None, exc: BaseException | None = None) -> str:
    """A one-line error for an answer aiohttp makes itself.

    Only the first line of aiohttp's message is kept: the lines after it echo
    the offending request bytes, which may be a credential.
    """
    if status == 500:
        return "internal error; see the forwarder's log"
    if isinstance(exc, InvalidURLError):
        # aiohttp's message is the target itself, e.g. "*" for "TRACE *"
        # (only OPTIONS may use the asterisk form, RFC 9112 §3.2.4).
        return f"invalid request target {first_line(message or '')[:100]!r}"
    text = first_line(message or "")
    if status >= 500 or not text:
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return f"HTTP {status}"
    return text


def first_line(message: str) -> str:
    """The first line of an aiohttp parser message, without what it quotes of the request."""
    lines = message.strip().splitlines()
    return lines[0].strip().rstrip(":")[:200] if lines else ""
