from __future__ import annotations

import socket

import pytest

from tests.cli.cli_runner import describe, run_kaflow
from tests.harness import NodeProcess


def closed_port_url() -> str:
    """Return the URL of a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(
    "args",
    [
        ("topic", "describe", "no-such-topic"),
        ("consume", "no-such-topic"),
        ("topic", "delete", "no-such-topic"),
    ],
    ids=["describe", "consume", "delete"],
)
def test_unknown_topic_exits_1_with_code(shared_node: NodeProcess, args: tuple[str, ...]) -> None:
    result = run_kaflow(*args, bootstrap=shared_node.url)

    lines = result.stderr.decode().splitlines()
    assert result.returncode == 1, describe(result)
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("error: unknown_topic: ")
    assert "'no-such-topic'" in lines[0]
    assert result.stdout == b""


def test_produce_to_unknown_topic_exits_1(shared_node: NodeProcess) -> None:
    result = run_kaflow("produce", "no-such-topic", bootstrap=shared_node.url, stdin=b"v\n")

    assert result.returncode == 1, describe(result)
    assert result.stderr.decode().startswith("error: unknown_topic: ")


@pytest.mark.parametrize(
    "args",
    [
        ("topic", "create"),
        ("topic", "create", "t", "--partitions", "0"),
        ("consume", "t", "--offset", "-1"),
        ("consume", "t", "--offset", "1", "--from-time", "0"),
        ("produce", "t", "--batch-size", "0"),
        ("produce", "t", "--header", "novalue"),
        ("frobnicate",),
        ("--timeout", "0", "topic", "list"),
    ],
    ids=[
        "missing-name", "zero-partitions", "negative-offset", "offset-and-time",
        "zero-batch", "bad-header", "unknown-command", "zero-timeout",
    ],
)  # fmt: skip
def test_bad_flags_exit_2(args: tuple[str, ...]) -> None:
    result = run_kaflow(*args, bootstrap=closed_port_url())

    assert result.returncode == 2, describe(result)
    assert b"usage: kaflow" in result.stderr
    assert b"Traceback" not in result.stderr


def test_invalid_bootstrap_url_exits_2() -> None:
    result = run_kaflow("topic", "list", bootstrap="127.0.0.1:8092")

    assert result.returncode == 2, describe(result)
    stderr = result.stderr.decode()
    assert stderr.startswith("usage: kaflow "), stderr
    assert "error: argument --bootstrap: invalid bootstrap URL '127.0.0.1:8092'" in stderr


@pytest.mark.parametrize(
    "args",
    [("topic", "list"), ("consume", "t"), ("produce", "t")],
    ids=["topic", "consume", "produce"],
)
def test_nothing_listening_exits_3(args: tuple[str, ...]) -> None:
    url = closed_port_url()

    result = run_kaflow(*args, bootstrap=url, stdin=b"v\n")

    assert result.returncode == 3, describe(result)
    assert result.stderr.decode().startswith(f"error: cannot connect to the node at {url}: ")


def test_silent_node_exits_3_after_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        result = run_kaflow("--timeout", "0.3", "topic", "list", bootstrap=url)

    assert result.returncode == 3, describe(result)
    assert "no response from the node" in result.stderr.decode()
    assert "within 0.3 s" in result.stderr.decode()


def test_bootstrap_from_env(shared_node: NodeProcess) -> None:
    result = run_kaflow("topic", "list", env={"KAFLOW_BOOTSTRAP": shared_node.url})
    unreachable = closed_port_url()
    failed = run_kaflow("topic", "list", env={"KAFLOW_BOOTSTRAP": unreachable})

    assert result.returncode == 0, describe(result)
    assert result.stdout.startswith(b"NAME")
    assert failed.returncode == 3, describe(failed)
    assert unreachable in failed.stderr.decode()


def test_bootstrap_flag_overrides_env(shared_node: NodeProcess) -> None:
    result = run_kaflow(
        "topic", "list", bootstrap=shared_node.url, env={"KAFLOW_BOOTSTRAP": closed_port_url()}
    )

    assert result.returncode == 0, describe(result)


def test_options_accepted_after_subcommand(shared_node: NodeProcess) -> None:
    result = run_kaflow("topic", "list", "--bootstrap", shared_node.url, "--timeout", "5")

    assert result.returncode == 0, describe(result)


def test_help_lists_exit_statuses() -> None:
    result = run_kaflow("--help")

    help_text = result.stdout.decode()
    assert result.returncode == 0
    assert "exit status:" in help_text
    for status in ("0 ", "1 ", "2 ", "3 ", "130 "):
        assert f"\n  {status}" in help_text
