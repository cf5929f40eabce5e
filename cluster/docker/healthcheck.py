#!/usr/bin/env python3
"""Container health check: exit 0 when GET /v1/health/ready on the local node returns 200.

The image runs it as ``kaflow-healthcheck``. It finds the node's HTTP address
in the ready file that ``kaflow serve`` writes once it serves requests
(``$KAFLOW_READY_FILE``), so a port given as a flag is found too. Without
that variable it uses ``$KAFLOW_HOST`` and ``$KAFLOW_PORT``. A wildcard
listen address (0.0.0.0 or ::) is checked through loopback.

Exit status 1 means unhealthy. The one line on stdout says why, and Docker
keeps it in ``docker inspect --format '{{json .State.Health}}'``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8092
TIMEOUT_S = 2.0
_LOOPBACK_FOR_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class Unhealthy(Exception):
    """The node is not ready; the message is the reason Docker records."""


def node_base_url(environ: dict[str, str]) -> str:
    """Return the node's HTTP base URL from the ready file or from KAFLOW_HOST and KAFLOW_PORT."""
    ready_file = environ.get("KAFLOW_READY_FILE", "")
    if ready_file:
        return _url_from_ready_file(Path(ready_file))

    port_text = environ.get("KAFLOW_PORT", "") or str(DEFAULT_PORT)
    if not port_text.isdigit():
        raise Unhealthy(f"invalid KAFLOW_PORT={port_text!r}: expected a TCP port number")
    return _url_for(environ.get("KAFLOW_HOST", ""), int(port_text))


def _url_from_ready_file(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise Unhealthy(f"ready file {path} not found: the node is still starting") from None
    except (OSError, ValueError) as exc:
        raise Unhealthy(f"cannot read ready file {path}: {exc}") from None

    http = info.get("http") if isinstance(info, dict) else None
    parsed = urllib.parse.urlsplit(http) if isinstance(http, str) else None
    if parsed is None or parsed.hostname is None or parsed.port is None:
        raise Unhealthy(f"ready file {path} has no valid 'http' address: {http!r}")
    return _url_for(parsed.hostname, parsed.port)


def _url_for(host: str, port: int) -> str:
    host = _LOOPBACK_FOR_WILDCARD.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def check_ready(base_url: str) -> str:
    """Request GET /v1/health/ready and describe the 200 response; raise Unhealthy otherwise."""
    url = f"{base_url}/v1/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return f"ready: {url} returned {response.status}"
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"not ready: {url} returned {exc.code} {_error_code(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise Unhealthy(f"not ready: {url} failed: {reason}") from None


def _error_code(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return str(body["error"]["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return "(no Kaflow error body)"


def main() -> int:
    try:
        print(check_ready(node_base_url(dict(os.environ))))
    except Unhealthy as exc:
        print(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
