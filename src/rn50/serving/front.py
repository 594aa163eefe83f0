"""``rn50 serve``'s HTTP front: a small reverse proxy on the HTTP port users reach, with Triton's own HTTP endpoint on a
private loopback port behind it.

The tritonserver that nvidia-pytriton bundles has no limit on a request's body (its ``--help`` has no such option):
a 200 MB JSON body took it to 3.4 GB of memory before it answered, and a body that is not JSON got its HTTP 500 (a
server error for the client's fault). The front refuses a body over the limit from its ``Content-Length`` alone,
before reading it (413), refuses a body without one (411: chunked uploads would have to be read to be measured),
and turns Triton's answer to a body it could not parse into the 400 it is; everything else — every header, every
byte of every body, keep-alive connections — passes through unchanged. gRPC (Triton's own 2 GB message limit) and
metrics are not proxied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING

from rn50.errors import CheckFailed
from rn50.words import opt

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)

HEADER_LIMIT = 64 * 1024  # bytes of a request's or a response's head (request line and headers)
# Triton's words for a body it could not parse as JSON (the JSON header of a binary request included).
PARSE_ERRORS = ("failed to parse the request JSON buffer", "JSON parse error")
REASONS = {400: "Bad Request", 411: "Length Required", 413: "Content Too Large", 431: "Header Fields Too Large"}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for Triton's private HTTP endpoint."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def _refusal(status: int, message: str) -> bytes:
    """An error answer in Triton's own form (``{"error": …}``), after which the connection is closed."""
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def _response(upstream: asyncio.StreamReader, method: str) -> tuple[bytes, int, bytes, bool]:
    """Triton's answer: its head, its status, its body, and whether it closes the connection."""
    head = await upstream.readuntil(b"\r\n\r\n")
    status_line, fields = _headers(head)
    status = int(status_line.split(" ", 2)[1])
    closes = fields.get("connection", "").lower() == "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return head, status, b"", closes
    if "content-length" in fields:
        return head, status, await upstream.readexactly(int(fields["content-length"])), closes
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await upstream.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await upstream.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head, status, bytes(body), closes
    return head, status, await upstream.read(), True  # delimited by the end of the connection


def _as_bad_request(head: bytes, status: int, body: bytes) -> bytes | None:
    """Triton's 500 for a request body it could not parse, as the 400 it is (the same body and headers)."""
    if status != 500 or not any(e.encode() in body for e in PARSE_ERRORS):
        return None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version = status_line.split(" ", 1)[0]
    return head.replace(status_line.encode("latin-1"), f"{version} 400 Bad Request".encode(), 1)


class Front:
    """The proxy, run on its own event-loop thread while Triton serves."""

    def __init__(self, host: str, port: int, upstream_port: int, max_bytes: int):
        self.host, self.port, self.upstream_port, self.max_bytes = host, port, upstream_port, max_bytes
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self.server: asyncio.base_events.Server | None = None
        self.thread = threading.Thread(target=self._run, name="rn50-http-front", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._client, self.host, self.port, limit=HEADER_LIMIT, reuse_address=True)
            )
        except OSError as e:
            self.failure = e
            self.started.set()
            return
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self) -> None:
        self.thread.start()
        self.started.wait()
        if self.failure is not None:
            raise CheckFailed(
                f"the HTTP front could not listen on {self.host}:{self.port} ({self.failure})",
                fix="pass another port, or stop what holds it",
            )

    def stop(self) -> None:
        def close() -> None:
            if self.server is not None:
                self.server.close()
            self.loop.stop()

        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(close)
            self.thread.join(timeout=5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed its connection between requests
                except asyncio.LimitOverrunError:
                    writer.write(_refusal(431, f"the request's headers are over {HEADER_LIMIT // 1024} KiB"))
                    return
                request_line, fields = _headers(head)
                refused = self._refused(fields)
                if refused is not None:
                    writer.write(refused)
                    return
                body = await reader.readexactly(int(fields.get("content-length") or 0))
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port, limit=HEADER_LIMIT)
                upstream[1].write(head + body)
                await upstream[1].drain()
                answer_head, status, answer_body, closes = await _response(upstream[0], request_line.split(" ", 1)[0])
                writer.write((_as_bad_request(answer_head, status, answer_body) or answer_head) + answer_body)
                await writer.drain()
                if closes or fields.get("connection", "").lower() == "close" or request_line.endswith("HTTP/1.0"):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError) as e:
            log.info("HTTP front: a connection ended early (%s)", e)
        finally:
            for w in (writer, *(upstream[1:] if upstream else ())):
                with contextlib.suppress(Exception):
                    await w.drain()
                    w.close()

    def _refused(self, fields: dict[str, str]) -> bytes | None:
        """Why a request is answered here, without Triton: no length, a malformed one, or one over the limit."""
        if "transfer-encoding" in fields:
            return _refusal(411, "send the request body with a Content-Length (chunked bodies are not taken)")
        try:
            length = int(fields.get("content-length") or 0)
        except ValueError:
            return _refusal(400, f"Content-Length {fields['content-length']!r} is not a number")
        if length < 0:
            return _refusal(400, f"Content-Length {length} is negative")
        if length > self.max_bytes:
            return _refusal(
                413,
                f"the request body is {length / 2**20:.1f} MB, over this server's limit of "
                f"{self.max_bytes / 2**20:g} MB ({opt('max_request_mb')}); send fewer images per request, or "
                "binary tensors (a third of JSON's size)",
            )
        return None


@contextlib.contextmanager
def front(host: str, port: int, upstream_port: int, max_bytes: int) -> Iterator[Front]:
    """The HTTP front on ``host:port``, forwarding to Triton's ``127.0.0.1:upstream_port``, until the block ends."""
    proxy = Front(host, port, upstream_port, max_bytes)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
