"""A small ASGI toolkit for faithful local emulators of the mailing tools' APIs.

Each tool's emulator (``tests/emulators/<tool>.py``) subclasses :class:`Emulator`,
registers its documented endpoints with :meth:`Emulator.route`, checks auth the
tool's way and answers with the tool's error bodies. The base adds what every
emulator needs:

- **fault injection** (:class:`Faults`): a fixed rate of 429s (with the tool's own
  rate-limit headers), 500s, timeouts (the work is *done*, then the answer comes too
  late: the client must retry idempotently) and dropped connections;
- a concurrency limit like the tool's (too many requests in flight: 429);
- request counters per route (``requests[route_name]``) so tests assert how many
  calls a sync made, not how long it took;
- control endpoints under ``/_emulator/`` (``GET state``, ``GET requests``,
  ``POST faults``, ``POST reset``) so a test can steer an emulator that serves a
  separate ``mailprefs`` process.

:func:`serve` runs an emulator as a real uvicorn server on a loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn


@dataclass
class Faults:
    """Rates (0..1) of injected failures, drawn per request from a seeded generator."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    timeout_s: float = 2.0
    """How late a 'timeout' answer comes (set it above the client's timeout)."""
    retry_after_s: float = 0.05
    """What injected 429s tell the client to wait."""
    seed: int = 1

    @classmethod
    def all(cls, rate: float, **kw: Any) -> Faults:
        """The same rate split evenly over the four kinds (``Faults.all(0.2)``)."""
        each = rate / 4
        return cls(rate_429=each, rate_500=each, rate_timeout=each, rate_drop=each, **kw)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    """Named groups of the route pattern."""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:]).decode("utf-8").partition(":")
        except ValueError:
            return None
        return user, password

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None


@dataclass
class Response:
    status: int = 200
    body: Any = None
    """JSON-serialisable, or bytes sent as they are."""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Handler = Callable[[Request], Awaitable[Response]]


class Emulator:
    """Base ASGI app: routing, counters, faults, concurrency limit, control endpoints."""

    name = "emulator"
    max_in_flight = 1000

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self.requests: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self._routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self._in_flight = 0
        self.lock = asyncio.Lock()
        """Handlers that read-modify-write state hold it (uvicorn serves concurrently)."""

    # what subclasses provide ---------------------------------------------
    def route(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` and a path regex with named groups."""
        self._routes.append((method, re.compile(pattern + r"/?\Z"), name, handler))

    def authorised(self, request: Request) -> bool:
        raise NotImplementedError

    def unauthorised(self) -> Response:
        return Response(401, {"message": "unauthorised"})

    def rate_limited(self, retry_after_s: float) -> Response:
        """The tool's 429 (override to use its headers and body)."""
        return Response(429, {"message": "Too many requests"},
                        {"Retry-After": f"{retry_after_s:g}"})

    def server_error(self) -> Response:
        return Response(500, {"message": "Internal server error"})

    def not_found(self) -> Response:
        return Response(404, {"message": "Not found"})

    def state(self) -> Any:
        """What the tool holds now (for tests), JSON-serialisable, in the tool's own shape."""
        raise NotImplementedError

    def view(self) -> dict[str, set[str]]:
        """The same state in one shape for every tool: lower-cased address -> labels.

        Labels: ``"global"`` (no marketing mail at all from this account/list/stream),
        ``"topic:<tool id>"`` (unsubscribed from that group/topic/tag/list only),
        ``"complaint"`` and ``"bounce"`` where the tool records those apart, and
        ``"deleted"`` for a contact erased at the tool."""
        raise NotImplementedError

    def tool_opt_out(self, address: str, kind: str, topic: str | None = None) -> None:
        """Make an opt-out happen *inside* the tool, as a recipient or a mailbox would:
        ``kind`` is ``unsubscribe`` (of the tool's topic id ``topic``, or everything),
        ``complaint`` or ``bounce`` (hard). It must show up in the tool's pull
        endpoints exactly as a real one would, timestamped now."""
        raise NotImplementedError

    # the ASGI app ---------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope.get("query_string", b"").decode("latin-1"),
                           keep_blank_values=True),
            headers={k.decode("latin-1").lower(): v.decode("latin-1")
                     for k, v in scope["headers"]},
            body=body,
        )
        if request.path.startswith("/_emulator/"):
            await self._send(send, await self._control(request))
            return
        await self._serve(request, send)

    async def _serve(self, request: Request, send: Any) -> None:
        found = self._match(request)
        if found is None:
            await self._send(send, self.not_found())
            return
        name, handler = found
        self.requests[name] += 1
        if not self.authorised(request):
            await self._send(send, self.unauthorised())
            return
        fault = self._draw_fault()
        if fault == "429":
            await self._send(send, self.rate_limited(self.faults.retry_after_s))
            return
        if fault == "500":
            await self._send(send, self.server_error())
            return
        if fault == "drop":
            # Start an answer and break off: the client sees the connection drop.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionAbortedError("injected dropped connection")
        if self._in_flight >= self.max_in_flight:
            self.faults_injected["concurrency"] += 1
            await self._send(send, self.rate_limited(1.0))
            return
        self._in_flight += 1
        try:
            response = await handler(request)
        finally:
            self._in_flight -= 1
        if fault == "timeout":
            # The work is done; the answer comes after the client gave up.
            await asyncio.sleep(self.faults.timeout_s)
        await self._send(send, response)

    def _match(self, request: Request) -> tuple[str, Handler] | None:
        for method, pattern, name, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return name, handler
        return None

    def _draw_fault(self) -> str | None:
        f = self.faults
        roll = self._rng.random()
        for kind, rate in (("429", f.rate_429), ("500", f.rate_500),
                           ("timeout", f.rate_timeout), ("drop", f.rate_drop)):
            if roll < rate:
                self.faults_injected[kind] += 1
                return kind
            roll -= rate
        return None

    async def _control(self, request: Request) -> Response:
        what = request.path.removeprefix("/_emulator/").strip("/")
        if what == "state" and request.method == "GET":
            return Response(200, self.state())
        if what == "requests" and request.method == "GET":
            return Response(200, dict(self.requests))
        if what == "faults" and request.method == "POST":
            self.set_faults(Faults(**request.json()))
            return Response(200, asdict(self.faults))
        if what == "view" and request.method == "GET":
            return Response(200, {a: sorted(v) for a, v in self.view().items()})
        if what == "opt-out" and request.method == "POST":
            body = request.json()
            self.tool_opt_out(body["address"], body["kind"], body.get("topic"))
            return Response(200, {})
        if what == "reset" and request.method == "POST":
            self.requests.clear()
            return Response(200, {})
        return Response(404, {"message": "unknown control endpoint"})

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    @staticmethod
    async def _send(send: Any, response: Response) -> None:
        if isinstance(response.body, bytes):
            payload = response.body
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body).encode("utf-8")
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in response.headers.items()]
        if payload or response.status not in (204, 304):
            headers.append((b"content-type", response.content_type.encode("latin-1")))
        # A known length: uvicorn then writes headers and body at once (chunked
        # answers cost a delayed-ACK round, ~40 ms, per request on loopback).
        headers.append((b"content-length", str(len(payload)).encode("ascii")))
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def now_epoch() -> int:
    return int(time.time())


@contextlib.contextmanager
def serve(app: Emulator) -> Iterator[str]:
    """Run ``app`` as a real HTTP server on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it Nagle holds the body behind the
    # headers until the client's delayed ACK (~40 ms a request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="critical", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{app.name} emulator did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
