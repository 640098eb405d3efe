"""The top-level package: a curated public surface that loads no server code."""

from __future__ import annotations

import subprocess
import sys

import somaagent
from somaagent import errors, types


def test_every_exception_class_is_exported() -> None:
    exceptions = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, Exception)
    }
    assert exceptions <= set(somaagent.__all__)


def test_the_shared_types_are_exported() -> None:
    for name in ("Conversation", "Message", "MessageExchange", "Page", "StreamEvent", "Usage"):
        assert getattr(somaagent, name) is getattr(types, name)


def test_all_names_exist_and_version_is_set() -> None:
    for name in somaagent.__all__:
        assert hasattr(somaagent, name), name
    assert somaagent.__version__ == "0.1.0"
    assert "Client" in somaagent.__all__ and "AsyncClient" in somaagent.__all__


def test_importing_the_sdk_loads_no_server_code() -> None:
    # (click and rich may be loaded all the same: httpx imports its own CLI when they exist.)
    code = (
        "import sys, somaagent; "
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'somaagent.gateway', "
        "'somaagent.llm', 'somaagent.cli') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_the_clients_load_on_first_use() -> None:
    # `import somaagent` gives the errors and models; httpx and the clients come with the
    # first use of a client's name (bench/import_time.py measures both).
    code = (
        "import sys, somaagent; before = 'httpx' in sys.modules; "
        "from somaagent import Client; "
        "print(before, 'httpx' in sys.modules, Client.__module__, 'Client' in dir(somaagent))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True", "somaagent.sdk.client", "True"]
