"""HTTP refusals: :class:`HTTPError`, and JSON answers for every error a view lets through."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from forwarder.ingest.errors import ParseError
from forwarder.obs.logs import get_logger
from forwarder.obs.metrics import RejectReason
from forwarder.pipeline import StageError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HTTPError(Exception):
    """A refusal: answered with ``status`` and ``{"error": message}``.

    ``reason`` is the label of ``forwarder_events_rejected_total`` when an
    ingest refuses; ``headers`` go out with the answer (``Retry-After`` on a
    503, ``WWW-Authenticate`` on a 401); ``close`` closes the connection after
    the answer (a 408: the rest of the request cannot be trusted).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        reason: RejectReason = "bad_shape",
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason: RejectReason = reason
        self.headers = headers
        self.close = close

    def response(self) -> web.Response:
        """The JSON answer of this refusal."""
        resp = error_response(self.status, self.message, headers=self.headers)
        if self.close:
            resp.force_close()
        return resp

    @classmethod
    def from_input(cls, exc: ParseError | StageError) -> HTTPError:
        """The 400 for a body the parser or a stage refused."""
        return cls(exc.message, reason=exc.reason)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """``{"error": message}`` with ``status``."""
    return web.json_response({"error": message}, status=status, headers=headers)


def json_errors(handler: Handler) -> Handler:
    """Wrap a view so every refusal is JSON and an unexpected exception a logged 500.

    A decorator on the views that need it rather than an application
    middleware: a middleware puts two more coroutine frames between aiohttp and
    every handler, the ingest hot path included, which handles its own errors.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HTTPError as exc:
            resp = exc.response()
            if exc.close:
                await send_and_close(request, resp)
            return resp
        except Exception as exc:
            return exception_response(request, exc)

    return wrapped


async def send_and_close(request: web.Request, resp: web.Response) -> None:
    """Send ``resp`` now and close the connection once it is flushed.

    For a request whose body cannot be read to its end (its deadline passed,
    its framing is broken): aiohttp would otherwise keep reading ("lingering")
    up to 10 s for the rest of a body that is not coming.
    """
    await resp.prepare(request)
    await resp.write_eof()
    # Closing an asyncio transport flushes what is buffered first.
    request.protocol.force_close()


def exception_response(request: web.Request, exc: Exception) -> web.Response:
    """The JSON answer for an exception a view let through."""
    if isinstance(exc, HTTPError):
        return exc.response()
    if isinstance(exc, ParseError | StageError):
        return error_response(400, exc.message)
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return error_response(exc.status, message, headers=_keep_headers(exc))
    if isinstance(exc, web.HTTPException):
        raise exc  # a redirect or other non-error answer is aiohttp's to send
    get_logger().exception("internal_error", path=request.path, error=repr(exc))
    return error_response(500, "internal error; see the forwarder's log")


def _keep_headers(exc: web.HTTPException) -> dict[str, str]:
    keep = ("Allow", "Retry-After", "WWW-Authenticate")
    return {k: v for k, v in exc.headers.items() if k in keep}
