"""uvicorn inside the worker: started before faust's consumer, so /health answers at once.

It serves from a thread of its own, with its own event loop. The worker's loop runs each
batch's CPU work in one go (tens of milliseconds at full speed); on that loop a query
waited for it. In its own thread, Python's switch interval (5 ms) bounds the wait. What
the routes read is safe from there: RocksDB reads run beside writes, and the rest is
plain Python objects read under the GIL.
"""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to faust's worker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PortTaken(RuntimeError):
    """API_HOST:API_PORT cannot be bound."""


class ApiServer:
    """Serves one FastAPI app on a socket bound up front (a taken port is a clear error)."""

    def __init__(self, api: FastAPI, host: str, port: int) -> None:
        self._api, self._host, self._port = api, host, port
        self._server: _EmbeddedServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Bind and serve from the API thread; return once uvicorn accepts connections."""
        sock = self._bind()
        # httptools, not h11: a C parser instead of a pure-Python one; named, not "auto", so
        # a missing one fails loudly (BENCHMARKS.md, "Key lookups at 50 connections")
        config = uvicorn.Config(self._api, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, http="httptools")
        server = self._server = _EmbeddedServer(config)
        # asyncio's own loop, not uvloop: uvloop answered ~10% more requests/s at full load,
        # but its p99 at 1,000 requests/s was 390-610 ms against 10-100 ms (two runs each)
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(server, sock),),
                                        name="orderstream-api", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                raise PortTaken(f"the API server on {self._host}:{self._port} did not start")
            await asyncio.sleep(0.01)

    async def _serve(self, server: "_EmbeddedServer", sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await self._api.state.http.aclose()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets made with it, and
        # without it Nagle's algorithm meets the client's delayed ACK (40 ms per answer).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError as error:
            sock.close()
            raise PortTaken(
                f"API_HOST:API_PORT {self._host}:{self._port} cannot be bound: {error.strerror}"
            ) from None
        sock.set_inheritable(True)
        return sock

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight (at most a few seconds)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 5)
