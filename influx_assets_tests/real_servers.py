"""Starting the real servers the tests need: a missing one fails under ``CI=true`` and skips elsewhere."""

import os
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

Server = TypeVar("Server")


def missing_under_ci(what: str) -> NoReturn:
    """A real part a test needs is not installed: fail under ``CI=true`` (CI installs it), else skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {what}")
    pytest.skip(what)


def start_or_fail_in_ci(start: Callable[[], Server], missing: type[Exception]) -> Server:
    """``start()``; when it raises ``missing`` (the server is not installed): fail under CI, else skip."""
    try:
        return start()
    except missing as error:
        missing_under_ci(f"the real server is missing: {error}")
