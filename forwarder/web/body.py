"""Reading a request body: the size limit, content codings, and a deadline.

aiohttp's own decompression is switched off (``auto_decompress=False`` in
:func:`forwarder.web.app.create_app`): it inflates in the protocol callback,
on the event loop, with no bound, before any view (or authentication) runs.
Here a compressed body is inflated in steps of :data:`INFLATE_STEP` bytes,
yielding to the loop between steps, and refused with 413 as soon as the
inflated size passes ``server.max_body_bytes`` — so a zip bomb costs at most
that many bytes of inflating.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from forwarder.web.errors import HTTPError
from forwarder.web.keys import REDACTOR

# How long a client may take to send its whole body once the headers are in.
# aiohttp has no such deadline: a chunked body whose framing breaks can hold a
# connection (and its descriptor) until the keep-alive timer, which never runs
# while a request is being handled. Alert bodies are small; 30 s is generous.
BODY_READ_TIMEOUT = 30.0

# Inflated bytes produced per step before yielding to the event loop (about a
# millisecond of zlib work).
INFLATE_STEP = 256 * 1024

# The codings this server decodes (RFC 9110 §8.4.1). "x-gzip" is gzip's old
# name, which recipients should treat as gzip (RFC 9110 §8.4.1.3).
CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
ACCEPT_ENCODING = "gzip, deflate"


def too_large(limit: int) -> HTTPError:
    """The 413 for a body over ``server.max_body_bytes``."""
    return HTTPError(
        f"body larger than server.max_body_bytes ({limit} bytes)", reason="too_large", status=413
    )


def content_coding(request: web.Request) -> str | None:
    """The body's content coding, ``"gzip"`` or ``"deflate"``; None for none or identity.

    Anything else is refused with 415 and ``Accept-Encoding`` listing what
    would be accepted (RFC 9110 §15.5.16). Several codings stacked on one body
    are refused too: no sender of alerts does that.
    """
    header = request.headers.get("Content-Encoding")
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in CODINGS:
        return CODINGS[codings[0]]
    shown = header if header.isascii() and header.isprintable() else ascii(header)
    # Masked before it is cut, so a secret straddling the cut is masked whole.
    shown = request.app[REDACTOR].cut(shown, 100)
    raise HTTPError(
        f"Content-Encoding {shown} is not supported; send the body as is,"
        f" or encoded with one of: {ACCEPT_ENCODING}",
        status=415,
        reason="bad_encoding",
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )


def body_if_complete(request: web.Request, limit: int) -> bytes | None:
    """The whole (uncompressed) body if it has already arrived, without a trip through the loop.

    Alert bodies usually arrive in the same packet as the headers. None means
    "read it with :func:`read_body`" (a compressed body always is); a declared
    length over ``limit`` is refused with 413 before anything is read.
    """
    length = request.content_length
    if length is None:
        return None
    if length > limit:
        raise too_large(limit)
    if "Content-Encoding" in request.headers:
        return None
    if length == 0:
        return b""
    stream = request.content
    if not stream.is_eof():
        return None
    data = stream.read_nowait(-1)
    if len(data) != length:
        raise _short(len(data), length)
    return data


async def read_body(
    request: web.Request, limit: int, *, timeout: float = BODY_READ_TIMEOUT
) -> bytes:
    """The whole body, decoded, refusing with 413 as soon as it exceeds ``limit`` bytes.

    Both the bytes on the wire and the inflated bytes are bounded by
    ``limit``. The read must finish within ``timeout`` seconds, or the request
    is refused with 408 and the connection closed. Call it after
    authentication: an unauthenticated body is never read, let alone inflated.
    """
    coding = content_coding(request)
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    try:
        async with asyncio.timeout(timeout):
            if coding is None:
                return await _read_plain(request, limit)
            return await _inflate(_wire_chunks(request, limit), coding, limit)
    except TimeoutError:
        raise HTTPError(
            f"the body did not arrive within {timeout:g} s",
            status=408,
            reason="body_timeout",
            close=True,
        ) from None
    except HttpProcessingError as exc:  # broken chunked framing, reported by aiohttp's parser
        raise HTTPError(
            f"malformed request body: {_one_line(exc.message)}", reason="bad_json"
        ) from None
    except web.RequestPayloadError as exc:
        raise HTTPError(
            f"malformed request body: {_one_line(str(exc))}", reason="bad_json"
        ) from None


async def _read_plain(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None:
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise _short(len(exc.partial), length) from None
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise too_large(limit)
    return bytes(buf)


async def _wire_chunks(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, at most ``limit`` of them, exactly Content-Length."""
    length = request.content_length
    seen = 0
    async for chunk in request.content.iter_any():
        seen += len(chunk)
        if seen > limit:
            raise too_large(limit)
        yield chunk
    if length is not None and seen != length:
        raise _short(seen, length)


