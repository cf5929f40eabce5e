"""Request bodies that fail to decode: bad Content-Encoding data and repeated keys."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import msgpack
import pytest

from tests.server.conftest import Api
from tests.server.helpers import MSGPACK

pytestmark = pytest.mark.asyncio(loop_scope="package")

READ_TIMEOUT_S = 30.0


async def _exchange(url: str, request: bytes) -> bytes:
    """Send raw bytes on a new connection and return everything read until the server closes it."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), READ_TIMEOUT_S)
    finally:
        writer.close()


def _post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/topics", "application/json"),
        ("/v1/topics/bad-gzip/records", "application/json"),
        # Rejected before the handler reads the body.
        ("/v1/topics", "text/plain"),
    ],
    ids=["create-topic", "produce", "unsupported-type"],
)
async def test_bad_gzip_body_logs_no_traceback(
    api: Api, caplog: pytest.LogCaptureFixture, path: str, content_type: str
) -> None:
    request = _post(
        path,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03 this is not deflate data",
        f"Content-Type: {content_type}",
        "Content-Encoding: gzip",
    )

    with caplog.at_level(logging.DEBUG):
        # The server closes the connection once it has handled the request,
        # and aiohttp logs a failed body drain before it closes.
        response = await _exchange(api.url, request)

    head = response.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 4"), response
    assert "Connection: close" in head
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    assert [record for record in caplog.records if record.exc_info] == []


async def test_bad_gzip_body_is_malformed_body(api: Api) -> None:
    response = await _exchange(
        api.url,
        _post(
            "/v1/topics",
            b"not gzip",
            "Content-Type: application/json",
            "Content-Encoding: gzip",
        ),
    )

    assert response.startswith(b"HTTP/1.1 400 ")
    assert b'"code":"malformed_body"' in response


async def test_json_duplicate_key_is_malformed_body(api: Api, topic: str) -> None:
    body = f'{{"name": "{topic}", "partitions": 1, "partitions": 2}}'.encode()

    reply = await api.call(
        "POST", "/v1/topics", data=body, headers={"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert reply.code == "malformed_body"
    assert reply.error["details"] == {"key": "partitions"}
    assert "'partitions' appears more than once" in reply.error["message"]
    assert topic not in await api.topic_names()


async def test_json_nested_duplicate_key_is_malformed_body(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    body = b'{"records": [{"value": "a", "value": "b"}]}'

    reply = await api.call(
        "POST",
        f"/v1/topics/{topic}/records",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert reply.code == "malformed_body"
    assert reply.error["details"] == {"key": "value"}
    assert await api.high_watermarks(topic) == [0]


async def test_msgpack_duplicate_key_is_malformed_body(api: Api, topic: str) -> None:
    await api.create_topic(topic)
    packer = msgpack.Packer()
    record = b"\x82" + packer.pack("value") + packer.pack(b"a") + packer.pack("value")
    record += packer.pack(b"b")
    body = b"\x81" + packer.pack("records") + b"\x91" + record

    reply = await api.call(
        "POST", f"/v1/topics/{topic}/records", data=body, headers={"Content-Type": MSGPACK}
    )

    assert reply.status == 400
    assert reply.code == "malformed_body"
    assert reply.error["details"] == {"key": "value"}


async def test_empty_body_message_uses_an(api: Api) -> None:
    reply = await api.call(
        "POST", "/v1/topics", data=b"", headers={"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert reply.error["message"] == "request body is empty; send an application/json object"
