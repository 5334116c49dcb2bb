"""A JSON-RPC HTTP proxy that injects the faults a real network has, in front of a local node.

    with RpcProxy(anvil.url) as proxy:
        chain = connect("anvil", url=proxy.url)
        proxy.refuse(5)              # the node "goes away" for 5 s: connections are refused
        proxy.drop_transactions(1)   # the next raw transaction is acknowledged but never arrives
        proxy.hold_receipts(30)      # receipts read null (as if not mined yet) for 30 s
        proxy.cut_answers(1)         # the next answer stops halfway (a truncated response)

Single and batch requests are forwarded as they came; only the faulted calls are answered by the
proxy itself. It speaks HTTP/1.0 (one request per connection), so closing the listener really
refuses every later request instead of leaving kept-alive connections working.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from eth_utils import keccak

from ..ports import free_port

_UPSTREAM_TIMEOUT_S = 60.0


class RpcProxy:
    """Forwards JSON-RPC to `upstream`, except for the faults asked for."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[str] = []
        self._lock = threading.Lock()  # fault settings and `requests`
        self._life = threading.Lock()  # opening and closing the listener
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._reopen: threading.Timer | None = None
        self._drops = 0
        self._cuts = 0
        self._receipts_held_until = 0.0
        self._answers: dict[str, dict[str, Any]] = {}  # method -> what the proxy answers
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "RpcProxy":
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._life:
            self._closed = True
            if self._reopen is not None:
                self._reopen.cancel()
            self._close()

    # ------------------------------------------------------------------ faults

    def refuse(self, seconds: float) -> None:
        """Close the listener now and reopen it (same port) `seconds` from now."""
        with self._life:
            if self._reopen is not None:
                self._reopen.cancel()
            self._close()
            self._reopen = threading.Timer(seconds, self._reopen_when_due)
            self._reopen.daemon = True
            self._reopen.start()

    def drop_transactions(self, count: int) -> None:
        """Acknowledge the next `count` eth_sendRawTransaction with their hash, forward none."""
        with self._lock:
            self._drops += count

    def cut_answers(self, count: int) -> None:
        """Send only the first half of the next `count` answers (Content-Length says all)."""
        with self._lock:
            self._cuts += count

    def answer(self, method: str, result: Any = None, error: str | None = None) -> None:
        """Answer every `method` call itself, with `result`, or with a JSON-RPC `error` (as a
        node that lacks the method does): another node's view, such as an L2's fee market."""
        reply = {"error": {"code": -32601, "message": error}} if error else {"result": result}
        with self._lock:
            self._answers[method] = reply

    def hold_receipts(self, seconds: float) -> None:
        """Answer eth_getTransactionReceipt with null for `seconds` from now."""
        with self._lock:
            self._receipts_held_until = time.monotonic() + seconds

    # ------------------------------------------------------------------ internals

    def _open(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread

    def _close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def _reopen_when_due(self) -> None:
        with self._life:
            # a timer cancelled while it waited for the lock is no longer `_reopen`: stay shut
            if not self._closed and threading.current_thread() is self._reopen:
                self._open()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = proxy._answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply[: len(reply) // 2] if proxy._cut() else reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler

    def _cut(self) -> bool:
        with self._lock:
            if self._cuts == 0:
                return False
            self._cuts -= 1
            return True

    def _answer(self, body: bytes) -> tuple[int, bytes]:
        try:
            payload = json.loads(body)
        except ValueError:
            return self._forward(body)
        batch = isinstance(payload, list)
        calls = payload if batch else [payload]
        local: list[dict[str, Any]] = []
        forwarded: list[Any] = []
        for request in calls:
            answer = self._fault(request)
            (forwarded if answer is None else local).append(request if answer is None else answer)
        if not forwarded:
            return 200, json.dumps(local if batch else local[0]).encode()
        status, reply = self._forward(json.dumps(forwarded if batch else forwarded[0]).encode())
        if not local or status != 200:
            return status, reply
        return 200, json.dumps(json.loads(reply) + local).encode()

    def _fault(self, request: Any) -> dict[str, Any] | None:
        """The proxy's own answer to one call, or None to forward it."""
        if not isinstance(request, dict):
            return None
        method = str(request.get("method"))
        with self._lock:
            self.requests.append(method)
            if method == "eth_sendRawTransaction" and self._drops > 0:
                self._drops -= 1
                raw = bytes.fromhex(str(request["params"][0]).removeprefix("0x"))
                return _result(request, "0x" + keccak(raw).hex())
            if method in self._answers:
                return {"jsonrpc": "2.0", "id": request.get("id"), **self._answers[method]}
            held = time.monotonic() < self._receipts_held_until
            if method == "eth_getTransactionReceipt" and held:
                return _result(request, None)
        return None

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=_UPSTREAM_TIMEOUT_S) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:  # upstream down: a gateway error, as a real proxy would answer
            return 502, json.dumps({"error": f"upstream {self.upstream}: {exc}"}).encode()


def _result(request: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}
