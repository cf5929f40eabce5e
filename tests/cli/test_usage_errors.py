"""Usage errors (exit status 2): each prints the usage line of the subcommand that failed."""

from __future__ import annotations

import pytest

from tests.cli.cli_runner import describe, run_kaflow
from tests.cli.test_exit_codes import closed_port_url
from tests.harness import NodeProcess


@pytest.mark.parametrize(
    ("args", "env", "usage", "message"),
    [
        (
            ("produce", "t", "--key-separator", ""),
            {},
            "usage: kaflow produce ",
            "kaflow produce: error: --key-separator must not be empty",
        ),
        (
            ("topic", "alter", "orders"),
            {},
            "usage: kaflow topic alter ",
            "kaflow topic alter: error: nothing to alter",
        ),
        (
            ("serve",),
            {"KAFLOW_PORT": "abc"},
            "usage: kaflow serve ",
            "kaflow serve: error: invalid KAFLOW_PORT='abc': invalid integer 'abc'",
        ),
        (
            ("topic", "create", "orders", "--partitons", "3"),
            {},
            "usage: kaflow topic create ",
            "kaflow topic create: error: unrecognized arguments: --partitons 3",
        ),
        (
            ("consume", "orders", "--group", ""),
            {},
            "usage: kaflow consume ",
            "kaflow consume: error: argument --group: consumer group name is empty",
        ),
        (
            ("consume", "orders", "--group", "a/b"),
            {},
            "usage: kaflow consume ",
            "kaflow consume: error: argument --group: consumer group name 'a/b' contains '/'",
        ),
    ],
    ids=[
        "key-separator",
        "alter-nothing",
        "env-port",
        "misspelled-option",
        "empty-group",
        "group-slash",
    ],
)
def test_usage_error_prints_subcommand_usage(
    args: tuple[str, ...], env: dict[str, str], usage: str, message: str
) -> None:
    result = run_kaflow(*args, bootstrap=closed_port_url(), env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 2, describe(result)
    assert stderr.startswith(usage), stderr
    assert stderr.splitlines()[-1].startswith(message), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8092/v1", "remove the path '/v1'"),
        ("http://127.0.0.1:8092/v1/", "remove the path '/v1/'"),
        ("http://127.0.0.1:8092//", "remove the path '//'"),
        ("http://127.0.0.1:port", "the port must be a number in 0..65535"),
    ],
    ids=["path", "path-slash", "double-slash", "port"],
)
def test_bootstrap_url_rejected(url: str, message: str) -> None:
    result = run_kaflow("topic", "list", bootstrap=url)

    stderr = result.stderr.decode()
    assert result.returncode == 2, describe(result)
    assert stderr.startswith("usage: kaflow "), stderr
    assert f"invalid bootstrap URL {url!r}: {message}" in stderr


def test_bootstrap_from_env_rejected() -> None:
    result = run_kaflow("topic", "list", env={"KAFLOW_BOOTSTRAP": "http://127.0.0.1:8092/v1"})

    assert result.returncode == 2, describe(result)
    assert b"remove the path '/v1'" in result.stderr


def test_bootstrap_trailing_slash_accepted(shared_node: NodeProcess) -> None:
    result = run_kaflow("topic", "list", bootstrap=shared_node.url + "/")

    assert result.returncode == 0, describe(result)


def test_produce_note_counts_one_record(shared_node: NodeProcess) -> None:
    shared_node.create_topic("note-one-record")

    result = run_kaflow(
        "produce",
        "note-one-record",
        "--key-separator",
        ":",
        "--batch-size",
        "1",
        bootstrap=shared_node.url,
        stdin=b"k:v\nno separator\n",
    )

    stderr = result.stderr.decode()
    assert result.returncode == 2, describe(result)
    assert "note: 1 record was produced before this error" in stderr