async def _inflate(chunks: AsyncIterator[bytes], coding: str, limit: int) -> bytes:
    """Inflate ``chunks`` in bounded steps; 413 past ``limit``, 400 if they are not ``coding``.

    gzip may hold several members one after another (RFC 1952 §2.2); they
    are inflated in turn. "deflate" is the zlib format (RFC 9110 §8.4.1.2),
    but some senders send a raw deflate stream; both are accepted.
    """
    out = bytearray()
    inflater = _Inflater(coding)
    async for chunk in chunks:
        data = chunk
        while data:
            data = inflater.step(data, out)
            if len(out) > limit:
                raise too_large(limit)
            await asyncio.sleep(0)  # let other clients in between steps
    while inflater.drain(out):  # output zlib still holds once all input is in
        if len(out) > limit:
            raise too_large(limit)
        await asyncio.sleep(0)
    if len(out) > limit:
        raise too_large(limit)
    if not inflater.finished:
        raise _bad_coding(coding, "the compressed body ended early")
    return bytes(out)


class _Inflater:
    """One content coding's zlib state, fed a step at a time."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._wbits = 31 if coding == "gzip" else 15  # gzip header / zlib header
        self._zlib = zlib.decompressobj(self._wbits)
        self._started = False  # whether any input was accepted yet
        self._head = b""  # deflate: the first bytes, until the format is known
        self.finished = False

    def step(self, data: bytes, out: bytearray) -> bytes:
        """Inflate at most :data:`INFLATE_STEP` bytes of ``data`` into ``out``; the input left."""
        if self.coding == "deflate" and not self._started:
            # "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2), but senders also send raw
            # deflate: two bytes tell them apart (RFC 1950 §2.2: CM 8, FCHECK), so wait
            # for two, however the body was split.
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            self._head = b""
            self._started = True
            if not (data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0):
                self._wbits = -15
                self._zlib = zlib.decompressobj(self._wbits)
            else:
                try:  # a raw stream can start like a zlib header by chance (1 in ~500)
                    return self._decompress(data, out)
                except HTTPError:
                    self._wbits = -15
                    self._zlib = zlib.decompressobj(self._wbits)
        return self._decompress(data, out)

    def _decompress(self, data: bytes, out: bytearray) -> bytes:
        z = self._zlib
        if z.eof:
            # Bytes after the end of a stream: another gzip member, or garbage.
            if self.coding != "gzip":
                raise _bad_coding(self.coding, "data follows the end of the compressed body")
            self._zlib = z = zlib.decompressobj(self._wbits)
            self.finished = False
        try:
            piece = z.decompress(data, INFLATE_STEP)
        except zlib.error as exc:
            raise _bad_coding(self.coding, str(exc)) from None
        self._started = True
        out += piece
        if z.eof:
            self.finished = True
            return z.unused_data
        return z.unconsumed_tail

    def drain(self, out: bytearray) -> bool:
        """Move output zlib still buffers into ``out``; whether there was any."""
        z = self._zlib
        if z.eof:
            return False
        try:
            piece = z.decompress(b"", INFLATE_STEP)
        except zlib.error as exc:
            raise _bad_coding(self.coding, str(exc)) from None
        out += piece
        if z.eof:
            self.finished = True
        return bool(piece)


def _bad_coding(coding: str, detail: str) -> HTTPError:
    return HTTPError(
        f"body is not valid {coding} data ({detail}); "
        "send it uncompressed or drop the Content-Encoding header",
        reason="bad_encoding",
    )


def _short(got: int, length: int) -> HTTPError:
    return HTTPError(f"body ended after {got} of {length} bytes", reason="bad_json")


def _one_line(text: str) -> str:
    # Not cut here: the log line masks, then cuts (forwarder.web.ingest._rejected).
    return " ".join(text.split())
