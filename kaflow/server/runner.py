"""Serving the application on a TCP socket, with Kaflow's access log.

One line per request goes to the ``kaflow.access`` logger at INFO, apart
from the ``kaflow.server`` loggers, so operators can route or silence
access lines on their own.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = ["ACCESS_LOGGER_NAME", "AccessLogger", "HttpServer"]

ACCESS_LOGGER_NAME: Final = "kaflow.access"

logger = logging.getLogger(__name__)

# Seconds that stopping waits for requests in flight. A long poll ends as
# soon as shutdown begins, so this bounds only ordinary requests.
SHUTDOWN_TIMEOUT_S: Final = 10.0


class AccessLogger(AbstractAccessLogger):
    """Writes one key=value line per request to the access logger."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "request remote=%s method=%s path=%r status=%d bytes=%d duration_ms=%.1f",
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class HttpServer:
    """The application served on ``host:port``; port 0 binds a free port.

    ``url`` is the bound address (``http://host:port``) once ``start``
    returns.
    """

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.url = ""
        self._stopped = False
        self._runner = web.AppRunner(
            app,
            access_log_class=AccessLogger,
            access_log=logging.getLogger(ACCESS_LOGGER_NAME),
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )

    async def start(self) -> str:
        """Bind the socket and start serving; return the bound URL.

        Raises OSError when the address cannot be bound (for example when the
        port is in use).
        """
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise

        addresses = self._runner.addresses
        if not addresses:
            await self._runner.cleanup()
            raise RuntimeError(f"the HTTP site on {self.host}:{self.port} has no listening socket")
        bound_port: int = addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{bound_port}"
        logger.info("http server started url=%s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop accepting, end long polls, wait for requests in flight, then close.

        Calling it again, or before ``start``, does nothing.
        """
        if self._stopped or not self.url:
            return
        self._stopped = True
        await self._runner.cleanup()
        logger.info("http server stopped url=%s", self.url)
