"""`kaflow serve`: run a node and its HTTP API until SIGINT or SIGTERM.

Start-up order: create the data directory, bind the HTTP socket (so a busy
port fails before Raft starts), start the node, start serving HTTP, write
the ready file and log ``node ready ...``. A signal stops HTTP first (new
connections are refused, long polls end, other requests in flight get
--shutdown-timeout-ms to finish) and then the node. A second signal exits at
once with status 1, skipping the rest of the clean stop. When the node stops
itself after a storage failure, HTTP stops too and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from kaflow.cli.exit_codes import ExitCode
from kaflow.cli.logging_setup import configure_logging
from kaflow.cli.serve_options import ServeSettings, resolve_serve_settings
from kaflow.config import NodeConfig
from kaflow.errors import KaflowError
from kaflow.node import Node
from kaflow.server.app import create_app
from kaflow.server.runner import ACCESS_LOGGER_NAME, AccessLogger

__all__ = ["StartupError", "run", "serve"]

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The node could not start; the message names the cause and the option to change."""


def run(args: argparse.Namespace) -> int:
    """Run `kaflow serve` with parsed arguments and return the exit status."""
    settings = resolve_serve_settings(args, os.environ)
    configure_logging(settings.log_level, settings.log_format)
    try:
        status = asyncio.run(serve(settings))
    except StartupError as exc:
        logger.debug("start-up failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.BROKER_ERROR
    logger.info("exiting status=%d node_id=%s", status, settings.config.node_id)
    return status


async def serve(settings: ServeSettings) -> int:
    """Serve until SIGINT or SIGTERM, then stop HTTP and the node; return the exit status."""
    stop_requested = asyncio.Event()
    _install_signal_handlers(stop_requested)

    _create_data_dir(settings.config.data_dir)
    sock = _bind_http_socket(settings.config.host, settings.config.port)
    try:
        config = dataclasses.replace(
            settings.config, port=sock.getsockname()[1], raft_port=_raft_port(settings.config)
        )
        node = _create_node(config)
    except BaseException:
        sock.close()
        raise

    if not await _start_node(node, sock, stop_requested):
        return ExitCode.OK
    try:
        await _serve_http(node, config, sock, settings, stop_requested)
    finally:
        await node.stop()
    return ExitCode.OK if node.failure is None else ExitCode.BROKER_ERROR


def _install_signal_handlers(stop_requested: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop_requested.is_set():
            # A second signal is the operator's way out of a stop that hangs.
            logger.error("second signal=%s while stopping, exiting without a clean stop", name)
            os._exit(ExitCode.BROKER_ERROR)
        logger.info("stopping signal=%s", name)
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)


def _create_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create data directory {str(data_dir)!r}: {exc.strerror}; "
            "choose another --data-dir"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StartupError(
            f"data directory {str(data_dir)!r} is not writable; "
            "fix its permissions or choose another --data-dir"
        )


def _bind_http_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP listening socket; port 0 makes the kernel pick a free port."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        return socket.create_server((host, port), family=addresses[0][0])
    except OSError as exc:
        # create_server() puts the address into strerror; the address is in the message already.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise StartupError(
            f"cannot listen for HTTP on {host}:{port}: {reason}; "
            "choose another --host or --port, or stop the process that uses the port"
        ) from exc


def _raft_port(config: NodeConfig) -> int:
    """Return the configured Raft port, or a free one when it is 0 (single node only)."""
    if config.raft_port != 0:
        return config.raft_port
    # NOTE: the port is free when probed but PySyncObj binds it later, so
    # another process can take it in between; the start then fails.
    try:
        with socket.create_server((config.raft_host, 0)) as probe:
            port: int = probe.getsockname()[1]
            return port
    except OSError as exc:
        raise StartupError(
            f"cannot find a free Raft port on {config.raft_host}: {exc.strerror}; "
            "give --raft-port or another --raft-host"
        ) from exc


def _create_node(config: NodeConfig) -> Node:
    try:
        return Node(config)
    except (KaflowError, OSError, ValueError) as exc:
        raise _startup_error(exc) from exc


def _startup_error(exc: BaseException) -> StartupError:
    if isinstance(exc, KaflowError):
        return StartupError(f"node failed to start: {exc.code}: {exc.message}")
    return StartupError(f"node failed to start: {exc}")


async def _start_node(node: Node, sock: socket.socket, stop_requested: asyncio.Event) -> bool:
    """Start the node; return False if a signal arrived first, raise StartupError on failure."""
    start = asyncio.create_task(node.start(), name="node-start")
    stop_wait = asyncio.create_task(stop_requested.wait(), name="stop-wait")
    await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()

    if not start.done():
        start.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await start
        sock.close()
        await _stop_after_failed_start(node)
        logger.info("stopped before the node became ready node_id=%s", node.node_id)
        return False

    failure = start.exception()
    if failure is None:
        return True
    sock.close()
    await _stop_after_failed_start(node)
    if isinstance(failure, KaflowError | OSError | ValueError):
        raise _startup_error(failure) from failure
    raise failure


async def _stop_after_failed_start(node: Node) -> None:
    """Release what an interrupted or failed start opened; errors here are only logged."""
    try:
        await node.stop()
    except (KaflowError, OSError, ValueError, RuntimeError):
        logger.debug("stopping the node after a failed start also failed", exc_info=True)


async def _serve_http(
    node: Node,
    config: NodeConfig,
    sock: socket.socket,
    settings: ServeSettings,
    stop_requested: asyncio.Event,
) -> None:
    """Serve HTTP until a signal arrives or the node stops itself."""
    runner = web.AppRunner(
        create_app(node, config, node.metrics),
        access_log_class=AccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER_NAME),
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_ms / 1000,
    )
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot serve HTTP on {config.http_address}: {exc}") from exc

        http_url = _http_url(sock)
        if settings.ready_file is not None:
            _write_ready_file(settings.ready_file, http_url, config)
        logger.info(
            "node ready node_id=%s http=%s raft=%s data_dir=%s pid=%d",
            config.node_id,
            http_url,
            config.raft_address,
            config.data_dir.resolve(),
            os.getpid(),
        )
        await _wait_for_stop(node, stop_requested)
    finally:
        await runner.cleanup()
        logger.info("http stopped node_id=%s", config.node_id)
        if settings.ready_file is not None:
            settings.ready_file.unlink(missing_ok=True)


async def _wait_for_stop(node: Node, stop_requested: asyncio.Event) -> None:
    signalled = asyncio.create_task(stop_requested.wait(), name="stop-wait")
    node_stopped = asyncio.create_task(node.wait_stopped(), name="node-stopped")
    try:
        await asyncio.wait({signalled, node_stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        node_stopped.cancel()


def _http_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _write_ready_file(path: Path, http_url: str, config: NodeConfig) -> None:
    """Write the ready file through a temporary file and rename, so readers never see half of it."""
    info = {
        "http": http_url,
        "raft": config.raft_address,
        "pid": os.getpid(),
        "node_id": config.node_id,
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(info) + "\n")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StartupError(
            f"cannot write --ready-file {str(path)!r}: {exc.strerror}; "
            "check that its directory exists and is writable"
        ) from exc
