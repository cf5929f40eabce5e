"""The TOML configuration file of `kaflow serve` (``--config FILE``).

Keys are the option names without the leading dashes, so ``--data-dir``
is ``data-dir``. A value is a TOML string or integer; a repeatable option
(``peer``) takes an array of strings or one comma-separated string::

    node-id = "2"
    port = 8094
    raft-port = 8095
    peer = ["127.0.0.1:8093", "127.0.0.1:8097"]
    advertised-url = "http://kaflow-2.internal:8094"

Every value goes through the same parser as the flag and the environment
variable. A key that names no option is an error, so a typo does not pass
silently. Flags take precedence over environment variables, which take
precedence over the file, which takes precedence over the defaults.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConfigFileError", "ConfigKey", "read_config_file"]

logger = logging.getLogger(__name__)


class ConfigFileError(ValueError):
    """The configuration file is missing, not TOML, or contains an unknown key or invalid value."""


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key the file accepts: its name, the field it sets and the parser of its value."""

    name: str
    field: str
    parse: Callable[[str], Any]
    repeatable: bool = False
    secret: bool = False


def read_config_file(path: Path, keys: Iterable[ConfigKey]) -> dict[str, Any]:
    """Read ``path`` and return field -> parsed value for every key it sets.

    Raises ConfigFileError naming the file and the key for any problem.
    """
    by_name = {key.name: key for key in keys}
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
            mode = os.fstat(file.fileno()).st_mode
    except OSError as exc:
        raise ConfigFileError(
            f"cannot read --config file {str(path)!r}: {exc.strerror}; check the path"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"--config file {str(path)!r} is not valid TOML: {exc}") from exc

    values: dict[str, Any] = {}
    for name, raw in document.items():
        key = by_name.get(name)
        if key is None:
            raise ConfigFileError(
                f"unknown key {name!r} in --config file {str(path)!r}; valid keys: "
                f"{', '.join(sorted(by_name))}"
            )
        values[key.field] = _parse_value(path, key, raw)
        if key.secret and mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning(
                "config file contains %s and is readable by other users path=%s; "
                "run chmod 600 on it",
                name,
                path,
            )
    return values


def _parse_value(path: Path, key: ConfigKey, raw: Any) -> Any:
    if key.repeatable:
        if isinstance(raw, str):
            items: list[Any] = [item.strip() for item in raw.split(",") if item.strip()]
        elif isinstance(raw, list):
            items = raw
        else:
            raise _invalid(path, key, raw, "an array of strings")
        if not all(isinstance(item, str) for item in items):
            raise _invalid(path, key, raw, "an array of strings")
        return [_parse_text(path, key, item) for item in items]

    # bool is a subclass of int, but no option takes true or false.
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise _invalid(path, key, raw, "a string or an integer")
    return _parse_text(path, key, str(raw))


def _parse_text(path: Path, key: ConfigKey, text: str) -> Any:
    try:
        return key.parse(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        displayed = "<redacted>" if key.secret else repr(text)
        raise ConfigFileError(
            f"invalid {key.name} = {displayed} in --config file {str(path)!r}: {exc}"
        ) from None


def _invalid(path: Path, key: ConfigKey, raw: Any, expected: str) -> ConfigFileError:
    displayed = "<redacted>" if key.secret else repr(raw)
    return ConfigFileError(
        f"invalid {key.name} = {displayed} in --config file {str(path)!r}: expected {expected}"
    )
