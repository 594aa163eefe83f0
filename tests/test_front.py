"""rn50 serve's HTTP front (rn50.serving.front) against a plain HTTP server standing in for Triton's endpoint: what it
refuses itself, what it passes through unchanged, and Triton's parse-error 500 made a 400. The real server behind it
is tests/test_serving.py's."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

from rn50.serving.front import free_port, front

if TYPE_CHECKING:
    from collections.abc import Iterator


class Upstream(BaseHTTPRequestHandler):
    """Echoes a body back, answers Triton's way for a body that is not JSON; counts what reached it."""

    protocol_version = "HTTP/1.1"
    seen: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Upstream.seen.append(len(body))
        if self.headers.get("Content-Type") == "application/json":
            try:
                json.loads(body)
            except ValueError:
                error = json.dumps({"error": "failed to parse the request JSON buffer: Invalid value. at 0"})
                return self._send(500, error.encode())
        self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def proxied() -> Iterator[int]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    Upstream.seen.clear()
    with front("127.0.0.1", port, upstream.server_address[1], max_bytes=1000):
        yield port
    upstream.shutdown()


def test_requests_pass_through_unchanged_on_one_kept_alive_connection(proxied: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxied, timeout=10)
    for body in (bytes(range(256)) * 3, b'{"inputs": []}', b""):
        conn.request("POST", "/v2/models/m/infer", body=body, headers={"Content-Type": "application/octet-stream"})
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read() == body
    conn.close()
    assert Upstream.seen == [768, 14, 0]


def test_a_body_that_is_not_json_is_a_400_with_tritons_reason(proxied: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxied, timeout=10)
    conn.request("POST", "/v2/models/m/infer", body=b"{not json", headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 400 and "failed to parse the request JSON buffer" in json.loads(answer.read())["error"]


@pytest.mark.parametrize(
    ("head", "status", "words"),
    [
        ("Content-Length: 1001", 413, "over this server's limit"),
        ("Content-Length: 99999999999", 413, "--max-request-mb"),
        ("Transfer-Encoding: chunked", 411, "Content-Length"),
        ("Content-Length: ten", 400, "is not a number"),
    ],
)
def test_what_the_front_refuses_never_reaches_the_server(proxied: int, head: str, status: int, words: str) -> None:
    with socket.create_connection(("127.0.0.1", proxied), timeout=10) as raw:
        raw.sendall(f"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(4096):  # the front closes the connection after a refusal
            answer += chunk
    first, _, rest = answer.partition(b"\r\n")
    assert f" {status} ".encode() in first, answer
    assert words in json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert Upstream.seen == []


def test_a_body_at_the_limit_passes(proxied: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxied, timeout=10)
    conn.request("POST", "/x", body=b"a" * 1000)
    assert conn.getresponse().status == 200 and Upstream.seen == [1000]
