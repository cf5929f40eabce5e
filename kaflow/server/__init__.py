"""The aiohttp frontend: the HTTP API v1 in front of a Broker.

``create_app(broker, config)`` builds the application; ``HttpServer`` serves
it on a socket with Kaflow's access log (logger ``kaflow.access``).
"""

from kaflow.server.app import create_app
from kaflow.server.runner import HttpServer

__all__ = ["HttpServer", "create_app"]
