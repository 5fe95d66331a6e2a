"""uvicorn inside the worker: started before faust's consumer, so /health answers at once."""

import asyncio
import contextlib
import socket
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
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve in the background; return once uvicorn accepts connections."""
        sock = self._bind()
        config = uvicorn.Config(self._api, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise PortTaken(f"the API server on {self._host}:{self._port} did not start")
            await asyncio.sleep(0.01)

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
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
        """Stop accepting, finish requests in flight."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await asyncio.wait_for(self._task, timeout=5)
        await self._api.state.http.aclose()
